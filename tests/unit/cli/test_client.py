# SPDX-License-Identifier: MIT
"""How afarmctl finds a token on the master's machine without being told."""

from pathlib import Path

from afarm.cli.client import Client, master_state_dir


def test_the_state_dir_comes_from_master_conf(tmp_path: Path) -> None:
    conf = tmp_path / "master.conf"
    conf.write_text("# x\n[job_port]\nstate_dir = /wrong\n[master]\nstate_dir = /srv/afarm"
                    "  # ours\n")
    assert master_state_dir(conf) == Path("/srv/afarm")
    assert master_state_dir(tmp_path / "absent") == Path("/var/lib/afarm-master")


def test_the_local_token_is_read_for_a_loopback_master_only(tmp_path: Path) -> None:
    (tmp_path / "client-token").write_text("s3cret\n")
    assert Client("127.0.0.1:7731").local_token(tmp_path) == "s3cret"
    assert Client("localhost").local_token(tmp_path) == "s3cret"
    assert Client("[::1]:7731").local_token(tmp_path) == "s3cret"
    assert Client("farm.example.org").local_token(tmp_path) is None
    assert Client("127.0.0.1", "10.0.0.2:7732").local_token(tmp_path) is None


def test_an_unreadable_token_file_means_no_token(tmp_path: Path) -> None:
    assert Client("127.0.0.1").local_token(tmp_path / "absent") is None
