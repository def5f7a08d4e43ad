# SPDX-License-Identifier: MIT
"""The SQLite store: the only module that speaks SQL."""

from afarm.store.db import Store

__all__ = ["Store"]
