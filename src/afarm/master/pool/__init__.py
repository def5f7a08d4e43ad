# SPDX-License-Identifier: MIT
"""The master's dpkg-style pool of application versions."""
