# SPDX-License-Identifier: MIT
"""afarmctl: the command-line client of the master."""
