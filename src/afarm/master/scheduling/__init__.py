# SPDX-License-Identifier: MIT
"""Which task runs where: the in-memory runnable index and the event-driven scheduler."""
