# SPDX-License-Identifier: MIT
"""afarm: a render farm and distributed-computing system for Blender users."""

__version__ = "0.3.0"
