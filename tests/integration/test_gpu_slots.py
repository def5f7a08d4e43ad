# SPDX-License-Identifier: MIT
"""GPU jobs through a real master and local slaves: only the slave with GPUs takes their
tasks, one per GPU, and each task's process sees only its pinned device (through the
sandbox). This machine has no GPU: local-1's two GPUs come from its definition, and the
program run is printenv, not Blender on a GPU."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess

APPS = {"printenv": "kind = command\nexecutable = /usr/bin/printenv\nargv = {item},\n"}


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path, slaves=2, apps=APPS,
                      extra_conf="[[local-1]]\ngpus = 2\nspeed = 1\n").start()
    yield m
    m.stop()


def test_a_gpu_jobs_tasks_run_on_the_gpu_slave_each_seeing_only_its_device(
        farm: MasterProcess) -> None:
    job = farm.submit("--app", "printenv", "--device", "gpu",
                      "--items", ",".join(["CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"] * 3))
    done = farm.wait(job, timeout=60)
    tasks = farm.client.get(f"/api/v1/jobs/{job}")["tasks"]
    assert done["status"] == "completed", (tasks, farm.logtext()[-2000:])
    assert {t["slave"] for t in tasks} == {"local-1"}
    seen = [p.read_text().strip() for p in sorted((farm.job_dir(job) / "out").glob("*.out"))]
    # Both GPUs were free when the job came: its first two tasks took devices 0 and 1.
    assert len(seen) == 6 and set(seen) == {"0", "1"}, seen


def test_a_cpu_job_runs_as_before_without_a_gpu_pin(farm: MasterProcess) -> None:
    job = farm.submit("--app", "printenv", "--items", ",".join(["HOME"] * 4))
    assert farm.wait(job, timeout=60)["status"] == "completed"
    pinned = farm.submit("--app", "printenv", "--items", "CUDA_VISIBLE_DEVICES")
    # Unset in a CPU task: printenv exits 1, the task fails.
    assert farm.wait(pinned, timeout=60)["status"] == "failed"


def test_an_unknown_device_is_refused_naming_the_choices(farm: MasterProcess) -> None:
    cp = farm.ctl("submit", "--app", "printenv", "--items", "HOME", "--device", "tpu")
    assert cp.returncode == 2 and "GPU" in cp.stderr, cp.stderr
