# SPDX-License-Identifier: MIT
"""Application archives as the master's pool keeps them and the slaves unpack them."""
