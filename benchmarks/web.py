#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Measure the web page in headless Chromium against a real master and print the figures.

(a) The page of a job of N tasks (10,000 by default; they wait for a tag no slave has):
    server render time, time to first paint, to the event stream being open, to the first
    event after an action (pause), until the page shows it, DOM nodes, the tab's JS heap.
(b) The jobs list open while a job of M quick tasks runs: events received, refreshes they
    caused (coalesced), the longest main-thread stall, long tasks, JS heap.
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.browser import measure  # noqa: E402
from tests.browser.chrome import chromium  # noqa: E402
from tests.browser.conftest import APPS  # noqa: E402
from tests.farm import MasterProcess  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=10_000, help="tasks of the large job")
    p.add_argument("--burst", type=int, default=300, help="quick tasks run for (b)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        farm = MasterProcess(Path(tmp), slaves=2, apps=APPS).start()
        driver = chromium()
        try:
            job = farm.submit("--app", "talk", "--items", ",".join(["pass"] * a.tasks),
                              "--require-tag", "nowhere")
            page = measure.job_page(driver, farm, job)
            print(f"(a) page of a {a.tasks}-task job")
            for key, unit in (("server_ms", "ms"), ("first_paint_ms", "ms"),
                              ("sse_open_ms", "ms"), ("first_event_ms", "ms"),
                              ("status_shown_ms", "ms"), ("dom_nodes", ""),
                              ("grid_items", ""), ("heap_mb", "MiB"),
                              ("js_heap_mb", "MiB")):
                print(f"    {key:16} {page[key]:10.1f} {unit}")
            farm.ctl("cancel", str(job))
            burst = measure.event_burst(driver, farm, a.burst)
            print(f"(b) jobs list during a {a.burst}-task job")
            for key, value in burst.items():
                print(f"    {key:16} {value:10.1f}")
        finally:
            driver.quit()
            farm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
