# SPDX-License-Identifier: MIT
"""The one platform limit a test may skip for: not being root. Everything else a test needs
(tools, packages) `make test` installs, so as root a missing piece fails instead."""

import os

import pytest


def need_root(what: str) -> None:
    """Skip unless root: `what` needs privileges (users, namespaces, packages) that an
    ordinary user cannot have on any machine; `make test` and CI run as root."""
    if os.geteuid() != 0:
        pytest.skip(f"platform limit: not root, and {what} (make test and CI run as root)")
