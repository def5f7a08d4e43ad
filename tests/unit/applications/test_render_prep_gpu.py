# SPDX-License-Identifier: MIT
"""render_prep.py's GPU part, without Blender: it reads the pinned device after `--` and
sets Cycles to render on the GPU, or refuses when Cycles finds none."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fixtures.scripts import load_script

prep = load_script("render_prep.py")
DIRS = ["--", "--job-dirs", "/j/in", "/j/out", "/j/scratch"]


def test_the_device_is_read_after_the_double_dash_and_is_optional(tmp_path: Path) -> None:
    assert prep.parse_gpu_device(["blender", *DIRS]) is None
    assert prep.parse_gpu_device(["blender", *DIRS, "--gpu-device", "1"]) == 1
    assert prep.parse_gpu_device(["blender", "--gpu-device", "1", "--", "--job-dirs"]) is None
    real = ["--", "--job-dirs", str(tmp_path), str(tmp_path), str(tmp_path)]
    assert prep.parse_job_dirs(["blender", *real, "--gpu-device", "1"]).scratch == \
        str(tmp_path)


@pytest.mark.parametrize("tail", [["--gpu-device"], ["--gpu-device", "x"],
                                  ["--gpu-device", "64"],
                                  ["--gpu-device", "0", "--gpu-device", "1"]])
def test_a_malformed_device_is_refused(tail: list[str]) -> None:
    with pytest.raises(prep.PrepError, match="--gpu-device"):
        prep.parse_gpu_device(["blender", *DIRS, *tail])


class Prefs:
    def __init__(self, devices: dict[str, list[str]]) -> None:
        self._all = devices
        self.compute_device_type = "NONE"
        self.devices: list[Any] = []

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "compute_device_type" and value != "NONE" and value not in self._all:
            raise TypeError(f"enum {value!r} not found")
        object.__setattr__(self, name, value)

    def get_devices(self) -> None:
        kind = self.compute_device_type
        self.devices = [SimpleNamespace(type=kind, name=n, use=False)
                        for n in self._all.get(kind, [])] + \
            [SimpleNamespace(type="CPU", name="cpu", use=True)]


def fake_bpy(devices: dict[str, list[str]]) -> Any:
    prefs = Prefs(devices)
    scene = SimpleNamespace(cycles=SimpleNamespace(device="CPU"))
    return SimpleNamespace(
        context=SimpleNamespace(preferences=SimpleNamespace(
            addons={"cycles": SimpleNamespace(preferences=prefs)})),
        data=SimpleNamespace(scenes=[scene])), prefs, scene


def test_cycles_renders_on_the_visible_gpu_and_not_on_the_cpu() -> None:
    bpy, prefs, scene = fake_bpy({"CUDA": ["RTX 3080"]})
    assert prep.use_gpu(bpy, 1) == "CUDA"
    assert scene.cycles.device == "GPU"
    assert [(d.type, d.use) for d in prefs.devices] == [("CUDA", True), ("CPU", False)]


def test_optix_is_preferred_where_both_list_the_device() -> None:
    bpy, _, _ = fake_bpy({"CUDA": ["RTX 3080"], "OPTIX": ["RTX 3080"]})
    assert prep.use_gpu(bpy, 0) == "OPTIX"


def test_no_gpu_in_cycles_refuses_rather_than_render_on_the_cpu() -> None:
    bpy, _, scene = fake_bpy({"HIP": []})
    with pytest.raises(prep.PrepError, match="finds no GPU"):
        prep.use_gpu(bpy, 0)
    assert scene.cycles.device == "CPU"
