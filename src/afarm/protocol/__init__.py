# SPDX-License-Identifier: MIT
"""What crosses the wire between master, slaves and clients, typed and checked at the edge:
messages, addresses, names and enrolment."""
