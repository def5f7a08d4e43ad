# SPDX-License-Identifier: MIT
"""afarm.cli.ops against a scripted master: data back, errors raised, nothing printed."""

from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import pytest

from afarm.cli import ops
from afarm.cli.client import Client
from afarm.errors import OperationFailed, UsageError


class ScriptedMaster:
    """Answers a Client's calls from lists; records what it was sent."""

    def __init__(self, states: list[str], streams: list[list[dict[str, Any]] | None],
                 outputs: tuple[str, ...] = ("a.png", "sub/b.png")) -> None:
        self.states = states
        self.streams = streams
        self.outputs = list(outputs)
        self.closed = 0
        self.ctrl_c_on_close = False
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.uploaded: list[Path] = []

    def get(self, path: str) -> dict[str, Any]:
        status = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"id": 7, "status": status, "outputs": self.outputs}

    def events(self, job: int | None = None,
               after: int = 0) -> Generator[dict[str, Any], None, None]:
        stream = self.streams.pop(0)
        if stream is None:
            raise OperationFailed("cannot reach the master")
        try:
            yield from stream
        finally:
            self.closed += 1
            if self.ctrl_c_on_close:
                raise KeyboardInterrupt

    def post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        self.posted.append((path, dict(data)))
        return {"id": 7, "status": "queued"}

    def upload(self, path: Path, sha: str | None = None, blend: bool = False) -> str:
        self.uploaded.append(path)
        return sha or "f" * 64

    def download(self, path: str, dst: Path) -> int:
        dst.write_text(path)
        return 1


def client(master: ScriptedMaster) -> Client:
    return cast(Client, master)


def test_wait_reports_each_state_and_returns_the_finished_job(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops.time, "sleep", lambda s: None)
    master = ScriptedMaster(["queued", "active", "active", "completed"],
                            [None, [{"id": 1}, {"id": 2}, {"id": 3}]])
    seen: list[str] = []
    job = ops.wait(client(master), 7, lambda j: seen.append(j["status"]))
    assert job["status"] == "completed"
    assert seen == ["queued", "active", "active", "completed", "completed"]
    assert master.closed == 1
    assert capsys.readouterr() == ("", "")


def test_ctrl_c_while_wait_closes_the_event_stream_is_not_lost() -> None:
    # Left to the garbage collector, a generator's close swallows what it raises.
    master = ScriptedMaster(["active", "completed"], [[{"id": 1}]])
    master.ctrl_c_on_close = True
    with pytest.raises(KeyboardInterrupt):
        ops.wait(client(master), 7)


def test_submit_dry_runs_before_uploading_and_sends_the_hashes(tmp_path: Path) -> None:
    scene = tmp_path / "shot.blend"
    scene.write_bytes(b"x")
    master = ScriptedMaster(["queued"], [])
    request = {"name": "shot", "application": "blender", "params": {}}
    ops.submit(client(master), request, [("shot.blend", scene)])
    assert [p for p, _ in master.posted] == ["/api/v1/jobs?dry_run=1", "/api/v1/jobs"]
    assert master.posted[0][1]["files"] == [{"name": "shot.blend", "sha256": "0" * 64}]
    assert master.posted[1][1]["files"] == [{"name": "shot.blend", "sha256": "f" * 64}]
    assert master.uploaded == [scene] and "files" not in request


def test_fetch_writes_the_outputs_and_refuses_one_outside_the_job(tmp_path: Path) -> None:
    paths = ops.fetch(client(ScriptedMaster(["completed"], [])), 7, tmp_path / "out")
    assert paths == [tmp_path / "out" / "a.png", tmp_path / "out" / "sub" / "b.png"]
    assert (tmp_path / "out" / "sub" / "b.png").read_text() == "/api/v1/jobs/7/outputs/sub/b.png"
    evil = ScriptedMaster(["completed"], [], outputs=("../../etc/cron.d/x",))
    with pytest.raises(OperationFailed, match="outside the job"):
        ops.fetch(client(evil), 7, tmp_path / "evil")
    assert not (tmp_path / "etc").exists()


def test_fetch_overwrites_nothing_unless_forced_and_then_replaces(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "b.png").write_text("mine")
    with pytest.raises(UsageError, match=r"b\.png exists \(1 of the job's 2 files.*--force"):
        ops.fetch(client(ScriptedMaster(["completed"], [])), 7, out)
    assert (out / "sub" / "b.png").read_text() == "mine" and not (out / "a.png").exists()
    ops.fetch(client(ScriptedMaster(["completed"], [])), 7, out, force=True)
    assert (out / "sub" / "b.png").read_text() == "/api/v1/jobs/7/outputs/sub/b.png"


def test_fetch_quotes_a_non_ascii_output_name_in_the_url(tmp_path: Path) -> None:
    master = ScriptedMaster(["completed"], [], outputs=("out/ñøn_☃.mp4",))
    [path] = ops.fetch(client(master), 7, tmp_path)
    assert path == tmp_path / "out" / "ñøn_☃.mp4"
    assert path.read_text() == "/api/v1/jobs/7/outputs/out/%C3%B1%C3%B8n_%E2%98%83.mp4"


def test_wait_stops_at_completed_with_warnings() -> None:
    master = ScriptedMaster(["active", "completed-with-warnings"], [[{"id": 1}]])
    assert ops.wait(client(master), 7)["status"] == "completed-with-warnings"
