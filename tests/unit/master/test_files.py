# SPDX-License-Identifier: MIT
import hashlib
from pathlib import Path

import pytest

from afarm.errors import OperationFailed, UsageError
from afarm.master.files import FileStore, JobDir


def test_an_upload_is_kept_only_when_its_sha256_matches(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    sha = hashlib.sha256(b"hello").hexdigest()
    up = store.writer(sha)
    up.write(b"hel")
    up.write(b"lo")
    assert up.commit() == 5 and store.path(sha).read_bytes() == b"hello"
    bad = store.writer(hashlib.sha256(b"other").hexdigest())
    bad.write(b"tampered")
    with pytest.raises(UsageError, match="send it again"):
        bad.commit()
    assert not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("sha", ["../../etc/passwd", "A" * 64, "0" * 63, ""])
def test_only_sha256_digests_name_files(tmp_path: Path, sha: str) -> None:
    with pytest.raises(UsageError):
        FileStore(tmp_path).path(sha)


def test_outputs_cannot_leave_the_job_directory(tmp_path: Path) -> None:
    jd = JobDir(tmp_path, 1)
    jd.create()
    with pytest.raises(OperationFailed):
        jd.final("../2/out/x.png")
    with pytest.raises(OperationFailed):
        jd.final(".partial/x")


def test_publish_renames_a_partial_into_place(tmp_path: Path) -> None:
    jd = JobDir(tmp_path, 1)
    jd.create()
    p = jd.partial_for("out/frame_0001.png", "5-1")
    p.write_bytes(b"x")
    final = jd.publish(p, "out/frame_0001.png")
    assert final.read_bytes() == b"x" and not p.exists()
    assert jd.outputs() == ["frame_0001.png"]
