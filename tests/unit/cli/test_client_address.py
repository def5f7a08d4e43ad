# SPDX-License-Identifier: MIT
"""Where afarmctl's client sends its requests, from --master, --results or AFARM_MASTER."""

import pytest

from afarm.cli.client import Client
from afarm.errors import UsageError


@pytest.mark.parametrize(("master", "results", "job_url", "results_url"), [
    (None, None, "http://127.0.0.1:7731", "http://127.0.0.1:7732"),
    ("farm.example", None, "http://farm.example:7731", "http://farm.example:7732"),
    ("10.0.0.1:8000", None, "http://10.0.0.1:8000", "http://10.0.0.1:8001"),
    ("[::1]:7731", None, "http://[::1]:7731", "http://[::1]:7732"),
    ("::1", None, "http://[::1]:7731", "http://[::1]:7732"),
    ("[fd00::1]:7000", "[fd00::2]", "http://[fd00::1]:7000", "http://[fd00::2]:7732"),
])
def test_the_urls_follow_master_and_results(master: str | None, results: str | None,
                                            job_url: str, results_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AFARM_MASTER", raising=False)
    client = Client(master, results)
    assert (client.job_url, client.results_url) == (job_url, results_url)


def test_afarm_master_is_used_and_named_when_it_is_wrong(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFARM_MASTER", "[::1]:7000")
    assert Client().job_url == "http://[::1]:7000"
    monkeypatch.setenv("AFARM_MASTER", "[::1:7000")
    with pytest.raises(UsageError, match=r"^AFARM_MASTER '\[::1:7000': missing '\]'"):
        Client()


def test_a_results_port_past_65535_is_refused() -> None:
    with pytest.raises(UsageError, match="pass --results"):
        Client("farm:65535")
