# SPDX-License-Identifier: MIT
"""The master daemon: the job port, the results port, the scheduler and the slaves' links."""
