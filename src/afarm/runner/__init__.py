# SPDX-License-Identifier: MIT
"""One way to run a task, on a slave and on the master alike: workspace, sandbox, process,
verify."""
