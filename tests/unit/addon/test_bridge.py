# SPDX-License-Identifier: MIT
"""The add-on's Blender-free half: it builds afarmctl's request, finds afarm, and ships as a
zip of its own files."""

import ast
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from afarm.addon import NAME, addon_zip
from afarm.addon.afarm_blender import bl_info, bridge
from afarm.cli import commands


def test_the_panels_settings_make_the_request_afarmctl_submit_makes(tmp_path: Path) -> None:
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    settings = bridge.Settings(frames="1-3", chunk=2, encode=True, priority=70,
                               tags="gpu, big,", strict=True, scene="Scene.001")
    request, path = commands.submission(settings.args(blend))
    assert path == blend
    assert request == {"name": "shot.blend", "application": "blender",
                       "params": {"frames": "1-3", "chunk": 2, "encode": "mp4",
                                  "scene": "Scene.001"},
                       "require_tags": ["gpu", "big"], "priority": 70, "strict": True}


def test_bad_settings_are_refused_with_afarmctls_message(tmp_path: Path) -> None:
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    with pytest.raises(Exception, match="--frames"):
        commands.submission(bridge.Settings(frames="1-x").args(blend))


def test_a_configured_folder_without_afarm_is_named() -> None:
    with pytest.raises(bridge.BridgeError, match="'/nonexistent', holds no afarm package"):
        bridge.load_afarm("/nonexistent")


def test_afarm_imports_from_blenders_own_path_without_a_folder() -> None:
    assert bridge.load_afarm("").__name__ == "afarm.cli.ops"


def test_without_afarm_project_the_blend_goes_alone_with_a_note(tmp_path: Path,
                                                                monkeypatch: Any) -> None:
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    farm = bridge.Farm("127.0.0.1:1", token="t")
    monkeypatch.delattr(farm.ops, "pack_project", raising=False)
    sent: list[Any] = []
    monkeypatch.setattr(farm.ops, "submit",
                        lambda client, request, inputs: sent.append(inputs) or {"id": 3})
    job, scan = farm.submit(blend, bridge.Settings(frames="1"))
    assert job == {"id": 3} and sent == [[("shot.blend", blend)]]
    assert scan.note == bridge.NO_PROJECT and scan.files == [("shot.blend", 7)]
    assert farm.scan(blend).note == bridge.NO_PROJECT


def test_an_unreachable_master_is_a_bridge_error_saying_so(tmp_path: Path) -> None:
    farm = bridge.Farm("127.0.0.1:1", token="t")
    with pytest.raises(bridge.BridgeError, match="cannot reach the master"):
        farm.job(1)


def test_the_zip_holds_the_addons_python_files_and_a_blender_3_4_bl_info() -> None:
    z = zipfile.ZipFile(io.BytesIO(addon_zip()))
    names = z.namelist()
    assert sorted(names) == [f"{NAME}/__init__.py", f"{NAME}/bridge.py", f"{NAME}/ui.py"]
    tree = ast.parse(z.read(f"{NAME}/__init__.py"))
    info = next(n for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "bl_info")
    assert ast.literal_eval(info.value) == bl_info
    assert bl_info["blender"] == (3, 4, 0) and bl_info["category"] == "Render"
    assert addon_zip() == addon_zip()  # built once, the same bytes
