# SPDX-License-Identifier: MIT
"""The places tasks run: a link per slave, and the master itself for follow-ups."""
