# SPDX-License-Identifier: MIT
"""What both HTTP ports share: the browser guard, connection limits, request bounds, OpenAPI."""
