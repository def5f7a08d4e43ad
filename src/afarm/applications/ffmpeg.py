# SPDX-License-Identifier: MIT
"""ffmpeg: the follow-ups that stitch tiles into a frame and encode frames into a video."""

from typing import Any

from afarm.applications.base import Command, ConfiguredApp, RunContext, resolve_executable
from afarm.applications.stitch import encode_argv, stitch_argv
from afarm.errors import UsageError
from afarm.model.job import InputFile, TaskSpec


class FfmpegApp(ConfiguredApp):
    kind = "ffmpeg"

    def validate(self, params: dict[str, Any], files: list[InputFile]) -> dict[str, Any]:
        raise UsageError(f"{self.name!r} only runs follow-up tasks of other jobs;"
                         " submit a Blender job with --encode mp4 or --tiles instead")

    def plan(self, job_name: str, params: dict[str, Any],
             files: list[InputFile]) -> list[TaskSpec]:
        return []

    def commands(self, kind: str, params: dict[str, Any], ctx: RunContext) -> list[Command]:
        return [Command(self._argv(kind, params, ctx))]

    def _argv(self, kind: str, params: dict[str, Any], ctx: RunContext) -> list[str]:
        exe = resolve_executable(self.executable)
        if kind == "stitch":
            out = ctx.out_dir / ctx.outputs[0]
            return stitch_argv(exe, [str(p) for p in ctx.inputs], int(params["cols"]),
                               int(params["rows"]), str(out))
        if kind == "encode":
            # The runner links the inputs as input_000001.EXT, ... in frame order, so a
            # frame list with gaps still encodes as one contiguous sequence.
            ext = ctx.inputs[0].suffix
            pattern = str(ctx.inputs[0].parent / f"input_%06d{ext}")
            out = ctx.out_dir / ctx.outputs[0]
            return encode_argv(exe, pattern, 1, int(params["fps"]), str(out))
        raise UsageError(f"{self.name} cannot run tasks of kind {kind!r}")

    def failure(self, exit_code: int, log_lines: list[str]) -> str | None:
        if exit_code != 0:
            tail = [ln for ln in log_lines if ln.strip()][-1:]
            return f"ffmpeg exited {exit_code}" + (f": {tail[0]}" if tail else "")
        return None
