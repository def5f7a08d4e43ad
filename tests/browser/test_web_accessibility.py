# SPDX-License-Identifier: MIT
"""axe-core (from npm, run inside the page in Chromium) finds no serious or critical
violation on any view, in the light and the dark scheme."""

from pathlib import Path

import pytest
from selenium import webdriver

from tests.browser.chrome import axe_violations, color_scheme, wait_for
from tests.farm import MasterProcess


@pytest.fixture(scope="module")
def job(farm: MasterProcess, picture: Path) -> int:
    # A finished job with frames, a failed one (its error shown), and a long one running.
    done = farm.submit("--app", "hue", str(picture), "--items", "0,90,180")
    farm.wait(done)
    farm.submit("--app", "talk", "--items", "import sys; sys.exit('Error: broken')")
    farm.submit("--app", "sleep", "--items", "60", "--priority", "10")
    return done


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_view_has_a_serious_or_critical_accessibility_violation(
        farm: MasterProcess, browser: webdriver.Chrome, axe_source: Path, job: int,
        scheme: str) -> None:
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]["id"]
    color_scheme(browser, scheme)
    found = {}
    for path in ("/", f"/jobs/{job}", f"/jobs/{job}/frames/2", "/slaves",
                 f"/jobs/{job}/tasks/{task}/log", "/jobs/999999"):
        browser.get(f"http://127.0.0.1:{farm.results_port}{path}")
        wait_for("the page's script", lambda: browser.execute_script(
            "return document.documentElement.classList.contains('js')"))
        bad = [v for v in axe_violations(browser) if v["impact"] in ("serious", "critical")]
        if bad:
            found[path] = bad
    assert found == {}
