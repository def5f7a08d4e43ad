# SPDX-License-Identifier: MIT
"""Running a task's processes: the sandbox every task runs in (and, later, the executor)."""
