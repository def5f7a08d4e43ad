# SPDX-License-Identifier: MIT
from pathlib import Path

from afarm.master.auth import digest, load_digests, new_token


def test_tokens_are_stored_as_digests_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    token = new_token(path, "ci")
    assert token not in path.read_text()
    assert load_digests(path) == {digest(token)}
    assert path.stat().st_mode & 0o777 == 0o600
