# SPDX-License-Identifier: MIT
"""The farm's side of pool versions: a version's own definition plans its jobs; which
slaves hold a version and which are quarantined for it are stored (they outlive a master
restart) and forgotten when the version is removed or added again; a job whose version no
connected slave's architecture has gets a warning."""

from pathlib import Path
from typing import Any

from afarm.master.farm import Farm
from afarm.master.pool.definition import parse_definition
from afarm.model.job import JobSpec

TOOL_1 = "kind = command\nexecutable = tool\nargv = one, {item}\ntimeout = 77\n"


def made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def tool_dir(tmp_path: Path) -> Path:
    src = tmp_path / "tool-src"
    src.mkdir(exist_ok=True)
    (src / "tool").write_text("#!/bin/sh\necho \"$@\"\n")
    (src / "tool").chmod(0o755)
    return src


def connect(farm: Farm, name: str, arch: str = "amd64", installed: set[str] | None = None
            ) -> Any:
    """A link as it is after its hello (no real channel)."""
    link = farm.link(name, object(), 1)
    farm.scheduler.places[name] = link
    link.own_applications = frozenset()
    link.state = "online"
    link.arch = arch
    link.installed = set(installed or ())
    link._versions_changed()
    return link


def test_a_versions_own_definition_plans_its_jobs_without_a_master_definition(
        tmp_path: Path) -> None:
    farm = Farm(made(tmp_path / "state"), {})
    try:
        farm.add_version("tool", "1.0", tool_dir(tmp_path), definition_text=TOOL_1)
        assert farm.choose_version("tool", "tool (>= 1)") == "1.0"
        app = farm.app_for("tool", "1.0")
        assert app is not None and app.timeout == 77
        spec = JobSpec(name="j", application="tool", params={"items": ["a"]}, files=[],
                       app_version="1.0")
        assert farm.submit(spec, dry_run=True) == 0
    finally:
        farm.store.close()


def test_holders_and_quarantines_outlive_a_restart_and_go_with_the_version(
        tmp_path: Path) -> None:
    state = made(tmp_path / "state")
    farm = Farm(state, {})
    farm.add_version("tool", "1.0", tool_dir(tmp_path), definition_text=TOOL_1)
    farm.add_version("tool", "2.0", tool_dir(tmp_path), definition_text=TOOL_1)
    link = connect(farm, "s1", installed={"tool/1.0"})
    link.quarantined["tool/2.0"] = "tool 2.0 failed its acceptance test: exit 1"
    link._versions_changed()
    farm.store.close()

    farm = Farm(state, {})  # the master restarted; s1 has not connected yet
    try:
        assert farm.link("s1", object(), 1).quarantined == {
            "tool/2.0": "tool 2.0 failed its acceptance test: exit 1"}
        listed = {v["version"]: v for v in farm.list_versions()}
        assert listed["1.0"]["slaves"] == ["s1"]
        assert listed["2.0"]["slaves"] == []
        assert listed["2.0"]["quarantined"] == {
            "s1": "tool 2.0 failed its acceptance test: exit 1"}
        assert listed["1.0"]["definition"]["argv"] == ["one", "{item}"]
        # Removed and added again: what slaves knew of the old one no longer holds.
        link = connect(farm, "s1", installed={"tool/1.0"})
        link.quarantined = farm.link("s1", object(), 1).quarantined
        farm.remove_version("tool", "2.0")
        assert "tool/2.0" not in link.quarantined
        farm.add_version("tool", "2.0", tool_dir(tmp_path), definition_text=TOOL_1)
        assert {v["version"]: v["quarantined"] for v in farm.list_versions()}["2.0"] == {}
        farm.remove_version("tool", "1.0")
        farm.add_version("tool", "1.0", tool_dir(tmp_path),
                         definition_text=TOOL_1.replace("one", "uno"))
        assert "tool/1.0" not in link.installed  # the slave checks its install again
        assert {v["version"]: v["slaves"] for v in farm.list_versions()}["1.0"] == []
        assert farm.app_for("tool", "1.0").template == ["uno", "{item}"]  # type: ignore
    finally:
        farm.store.close()


def test_a_job_whose_version_no_connected_slave_can_run_gets_a_warning(
        tmp_path: Path) -> None:
    farm = Farm(made(tmp_path / "state"), {})
    try:
        farm.add_version("tool", "1.0", tool_dir(tmp_path), arch="arm64",
                         definition_text=TOOL_1)
        farm.add_version("tool", "2.0", tool_dir(tmp_path), definition_text=TOOL_1)
        connect(farm, "x86")
        jobs = {}
        for version in ("1.0", "2.0"):
            spec = JobSpec(name="j", application="tool", params={"items": ["a"]},
                           files=[], app_version=version)
            jobs[version] = farm.store.job(farm.submit(spec))
        warned = farm.warnings(jobs["1.0"])
        assert len(warned) == 1 and "exists for arm64 only" in warned[0]
        assert "--arch" in warned[0] and "amd64" in warned[0]
        assert farm.warnings(jobs["2.0"]) == []
        connect(farm, "pi", arch="arm64")
        assert farm.warnings(jobs["1.0"]) == []
        for name in ("x86", "pi"):
            farm.scheduler.places[name].quarantined["tool/2.0"] = "failed"  # type: ignore
        assert "every connected slave is quarantined" in farm.warnings(jobs["2.0"])[0]
    finally:
        farm.store.close()


def test_a_definition_given_at_add_is_checked_before_the_archive_is_kept(
        tmp_path: Path) -> None:
    farm = Farm(made(tmp_path / "state"), {})
    try:
        try:
            farm.add_version("tool", "1.0", tool_dir(tmp_path),
                             definition_text="kind = command\nexecutable = tool\n")
        except Exception as exc:
            assert "argv" in str(exc)
        else:
            raise AssertionError("a command definition without {item} was accepted")
        assert farm.pool.entries() == []
        assert parse_definition("tool", TOOL_1)["timeout"] == 77
    finally:
        farm.store.close()
