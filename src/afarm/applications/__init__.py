# SPDX-License-Identifier: MIT
"""Applications: the Application protocol, the built-in kinds and the registry of definitions."""

from afarm.applications.base import Application, RunContext
from afarm.applications.registry import load_applications

__all__ = ["Application", "RunContext", "load_applications"]
