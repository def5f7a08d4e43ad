# SPDX-License-Identifier: MIT
"""Fixtures of the browser tests: a real master with local slaves, a headless Chromium, and
a directory for screenshots (AFARM_TEST_ARTIFACTS, or one under pytest's tmp dir; each
screenshot's path is printed)."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.browser.chrome import AXE, CHROMIUM, DRIVER, chromium
from tests.farm import MasterProcess

APPS = {
    # A frame per item from the uploaded picture, its hue turned by the item's degrees.
    "hue": "kind = command\nexecutable = /usr/bin/ffmpeg\nargv = -nostdin, -v, error, -i,"
           " {input}, -vf, hue=h={item}, -frames:v, 1, {out}/frame.png\n"
           "capture_stdout = false\n",
    "sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n",
    "talk": "kind = command\nexecutable = /usr/bin/python3\nargv = -c, {item},\n",
    "true": "kind = command\nexecutable = /bin/true\nargv = {item},\ncapture_stdout = false\n",
}


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("AFARM_TEST_ARTIFACTS")
    path = Path(given) / "web" if given else tmp_path_factory.mktemp("web-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {path}")
    return path


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    # Watts and a price, so jobs show their kWh and cost.
    m = MasterProcess(tmp_path_factory.mktemp("webfarm"), slaves=2, apps=APPS,
                      extra_conf="watts_busy = 120\nprice = 0.30\n").start()
    yield m
    m.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    for path, package in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver")):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install {package} (make deps-test)")
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def axe_source() -> Path:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing; run make deps-test (npm install axe-core@4)")
    return AXE


@pytest.fixture(scope="session")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("picture") / "input.png"
    subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-f",
                    "lavfi", "-i", "testsrc=s=160x90", "-frames:v", "1", str(path)],
                   check=True)
    return path
