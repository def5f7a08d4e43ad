# SPDX-License-Identifier: MIT
"""A real Blender job on the page: tiles rendered and stitched into frames that appear
live, the mp4 preview playing inline, a deep link to one frame, and the zip of it all."""

import io
import zipfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.chrome import screenshot, wait_for
from tests.browser.test_web_browser import open_page, use_token
from tests.farm import MasterProcess
from tests.fixtures.blends import make_scene

pytestmark = pytest.mark.slow


def test_tiles_are_stitched_into_frames_live_and_the_mp4_plays_inline(
        farm: MasterProcess, browser: webdriver.Chrome, tmp_path: Path,
        artefacts: Path) -> None:
    d = browser
    scene = make_scene(tmp_path, frames=4)
    # Submitted from the page, as afarmctl submit SCENE --frames 1-4 --tiles 2x2 --encode mp4
    open_page(d, farm, "/")
    use_token(d, farm)
    Select(d.find_element(By.ID, "s-app")).select_by_value("blender")
    d.find_element(By.ID, "s-file").send_keys(str(scene))
    d.find_element(By.ID, "s-frames").send_keys("1-4")
    d.find_element(By.ID, "s-tiles").send_keys("2x2")
    Select(d.find_element(By.ID, "s-encode")).select_by_value("mp4")
    d.find_element(By.ID, "s-submit").click()
    state = wait_for("the job accepted", lambda: "accepted" in d.find_element(
        By.ID, "submit-state").text and d.find_element(By.ID, "submit-state").text,
        driver=d)
    job = int(state.split()[1])
    # The row comes with the next live update (under load, after the answer).
    wait_for("the job's row", lambda: d.find_elements(
        By.CSS_SELECTOR, f"#job-row-{job} .name a"), driver=d)[0].click()
    d.execute_script("window.afarmTestMarker = 'kept'")
    seen: set[str] = set()

    def grid() -> int:
        seen.update(e.text for e in d.find_elements(By.CSS_SELECTOR, "#frames .ph"))
        return int(d.execute_script(
            "return Array.from(document.querySelectorAll('#frames img'))"
            ".filter((i) => i.complete && i.naturalWidth > 0).length"))

    wait_for("four stitched frames, live", lambda: grid() == 4, timeout=300, driver=d)
    assert d.execute_script("return window.afarmTestMarker") == "kept"
    # The page showed frames not yet stitched (their cells count the tiles done), which
    # then turned into pictures without a reload.
    print("placeholders seen:", sorted(seen))
    assert any("tiles" in s for s in seen), seen
    video = wait_for("the mp4 preview", lambda: d.find_elements(By.CSS_SELECTOR,
                                                                "#preview video"),
                     timeout=120, driver=d)[0]
    wait_for("the preview's metadata", lambda: d.execute_script(
        "return arguments[0].readyState >= 1 && arguments[0].duration > 0", video), driver=d)
    assert d.execute_script("return arguments[0].videoWidth", video) == 64
    d.execute_script("document.getElementById('preview').scrollIntoView()")
    screenshot(d, artefacts, "11-blender-tiles-and-mp4")

    d.get(f"http://127.0.0.1:{farm.results_port}/jobs/{job}/frames/3")
    img = d.find_element(By.CSS_SELECTOR, "img.full")
    wait_for("frame 3 at full size", lambda: d.execute_script(
        "return arguments[0].naturalWidth", img) == 64)
    assert "frame_0003.png" in d.find_element(By.TAG_NAME, "h1").text

    names = zip_names(farm, job)
    assert {f"job-{job}/frame_000{i}.png" for i in range(1, 5)} <= names
    assert f"job-{job}/{scene.stem}.mp4" in names


def zip_names(farm: MasterProcess, job: int) -> set[str]:
    import urllib.request
    with urllib.request.urlopen(
            f"http://127.0.0.1:{farm.results_port}/jobs/{job}/download.zip") as r:
        return set(zipfile.ZipFile(io.BytesIO(r.read())).namelist())
