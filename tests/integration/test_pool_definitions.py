# SPDX-License-Identifier: MIT
"""Each pool version runs with its own definition (afarmctl app add --definition FILE):
two versions of one command application whose argv templates differ run on the same slave,
each with its own; a bad definition is refused at add naming its key; a version whose
acceptance test fails stays quarantined across a master restart until `slave test`; and
Blender 4.2 (PyPI's bpy wheel) added with a definition of its own renders OpenEXR where the
master's definition says PNG."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.blends import make_scene
from tests.fixtures.pool_versions import bpy_archive

pytestmark = pytest.mark.slow
TOOL = "#!/bin/sh\necho \"$@\"\n"
DEFINITIONS = {
    "1.0": "# version 1 takes the item alone\nkind = command\nexecutable = tool\n"
           "argv = one, {item}\n",
    "2.0": "kind = command\nexecutable = tool\nargv = two, {index}, {item}\ntimeout = 60\n",
    "3.0": "kind = command\nexecutable = tool\nargv = {item},\ntest = /usr/bin/false,\n",
}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    base = tmp_path_factory.mktemp("pool-defs")
    src = base / "tool-src"
    src.mkdir()
    (src / "tool").write_text(TOOL)
    (src / "tool").chmod(0o755)
    m = MasterProcess(base, slaves=1).start()
    try:
        for version, text in DEFINITIONS.items():
            definition = base / f"tool-{version}.conf"
            definition.write_text(text)
            cp = m.ctl("app", "add", "tool", version, str(src), "--definition",
                       str(definition))
            assert cp.returncode == 0, cp.stderr
        yield m
    finally:
        m.stop()


def output(farm: MasterProcess, job: int) -> str:
    return (farm.job_dir(job) / "out" / "item_000001.out").read_text()


def test_two_versions_run_each_with_its_own_definition_on_the_same_slave(
        farm: MasterProcess) -> None:
    one = farm.submit("--app", "tool (= 1.0)", "--items", "a")
    two = farm.submit("--app", "tool (= 2.0)", "--items", "b")
    for job in (one, two):
        assert farm.wait(job)["status"] == "completed", farm.ctl("logs", str(job)).stdout
    assert output(farm, one) == "one a\n"
    assert output(farm, two) == "two 1 b\n"
    # Both ran on the one slave, from their own installs.
    apps = farm.base / "slaves" / "local-1" / "apps" / "tool"
    assert (apps / "1.0" / "definition.json").is_file()
    assert (apps / "2.0" / "definition.json").is_file()


def test_a_bad_definition_is_refused_at_add_naming_its_key(farm: MasterProcess,
                                                           tmp_path: Path) -> None:
    src = farm.base / "tool-src"
    for text, key in (("kind = command\nexecutable = tool\nargv = {item},\ntimeout = 0\n",
                       "timeout"),
                      ("kind = command\nexecutable = tool\nargv = x\n", "argv"),
                      ("kind = command\nexecutable = tool\nargv = {item},\nspeed = 3\n",
                       "'speed'"),
                      ("kind = command\nargv = {item},\n", "executable")):
        bad = tmp_path / "bad.conf"
        bad.write_text(text)
        cp = farm.ctl("app", "add", "tool", "9.0", str(src), "--definition", str(bad))
        assert cp.returncode == 2 and key in cp.stderr, (text, cp.stderr)
    listed = farm.client.get_job("/api/v1/apps")["versions"]
    assert "9.0" not in {v["version"] for v in listed}


def test_a_quarantined_version_stays_so_across_a_master_restart_until_slave_test(
        farm: MasterProcess) -> None:
    job = farm.submit("--app", "tool (= 3.0)", "--items", "c")
    failed = farm.wait(job)
    assert failed["status"] == "failed", failed

    def quarantine() -> dict[str, str]:
        v = {v["version"]: v for v in farm.client.get_job("/api/v1/apps")["versions"]}["3.0"]
        return dict(v["quarantined"])

    assert "acceptance test" in quarantine().get("local-1", "")
    farm.stop()
    farm.start()
    assert "acceptance test" in quarantine().get("local-1", "")
    slaves = farm.ctl("slaves").stdout
    assert "quarantined for tool 3.0" in slaves, slaves
    listing = farm.ctl("app", "list").stdout
    assert "quarantined on local-1: tool 3.0 failed its acceptance test" in listing, listing
    # Holders come from what was stored, shown after the restart as before.
    holders = {v["version"]: v["slaves"] for v in farm.client.get_job("/api/v1/apps")["versions"]}
    assert holders["1.0"] == ["local-1"] and holders["2.0"] == ["local-1"]
    assert farm.ctl("slave", "test", "local-1").returncode == 0
    assert quarantine() == {}
    assert "quarantined for tool" not in farm.ctl("slaves").stdout


def test_a_blender_version_renders_with_its_own_definition(farm: MasterProcess,
                                                           tmp_path: Path) -> None:
    definition = tmp_path / "blender-4.2.conf"
    definition.write_text("kind = blender\nexecutable = blender\nformat = OPEN_EXR\n"
                          "timeout = 900\n")
    cp = farm.ctl("app", "add", "blender", "4.2.0", str(bpy_archive()), "--definition",
                  str(definition))
    assert cp.returncode == 0, cp.stderr
    scene = make_scene(tmp_path, frames=1, width=64, height=36)
    job = farm.submit(str(scene), "--frames", "1", "--app", "blender (= 4.2.0)")
    assert farm.wait(job)["status"] == "completed", farm.ctl("logs", str(job)).stdout
    frame = farm.job_dir(job) / "out" / "frame_0001.exr"
    assert frame.read_bytes()[:4] == b"\x76\x2f\x31\x01"  # OpenEXR's magic number
    assert "/apps/blender/4.2.0/root/blender" in farm.ctl("logs", str(job)).stdout
    listed = {v["version"]: v for v in farm.client.get_job("/api/v1/apps")["versions"]
              if v["package"] == "blender"}
    assert listed["4.2.0"]["definition"]["format"] == "OPEN_EXR"
