# SPDX-License-Identifier: MIT
"""A task's GPU pin: only a small device number is accepted, and it becomes the CUDA and
ROCm device list of the task's process."""

from typing import Any

import pytest

from afarm.errors import UsageError
from afarm.gpu import gpu_device, pinned_env
from afarm.slave.acceptance import parse_nvidia_smi
from tests.fakes import InstantPlace

NVIDIA_SMI = ("GPU 0: NVIDIA GeForce RTX 3080 (UUID: GPU-0c1e2f3a-aaaa-bbbb-cccc-000000000000)\n"
              "GPU 1: NVIDIA GeForce RTX 3080 (UUID: GPU-0c1e2f3a-aaaa-bbbb-cccc-000000000001)\n")


def test_a_cpu_task_has_no_pin_and_a_gpu_task_its_device() -> None:
    assert gpu_device({"frames": [1]}) is None
    assert gpu_device({"gpu_device": 1}) == 1


@pytest.mark.parametrize("bad", [-1, 64, "0", True, 1.0, "0; rm -rf /"])
def test_anything_but_a_device_number_is_refused(bad: Any) -> None:
    with pytest.raises(UsageError, match="gpu_device"):
        gpu_device({"gpu_device": bad})


def test_the_pin_makes_the_device_the_only_visible_one_for_cuda_and_rocm() -> None:
    assert pinned_env(1) == {"CUDA_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "1"}


def test_a_slave_whose_nvidia_smi_lists_two_gpus_offers_two_gpu_slots() -> None:
    from afarm.master.scheduling.gpu_slots import gpu_count

    place = InstantPlace("s")
    found = parse_nvidia_smi(NVIDIA_SMI)
    place.info = {"acceptance": {"gpus": [*found, "dri: renderD128",  # type: ignore
                                          "dri: renderD129"]}}
    assert len(found) == 2 and gpu_count(place) == 2
