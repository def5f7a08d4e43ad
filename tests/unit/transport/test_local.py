# SPDX-License-Identifier: MIT
from pathlib import Path

import pytest

from afarm.transport.base import CommandTimedOut, TooLarge, TransportError
from afarm.transport.local import LocalTransport


def test_put_and_get_stay_inside_the_work_dir(tmp_path: Path) -> None:
    t = LocalTransport("l", tmp_path / "work", tmp_path / "apps")
    src = tmp_path / "a"
    src.write_bytes(b"abc")
    assert t.put(src, "cache/x") == 3
    assert t.get("cache/x", tmp_path / "b") == 3 and (tmp_path / "b").read_bytes() == b"abc"
    with pytest.raises(TransportError, match="leaves"):
        t.put(src, "../escape")


def test_run_keeps_exit_status_and_output(tmp_path: Path) -> None:
    t = LocalTransport("l", tmp_path, tmp_path)
    r = t.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n") and not r.ok
    with pytest.raises(CommandTimedOut):
        t.run(["/bin/sleep", "5"], timeout=0.2)


def test_get_refuses_a_file_larger_than_the_limit_and_keeps_nothing(tmp_path: Path) -> None:
    t = LocalTransport("l", tmp_path / "work", tmp_path / "apps")
    src = tmp_path / "a"
    src.write_bytes(b"x" * 100)
    t.put(src, "cache/x")
    with pytest.raises(TooLarge, match="larger than 99 bytes"):
        t.get("cache/x", tmp_path / "b", max_bytes=99)
    assert not (tmp_path / "b").exists()
    assert t.get("cache/x", tmp_path / "b", max_bytes=100) == 100
