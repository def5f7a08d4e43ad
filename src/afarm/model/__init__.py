# SPDX-License-Identifier: MIT
"""Jobs, tasks and their statuses: plain data with no I/O."""
