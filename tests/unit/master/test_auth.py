# SPDX-License-Identifier: MIT
import grp
from pathlib import Path

import pytest

from afarm.master import auth
from afarm.master.auth import digest, load_digests, new_token
from tests.platform import need_root


def test_tokens_are_stored_as_digests_only(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "SERVICE_GROUP", "no-such-group-here")
    path = tmp_path / "tokens"
    token = new_token(path, "ci")
    assert token not in path.read_text()
    assert load_digests(path) == {digest(token)}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_token_file_root_makes_stays_readable_by_the_service_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_root("only root can give a file to another group")
    monkeypatch.setattr(auth, "SERVICE_GROUP", grp.getgrgid(65534).gr_name)
    path = tmp_path / "tokens"
    new_token(path, "admin")
    assert (path.stat().st_gid, path.stat().st_mode & 0o777) == (65534, 0o640)
