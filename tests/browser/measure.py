# SPDX-License-Identifier: MIT
"""Figures of the web page under load, shared by tests/browser/test_web_load.py and
benchmarks/web.py: paint, event latency, main-thread stalls, DOM size, JS heap."""

import time
import urllib.request
from typing import Any

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.browser.chrome import heap_bytes, paint_ms, wait_for
from tests.farm import MasterProcess

# Watches the main thread: the longest gap between 16 ms timer ticks, and long tasks.
STALL_WATCH = """
window.afarmLoad = {maxGap: 0, longTasks: 0, longMs: 0};
let last = performance.now();
(function tick() {
  const now = performance.now();
  afarmLoad.maxGap = Math.max(afarmLoad.maxGap, now - last);
  last = now;
  setTimeout(tick, 16);
})();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) { afarmLoad.longTasks++; afarmLoad.longMs += e.duration; }
}).observe({entryTypes: ['longtask']});
"""


def server_ms(farm: MasterProcess, path: str) -> float:
    started = time.monotonic()
    req = urllib.request.Request(f"http://127.0.0.1:{farm.results_port}{path}",
                                 headers={"Accept": "text/html"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return (time.monotonic() - started) * 1000


def job_page(driver: webdriver.Chrome, farm: MasterProcess, job: int) -> dict[str, Any]:
    """Open the page of a large job, then pause it through the API and time the event."""
    out: dict[str, Any] = {"server_ms": server_ms(farm, f"/jobs/{job}")}
    driver.get(f"http://127.0.0.1:{farm.results_port}/jobs/{job}")
    out["first_paint_ms"] = paint_ms(driver)
    out["sse_open_ms"] = float(wait_for("the event stream open", lambda: driver.execute_script(
        "return window.afarmStats && window.afarmStats.openAt")))
    out["dom_nodes"] = int(driver.execute_script(
        "return document.getElementsByTagName('*').length"))
    out["grid_items"] = len(driver.find_elements(By.CSS_SELECTOR, "#frames li"))
    sent = time.time() * 1000
    farm.client.post(f"/api/v1/jobs/{job}/pause", {})
    first = wait_for("the first event", lambda: driver.execute_script(
        "return window.afarmStats.firstEventAt === null ? null :"
        " performance.timeOrigin + window.afarmStats.firstEventAt"))
    out["first_event_ms"] = float(first) - sent
    wait_for("the paused status, live", lambda: driver.find_element(
        By.CSS_SELECTOR, "#job-summary .status").text == "paused")
    out["status_shown_ms"] = time.time() * 1000 - sent
    out["heap_mb"] = heap_bytes(driver) / 2**20
    # The same as the page sees it (Chromium's performance.memory, precise with its flag).
    out["js_heap_mb"] = float(driver.execute_script(
        "return performance.memory.usedJSHeapSize")) / 2**20
    farm.client.post(f"/api/v1/jobs/{job}/resume", {})
    return out


def event_burst(driver: webdriver.Chrome, farm: MasterProcess, tasks: int) -> dict[str, Any]:
    """The jobs list open while a job of ``tasks`` quick tasks runs: how long the main
    thread was ever blocked, and how many refreshes the events caused."""
    driver.get(f"http://127.0.0.1:{farm.results_port}/")
    wait_for("the event stream open", lambda: driver.execute_script(
        "return window.afarmStats && window.afarmStats.openAt"))
    driver.execute_script(STALL_WATCH)
    started = time.monotonic()
    job = farm.submit("--app", "true", "--items", ",".join(["x"] * tasks))
    farm.wait(job)
    wait_for("the job completed, live", lambda: driver.find_element(
        By.CSS_SELECTOR, f"#job-row-{job}").get_attribute("data-status") == "completed")
    stats = driver.execute_script("return [window.afarmLoad, window.afarmStats]")
    return {"burst_s": time.monotonic() - started, "events": stats[1]["events"],
            "refreshes": stats[1]["refreshes"], "max_stall_ms": stats[0]["maxGap"],
            "long_tasks": stats[0]["longTasks"], "long_task_ms": stats[0]["longMs"],
            "heap_mb": heap_bytes(driver) / 2**20}
