# SPDX-License-Identifier: MIT
"""Headless Chromium driven by Selenium (Debian's chromium, chromium-driver and
python3-selenium), plus what the browser tests and benchmarks/web.py share: screenshots as
artefacts, axe-core, memory and paint figures."""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".tools/node_modules/axe-core/axe.min.js"
CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def chromium(javascript: bool = True) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    if not javascript:
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    for arg in ("--headless=new", "--window-size=1280,900", "--disable-dev-shm-usage",
                "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--enable-precise-memory-info"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if os.geteuid() == 0:
        # Chromium's own sandbox refuses to run as root (CI runs the suite as root).
        opts.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(120)
    return driver


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60,
             driver: webdriver.Chrome | None = None) -> Any:
    """Poll ``check`` (the test's view of the page) until it gives a true value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # an element swapped out between two reads
            last = exc
        time.sleep(0.1)
    detail = ""
    if driver is not None:
        detail = "\nlog: " + str(driver.execute_script(
            "return document.getElementById('toast').textContent + ' | ' +"
            " document.getElementById('live-state').textContent"))
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}){detail}")


def color_scheme(driver: webdriver.Chrome, scheme: str) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})


def screenshot(driver: webdriver.Chrome, artefacts: Path, name: str) -> Path:
    path = artefacts / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's violations of the current page (run inside it)."""
    driver.execute_script(AXE.read_text("utf-8"))
    found: list[dict[str, Any]] | str = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(
          (r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5)}))),
          (e) => done(String(e)));""")
    if isinstance(found, str):
        raise AssertionError(f"axe-core failed in the page: {found}")
    return found


def heap_bytes(driver: webdriver.Chrome) -> int:
    """The tab's used JS heap, from the DevTools protocol."""
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    return int(driver.execute_cdp_cmd("Runtime.getHeapUsage", {})["usedSize"])


def paint_ms(driver: webdriver.Chrome) -> float:
    """Milliseconds from navigation start to the first contentful paint."""
    return float(wait_for("a first paint", lambda: driver.execute_script(
        "const p = performance.getEntriesByName('first-contentful-paint')[0];"
        " return p ? p.startTime : null;")))


def console_problems(driver: webdriver.Chrome) -> list[str]:
    """The page's console errors since the last call (CSP refusals, script errors), except
    the refused requests a test provoked on purpose (an HTTP status in the message)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "the server responded with a status" not in e["message"]]
