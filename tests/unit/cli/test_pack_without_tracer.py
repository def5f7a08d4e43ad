# SPDX-License-Identifier: MIT
"""afarmctl without blender-asset-tracer says what to install instead of a traceback."""

import sys
from pathlib import Path

import pytest

from afarm.cli import ops
from afarm.errors import UsageError


def test_a_missing_tracer_is_a_usage_error_naming_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blend = tmp_path / "a.blend"
    blend.write_bytes(b"BLENDER-v304" + b"\0" * 64 + b"ENDB" + b"\0" * 20)
    for name in [m for m in sys.modules if m.startswith("blender_asset_tracer")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "blender_asset_tracer", None)  # import fails
    with pytest.raises(UsageError, match="apt install python3-blender-asset-tracer"):
        ops.pack_project(blend)
