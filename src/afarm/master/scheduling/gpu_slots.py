# SPDX-License-Identifier: MIT
"""One slot per GPU: which of a slave's devices each running GPU task holds.

A slave with k GPUs offers k GPU slots besides its CPU slots; a GPU task takes one free
device and keeps it until its outcome is applied, so the agent can pin the task to it
(CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, the Cycles device set by render_prep.py).
"""

from typing import Any


def gpu_count(place: Any) -> int:
    """How many GPUs a slave offers: its own `gpus` count if it has one, else the devices
    its hello or acceptance report lists (NVIDIA ones, else /dev/dri render nodes)."""
    n = getattr(place, "gpus", None)
    if isinstance(n, int) and not isinstance(n, bool):
        return max(0, n)
    info = getattr(place, "info", None) or {}
    listed = info.get("gpus")
    if not listed:
        listed = (info.get("acceptance") or {}).get("gpus")
    if isinstance(listed, int) and not isinstance(listed, bool):
        return max(0, min(listed, 64))
    if not isinstance(listed, list):
        return 0
    names = [g for g in listed if isinstance(g, str)]
    nvidia = [g for g in names if g.startswith("nvidia")]
    return min(len(nvidia) or sum(g.startswith("dri") for g in names), 64)


class GpuSlots:
    def __init__(self) -> None:
        self._held: dict[str, dict[int, int]] = {}  # slave -> task -> device

    def held(self, slave: str) -> int:
        return len(self._held.get(slave, ()))

    def free_devices(self, slave: str, count: int) -> list[int]:
        used = set(self._held.get(slave, {}).values())
        return [d for d in range(count) if d not in used]

    def take(self, slave: str, task_id: int, device: int) -> None:
        self._held.setdefault(slave, {})[task_id] = device

    def release(self, slave: str, task_id: int) -> int | None:
        held = self._held.get(slave)
        if not held:
            return None
        device = held.pop(task_id, None)
        if not held:
            del self._held[slave]
        return device

    def device_of(self, slave: str, task_id: int) -> int | None:
        """The GPU a running task is pinned to (None: a CPU task)."""
        return self._held.get(slave, {}).get(task_id)
