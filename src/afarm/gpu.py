# SPDX-License-Identifier: MIT
"""A task pinned to one GPU: the parameter the scheduler adds, and the environment that
makes that device the only one the task's process sees."""

from typing import Any

from afarm.errors import UsageError

PARAM = "gpu_device"  # in a task's params: the device index on its slave
MAX_DEVICE = 63
ENV_NAMES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def gpu_device(params: dict[str, Any]) -> int | None:
    """The GPU a task is pinned to, or None for a CPU task; refuses anything but a small
    whole number (the value reaches Blender's argv and the task's environment)."""
    value = params.get(PARAM)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DEVICE:
        raise UsageError(f"refused: {PARAM} must be a GPU number 0-{MAX_DEVICE}, not"
                         f" {str(value)[:20]!r}")
    return value


def pinned_env(device: int) -> dict[str, str]:
    """CUDA and ROCm show the process only this device (as its device 0)."""
    return {name: str(device) for name in ENV_NAMES}
