# SPDX-License-Identifier: MIT
"""The Blender add-on, headless: Blender downloads nothing itself; the test fetches the zip
from the master's results port (no token), Blender installs and enables it into a temporary
user config, its operators scan, submit and follow a job on a real master, and the job's
frames are checked on the master."""

import hashlib
import importlib.util
import json
import os
import subprocess
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.addon import NAME, PATH
from afarm.addon.afarm_blender import bridge
from afarm.runner.verify import image_size, verify_output
from tests.farm import ROOT, MasterProcess
from tests.fixtures.blends import blender_executable, make_scene

pytestmark = pytest.mark.slow

_DRIVE = """
import hashlib, json, sys, time, bpy
zip_path, master, results, token, afarm_path, report = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
bpy.ops.preferences.addon_enable(module="afarm_blender")
import afarm_blender
from afarm_blender import ui
prefs = bpy.context.preferences.addons["afarm_blender"].preferences
prefs.master, prefs.results, prefs.token, prefs.afarm_path = master, results, token, afarm_path
s = bpy.context.scene.afarm
s.frames, s.chunk, s.encode, s.priority = "1-3", 2, True, 70
assert bpy.ops.afarm.scan() == {"FINISHED"}, ui.state["error"]
scan = ui.state["scan"]
assert bpy.ops.afarm.submit() == {"FINISHED"}, ui.state["error"]
job_id = s.job_id
deadline = time.monotonic() + 300
while True:
    assert bpy.ops.afarm.refresh() == {"FINISHED"}, ui.state["error"]
    if ui.state["job"]["status"] in ("completed", "completed-with-warnings", "failed",
                                     "canceled") or time.monotonic() > deadline:
        break
    time.sleep(0.5)
got = {"job": job_id, "status": ui.state["job"]["status"],
       "files": scan.files, "missing": scan.missing, "note": scan.note,
       "frame_file": str(ui.state["frame_file"]), "preview": ui.state["frame_path"],
       "frame_sha": hashlib.sha256(ui.state["frame_file"].read_bytes()).hexdigest(),
       "addon_file": afarm_blender.__file__, "outcome": ui.state["outcome"],
       "progress": afarm_blender.bridge.progress_text(ui.state["job"])}


class Layout:
    # Records what the panel draws (headless Blender draws no UI).
    def __init__(self, texts):
        self.texts = texts
        self.alert = False

    def label(self, text="", icon="NONE"):
        self.texts.append(text)

    def prop(self, data, name):
        self.texts.append("prop " + name)

    def operator(self, idname, icon="NONE"):
        self.texts.append("operator " + idname)

    def template_icon(self, icon_value=0, scale=1.0):
        self.texts.append("icon")

    def row(self, align=False):
        return self

    column = box = row


got["drawn"] = []
ui.AFARM_PT_panel.draw(type("P", (), {"layout": Layout(got["drawn"])})(), bpy.context)
# The UI's worker thread and timer, run here in turn: submit and follow, then show.
ui.state["busy"] = True
ui._submit_and_follow(ui._farm(bpy.context), ui._blend(), ui._settings(bpy.context.scene))
assert ui._redraw() is None and ui.state["error"] == "", ui.state["error"]
got.update(second=s.job_id, second_status=ui.state["job"]["status"])
json.dump(got, open(report, "w"))
"""


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("farm"), slaves=2).start()
    yield m
    m.stop()


def test_the_master_serves_the_addon_zip_without_a_token(farm: MasterProcess,
                                                        tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{farm.results_port}{PATH}"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback http
        assert resp.headers["Content-Type"] == "application/zip"
        (tmp_path / "a.zip").write_bytes(resp.read())
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert f"{NAME}/__init__.py" in names and f"{NAME}/ui.py" in names
    assert all(n.startswith(f"{NAME}/") and n.endswith(".py") for n in names)


def test_headless_blender_installs_the_addon_and_renders_a_job_through_it(
        farm: MasterProcess, tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    scene = make_scene(tmp_path / "project", frames=3, width=64, height=36)
    url = f"http://127.0.0.1:{farm.results_port}{PATH}"
    addon = tmp_path / f"{NAME}.zip"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback http
        addon.write_bytes(resp.read())
    user = tmp_path / "blender-user"
    script = tmp_path / "drive.py"
    script.write_text(_DRIVE)
    report = tmp_path / "report.json"
    # Blender's own user dirs in tmp_path: the real user's preferences are never touched;
    # afarm comes from the add-on's "afarm folder" preference, not from PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(user), BLENDER_USER_CONFIG=str(user / "config"),
               BLENDER_USER_SCRIPTS=str(user / "scripts"))
    token = farm.local_token() or ""
    cp = subprocess.run(  # noqa: S603 - argv list
        [blender_executable(), "-b", "--factory-startup", "-Y", str(scene),
         "--python-exit-code", "1", "--python", str(script), "--", str(addon),
         f"127.0.0.1:{farm.job_port}", f"127.0.0.1:{farm.results_port}", token,
         str(ROOT / "src"), str(report)],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    got = json.loads(report.read_text())
    assert got["addon_file"].startswith(str(user / "scripts"))
    assert got["status"] == "completed", (got, farm.ctl("logs", str(got["job"])).stdout)
    assert got["outcome"] == [] and "3/3 frames" in got["progress"]

    job = farm.client.get(f"/api/v1/jobs/{got['job']}")
    assert job["priority"] == 70 and job["params"]["chunk"] == 2
    assert job["progress"]["tasks"] == 3  # two render chunks and the encode
    out = farm.job_dir(got["job"]) / "out"
    frames = sorted(out.glob("frame_*.png"))
    assert [f.name for f in frames] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    for f in frames:
        verify_output(f)
        assert image_size(f) == (64, 36)
    assert [v.name for v in out.glob("*.mp4")] == [f"{scene.stem}.mp4"]
    last = Path(got["frame_file"])
    assert last.name.endswith("frame_0003.png")
    assert got["frame_sha"] == hashlib.sha256(frames[-1].read_bytes()).hexdigest()
    assert not last.parent.exists()  # the add-on removed its frames when Blender quit
    # Loaded into the panel's preview collection (headless Blender makes no icon of it).
    assert got["preview"] == str(last)

    packs = importlib.util.find_spec("afarm.project") is not None and \
        importlib.util.find_spec("blender_asset_tracer") is not None
    if packs:  # afarm.project traced the project: the same list afarmctl --dry-run shows
        assert got["note"] == "" and got["files"][0][0] == scene.name
    else:
        assert got["note"] == bridge.NO_PROJECT and got["files"] == [
            [scene.name, scene.stat().st_size]]
    assert got["missing"] == []
    drawn = got["drawn"]
    assert drawn[0].startswith("Master: 127.0.0.1:") and "prop frames" in drawn
    assert "operator afarm.submit" in drawn and "operator afarm.refresh" in drawn
    assert any(t.startswith(f"job {got['job']} [") and "3/3 frames" in t for t in drawn)
    # The UI path (a worker thread and a timer) submitted and followed a second job.
    assert got["second"] == got["job"] + 1 and got["second_status"] == "completed"
