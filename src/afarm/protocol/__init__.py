# SPDX-License-Identifier: MIT
"""What the master, its slaves and afarmctl agree on: addresses, names, enrolment's wire."""
