# SPDX-License-Identifier: MIT
from pathlib import Path

import pytest

from afarm.master.auth import digest, is_loopback, load_digests, new_token


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True),
                                            ("localhost", True), ("127.1.2.3", True),
                                            ("0.0.0.0", False), ("10.0.0.1", False),
                                            ("farm.example", False)])
def test_loopback_detection(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_tokens_are_stored_as_digests_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    token = new_token(path, "ci")
    assert token not in path.read_text()
    assert load_digests(path) == {digest(token)}
    assert path.stat().st_mode & 0o777 == 0o600
