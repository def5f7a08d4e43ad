# SPDX-License-Identifier: MIT
"""A job of 10,000 tasks: its page stays small (a page of the frame grid, not 10,000
nodes), paints fast, follows events at once, and the jobs list stays responsive while
hundreds of events arrive."""

from selenium import webdriver

from tests.browser import measure
from tests.farm import MasterProcess


def test_the_page_of_a_10000_task_job_stays_small_fast_and_live(
        farm: MasterProcess, browser: webdriver.Chrome) -> None:
    # No slave has the tag: the tasks wait, as a large job's mostly do.
    job = farm.submit("--app", "talk", "--items", ",".join(["pass"] * 10_000),
                      "--require-tag", "nowhere")
    got = measure.job_page(browser, farm, job)
    print("10,000-task job page:", {k: round(v, 1) for k, v in got.items()})
    assert got["grid_items"] == 120  # one page of the grid
    assert got["dom_nodes"] < 3000
    assert got["server_ms"] < 3000
    assert got["first_paint_ms"] < 5000
    assert got["first_event_ms"] < 3000
    assert got["status_shown_ms"] < 6000
    assert got["heap_mb"] < 40


def test_the_jobs_list_stays_responsive_while_hundreds_of_events_arrive(
        farm: MasterProcess, browser: webdriver.Chrome) -> None:
    got = measure.event_burst(browser, farm, 200)
    print("event burst:", {k: round(v, 1) for k, v in got.items()})
    assert got["events"] >= 400  # each task's start and end reached the page
    assert got["refreshes"] < got["events"] / 4  # coalesced, not one fetch per event
    assert got["max_stall_ms"] < 1000
