# SPDX-License-Identifier: MIT
"""The slave side: the agent behind the serve verb, the forced-command shell, the daemon."""
