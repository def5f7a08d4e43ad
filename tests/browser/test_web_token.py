# SPDX-License-Identifier: MIT
"""A master whose results need a token (it has tokens, or listens beyond loopback): the
page asks for the token, keeps it in sessionStorage only, and then reads views, events
and thumbnails with it in a header."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from afarm.master import auth
from tests.browser.chrome import axe_violations, screenshot, wait_for
from tests.browser.conftest import APPS
from tests.farm import MasterProcess


@pytest.fixture
def locked_farm(tmp_path: Path) -> Iterator[tuple[MasterProcess, str]]:
    token = auth.new_token(tmp_path / "tokens", "browser test")
    m = MasterProcess(tmp_path, slaves=2, apps=APPS)
    m.client.token = token
    m.start()
    yield m, token
    m.stop()


def test_a_page_that_needs_a_token_reads_everything_with_it_in_a_header(
        locked_farm: tuple[MasterProcess, str], browser: webdriver.Chrome, picture: Path,
        artefacts: Path, axe_source: Path) -> None:
    farm, token = locked_farm
    d = browser
    d.get(f"http://127.0.0.1:{farm.results_port}/")
    assert d.find_element(By.ID, "locked")
    screenshot(d, artefacts, "09-token-needed")
    assert [v for v in axe_violations(d) if v["impact"] in ("serious", "critical")] == []
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait_for("the jobs table", lambda: d.find_elements(By.ID, "jobs-body"), driver=d)
    d.execute_script("window.afarmTestMarker = 'kept'")
    # The stream starts at the rendering's newest event: the farm's start is not replayed.
    wait_for("the stream open", lambda: d.find_element(By.ID, "live-state").text == "live")
    time.sleep(0.5)
    assert d.execute_script("return window.afarmStats.events") == 0
    job = farm.submit("--app", "hue", str(picture), "--items", "0,120,240")
    row = f"#job-row-{job}"
    wait_for("the job's row from the event stream", lambda: d.find_elements(
        By.CSS_SELECTOR, row), driver=d)
    assert d.execute_script("return window.afarmTestMarker") == "kept"
    assert token not in d.current_url
    assert not d.get_cookies()  # nothing another origin's page could make the browser send
    farm.wait(job)

    # Following a link loads a new document: it asks again, the tab's token answers.
    d.find_element(By.CSS_SELECTOR, f"{row} .name a").click()
    wait_for("three thumbnails read with the token", lambda: d.execute_script(
        "return Array.from(document.querySelectorAll('#frames img')).filter((i) =>"
        " i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0).length") == 3,
        driver=d)
    screenshot(d, artefacts, "10-token-job-page")
    # A refresh renders the same pictures again: they are not fetched again.
    before = d.execute_script("return window.afarmStats.refreshes")
    farm.client.post(f"/api/v1/jobs/{job}/priority", {"priority": 60})
    wait_for("a refresh after the priority event", lambda: d.execute_script(
        "return window.afarmStats.refreshes") > before and "60" in d.find_element(
        By.ID, "job-summary").text, driver=d)
    fetched = d.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => n.includes('/thumbs/'))")
    assert len(fetched) == len(set(fetched)) == 3, fetched
    d.find_element(By.ID, "token-forget").click()
    assert d.execute_script("return sessionStorage.getItem('afarm-token')") is None
