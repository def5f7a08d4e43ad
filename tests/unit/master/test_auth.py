# SPDX-License-Identifier: MIT
import grp
from pathlib import Path

import pytest

from afarm.errors import ConfigError, UsageError
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


D1, D2 = "1" * 64, "2" * 64


def test_a_line_without_a_scope_written_before_scopes_stays_admin(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# made by 0.2\n{D1} afarmctl\n{D2} my old laptop\n\n")
    assert auth.load_tokens(path) == {D1: auth.Token("admin", "afarmctl"),
                                      D2: auth.Token("admin", "my old laptop")}


def test_a_scope_field_after_the_digest_gives_the_token_its_scope(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{D1} scope=submit alice\n{D2} scope=admin ops\n")
    assert auth.load_tokens(path) == {D1: auth.Token("submit", "alice"),
                                      D2: auth.Token("admin", "ops")}


def test_a_label_cannot_give_a_token_a_scope(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "SERVICE_GROUP", "no-such-group-here")
    path = tmp_path / "tokens"
    for label in ("scope=admin", "alice scope=admin", "my old laptop"):
        token = new_token(path, label)
        assert auth.load_tokens(path)[digest(token)] == auth.Token("submit", label)


def test_an_unknown_scope_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{D1} scope=submit alice\n{D2} scope=root bob\n")
    with pytest.raises(ConfigError) as err:
        auth.load_tokens(path)
    assert str(path) in str(err.value)
    assert "line 2: scope=root is unknown; use scope=admin or scope=submit" in str(err.value)


def test_a_line_that_holds_no_digest_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{D1} alice\nsecret-token-pasted-here\n")
    with pytest.raises(ConfigError, match="line 2: the first field must be a token's sha256"):
        auth.load_tokens(path)


def test_one_token_with_two_scopes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{D1} alice\n{D1} scope=submit alice\n")
    with pytest.raises(ConfigError, match="line 2: the same token as line 1"):
        auth.load_tokens(path)


def test_new_tokens_are_submit_only_unless_asked_for_admin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "SERVICE_GROUP", "no-such-group-here")
    path = tmp_path / "tokens"
    artist = new_token(path, "alice")
    boss = new_token(path, "ops", "admin")
    assert path.read_text().splitlines() == [f"{digest(artist)} scope=submit alice",
                                            f"{digest(boss)} scope=admin ops"]
    assert auth.load_tokens(path)[digest(artist)].scope == "submit"


@pytest.mark.parametrize("label", ["", "a\nb", f"a\n{D2} scope=admin", "a\rb", "a\tb",
                                   "x" * 65, "-x", "#x", "trailing ", "caf\u00e9",
                                   "a\u2028b"])
def test_a_label_that_could_leave_its_line_is_refused(
        tmp_path: Path, label: str) -> None:
    with pytest.raises(UsageError, match="token label"):
        new_token(tmp_path / "tokens", label)
    assert not (tmp_path / "tokens").exists()


def test_a_scope_other_than_admin_or_submit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="use admin or submit"):
        new_token(tmp_path / "tokens", "alice", "root")
