# SPDX-License-Identifier: MIT
"""A .blend saved by a newer Blender than the slave's loads, but loses what the newer
version added, and Blender says so on its console only. The job says it: a task warning
naming both versions and how to pin a newer one, so the job ends completed-with-warnings.
(A 3.4 file whose header claims 3.6 stands in for a real 3.6 file: Blender 3.4 reads the
version from the header and FileGlobal, as it would for the real one.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.blends import make_scene, run_blender

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("farm"), slaves=1).start()
    yield m
    m.stop()


def saved_by(version: bytes, tmp_path: Path) -> Path:
    """The demo scene, uncompressed, with the header's version set to `version`."""
    (tmp_path / "made").mkdir()
    scene = make_scene(tmp_path / "made", frames=1, width=32, height=18, samples=1)
    plain = tmp_path / "shot.blend"
    expr = f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(plain)!r}, compress=False)"
    cp = run_blender(["-b", "-Y", str(scene), "--python-expr", expr])
    data = bytearray(plain.read_bytes())
    assert cp.returncode == 0 and data[:12] == b"BLENDER-v304", cp.stdout[-2000:]
    data[9:12] = version
    plain.write_bytes(bytes(data))
    return plain


def test_a_file_from_a_newer_blender_renders_with_a_warning_naming_both_versions(
        farm: MasterProcess, tmp_path: Path) -> None:
    job_id = farm.submit(str(saved_by(b"306", tmp_path)), "--frames", "1")
    job = farm.wait(job_id)
    assert job["status"] == "completed-with-warnings", farm.ctl("logs", str(job_id)).stdout
    texts = [w["warning"] for w in job["task_warnings"]]
    assert any(t.startswith("the file was saved by Blender 3.6, newer than this slave's 3.4")
               and "--app 'blender (>= 3.6)'" in t for t in texts), texts
    assert (farm.job_dir(job_id) / "out" / "frame_0001.png").is_file()


def test_a_file_from_this_blender_has_no_such_warning(farm: MasterProcess,
                                                       tmp_path: Path) -> None:
    job_id = farm.submit(str(saved_by(b"304", tmp_path)), "--frames", "1")
    job = farm.wait(job_id)
    assert job["status"] == "completed", [w["warning"] for w in job.get("task_warnings", [])]
