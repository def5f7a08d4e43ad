# SPDX-License-Identifier: MIT
"""Every number and size in a job request is bounded before anything is planned."""

import time
from typing import Any

import pytest

from afarm.errors import UsageError
from afarm.master.http.job_request import check, frame_count, task_count


def body(**over: Any) -> dict[str, Any]:
    return {"name": "shot", "application": "blender", "params": {"frames": "1-10"}, **over}


@pytest.mark.parametrize(("over", "words"), [
    ({"timeout": 2 ** 62}, "--timeout"), ({"timeout": 604801}, "--timeout"),
    ({"timeout": 0}, "--timeout"), ({"timeout": True}, "--timeout"),
    ({"timeout": 1.5}, "--timeout"), ({"priority": 101}, "--priority"),
    ({"priority": -1}, "--priority"), ({"name": "x" * 201}, "name"),
    ({"name": "a\nb"}, "control"), ({"name": "  "}, "name"),
    ({"application": "../bin/sh"}, "application"), ({"application": "a" * 65}, "application"),
    ({"params": []}, "params"), ({"files": [{}] * 10001}, "files"),
    ({"evil": 1}, "unknown field"),
])
def test_out_of_range_fields_are_refused_naming_them(over: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        check(body(**over), 50_000)


def test_a_timeout_of_a_week_is_accepted() -> None:
    assert check(body(timeout=604800), 50_000)["timeout"] == 604800


def test_two_thousand_frames_of_16x16_tiles_are_refused_before_planning() -> None:
    started = time.perf_counter()
    with pytest.raises(UsageError, match="514000 tasks.*max_tasks_per_job"):
        check(body(params={"frames": "1-2000", "tiles": "16x16"}), 50_000)
    assert time.perf_counter() - started < 0.05


def test_a_million_frames_in_a_thousand_repeats_are_refused_without_listing_them() -> None:
    started = time.perf_counter()
    with pytest.raises(UsageError, match="frames"):
        check(body(params={"frames": ",".join(["0-999999"] * 1000), "chunk": 100000}),
              50_000)
    assert time.perf_counter() - started < 0.05


def test_a_million_items_one_per_task_are_refused() -> None:
    with pytest.raises(UsageError, match="1000000 tasks"):
        check({"name": "x", "application": "factor",
               "params": {"items": ["1"] * 1_000_000}}, 50_000)


@pytest.mark.parametrize(("params", "tasks"), [
    ({"frames": "1-240", "chunk": 4, "encode": "mp4"}, 61),
    ({"frames": "1-10", "tiles": "2x2"}, 50), ({"frames": "1-100x5"}, 20),
    ({"items": ["a", "b", "c"], "chunk": 2}, 2), ({}, 1)])
def test_task_counts_match_what_the_applications_plan(params: dict[str, Any],
                                                      tasks: int) -> None:
    assert task_count(params) == tasks


def test_frame_counts_are_upper_bounds_of_the_spec() -> None:
    assert frame_count("1-10,5,20-30x2,bad") == 10 + 1 + 6


@pytest.mark.parametrize(("over", "words"), [
    ({"policy": "../x"}, "--policy"), ({"policy": 3}, "--policy"),
    ({"policy": "p" * 65}, "--policy"), ({"deadline": "tomorrow"}, "deadline"),
    ({"deadline": -1}, "deadline"), ({"deadline": True}, "deadline"),
    ({"deadline": 1e12}, "deadline"), ({"min_memory_mib": -1}, "--min-memory"),
    ({"gpus": 65}, "--gpus"), ({"gpus": 1.5}, "--gpus"),
])
def test_bad_ranking_settings_are_refused_naming_them(over: dict[str, Any],
                                                      words: str) -> None:
    with pytest.raises(UsageError, match=words):
        check(body(**over), 50_000)


def test_ranking_settings_are_kept_as_given() -> None:
    out = check(body(policy="pareto", deadline=2e9, min_memory_mib=8192, gpus=1), 50_000)
    assert out["scheduling"] == {"policy": "pareto", "deadline": 2e9,
                                 "min_memory_mib": 8192, "gpus": 1}
    assert check(body(), 50_000)["scheduling"] == {}


def test_a_gpu_job_asks_for_a_slave_with_a_gpu_and_cpu_is_the_default() -> None:
    assert check(body(device="GPU"), 50_000)["scheduling"] == {"device": "GPU", "gpus": 1}
    assert check(body(device="GPU", gpus=2), 50_000)["scheduling"] == {
        "device": "GPU", "gpus": 2}
    assert check(body(device="CPU"), 50_000)["scheduling"] == {}


@pytest.mark.parametrize("device", ["gpu0", "", 1, "TPU"])
def test_an_unknown_device_is_refused_naming_the_choices(device: Any) -> None:
    with pytest.raises(UsageError, match="--device must be CPU or GPU"):
        check(body(device=device), 50_000)


def test_strict_is_a_boolean_and_off_by_default() -> None:
    base = {"name": "j", "application": "blender", "params": {}}
    assert check(base, 10)["strict"] is False
    assert check({**base, "strict": True}, 10)["strict"] is True
    with pytest.raises(UsageError, match="strict must be true or false"):
        check({**base, "strict": "yes"}, 10)


def test_an_app_constraint_is_passed_on_bounded() -> None:
    assert check(body(app="blender (>= 4.2)"), 50_000)["app"] == "blender (>= 4.2)"
    assert check(body(), 50_000)["app"] == ""
    for bad in ("x" * 513, 42, ["blender"]):
        with pytest.raises(UsageError, match="app must be a constraint"):
            check(body(app=bad), 50_000)
