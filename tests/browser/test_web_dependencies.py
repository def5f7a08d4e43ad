# SPDX-License-Identifier: MIT
"""Submitting a .blend from the page shows the master's dependency report, and stops while
files are missing, as afarmctl submit does, unless the user ticks "render anyway"; the
project's folder, with the .blend picked from inside it, satisfies //../assets/ paths."""

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.chrome import screenshot, wait_for
from tests.browser.test_web_browser import open_page, use_token
from tests.farm import MasterProcess
from tests.fixtures.projects import make_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("project") / "film")


def count_jobs(farm: MasterProcess) -> int:
    jobs = farm.client.get("/api/v1/jobs")
    return len(jobs["jobs"] if isinstance(jobs, dict) else jobs)


def fill(d: webdriver.Chrome, shot: Path) -> None:
    Select(d.find_element(By.ID, "s-app")).select_by_value("blender")
    d.find_element(By.ID, "s-file").send_keys(str(shot))
    d.find_element(By.ID, "s-frames").send_keys("2")


def test_missing_files_are_reported_and_block_the_submit_until_the_project_is_given(
        farm: MasterProcess, browser: webdriver.Chrome, shot: Path, artefacts: Path) -> None:
    d = browser
    jobs_before = count_jobs(farm)
    open_page(d, farm, "/")
    use_token(d, farm)
    fill(d, shot)
    d.find_element(By.ID, "s-submit").click()
    wait_for("the report", lambda: d.find_elements(By.CSS_SELECTOR, "#deps-list li"),
             timeout=60, driver=d)
    missing = d.find_elements(By.CSS_SELECTOR, "#deps-list li[data-present='0']")
    texts = [m.text for m in missing]
    # The .blend alone sits at the top of the job: ../assets leaves the uploaded files.
    assert ("//../assets/chars.blend — missing (outside the uploaded files), wanted by"
            " library 'chars.blend' in shot.blend") in texts, texts
    wait_for("the submit stopped", lambda: "are missing" in d.find_element(
        By.ID, "submit-state").text, driver=d)
    screenshot(d, artefacts, "14-submit-dependencies-missing")
    assert count_jobs(farm) == jobs_before

    # The project's folder, the .blend picked from inside it: every file is found.
    d.find_element(By.ID, "s-dir").send_keys(str(shot.parent.parent))
    d.find_element(By.ID, "s-submit").click()
    state = wait_for("the job accepted", lambda: "accepted" in d.find_element(
        By.ID, "submit-state").text and d.find_element(By.ID, "submit-state").text,
        timeout=120, driver=d)
    assert d.find_elements(By.CSS_SELECTOR, "#deps-list li[data-present='0']") == []
    assert "All " in d.find_element(By.ID, "deps").text
    job = farm.client.get(f"/api/v1/jobs/{int(state.split()[1])}")
    names = [f["name"] for f in job["files"]]
    assert names[0] == "shots/shot.blend" and "assets/chars.blend" in names
    farm.ctl("cancel", str(job["id"]))


def test_render_anyway_submits_with_missing_files(
        farm: MasterProcess, browser: webdriver.Chrome, shot: Path) -> None:
    d = browser
    open_page(d, farm, "/")
    use_token(d, farm)
    fill(d, shot)
    d.find_element(By.ID, "s-allow-missing").click()
    d.find_element(By.ID, "s-submit").click()
    state = wait_for("the job accepted", lambda: "accepted" in d.find_element(
        By.ID, "submit-state").text and d.find_element(By.ID, "submit-state").text,
        timeout=120, driver=d)
    assert d.find_elements(By.CSS_SELECTOR, "#deps-list li[data-present='0']")
    farm.ctl("cancel", state.split()[1])
