# SPDX-License-Identifier: MIT
"""Blender: frame chunks or tiles of a .blend, with stitch and encode follow-ups."""

import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from afarm.applications.base import (
    HARMLESS_LINE,
    Command,
    ConfiguredApp,
    RunContext,
    check_keys,
    int_param,
    resolve_executable,
    script_path,
)
from afarm.errors import UsageError
from afarm.gpu import gpu_device
from afarm.model.frames import MAX_FRAME, chunk, parse_frames, parse_tiles, tiles
from afarm.model.job import InputFile, TaskSpec
from afarm.project.header import BadBlend, check_file

ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")
FORMATS = {"PNG": "png", "OPEN_EXR": "exr"}
ENCODINGS = ("", "mp4")
PARAMS = {"frames", "chunk", "tiles", "engine", "format", "encode", "fps", "scene"}
# What render_prep.py prints and exits with when it refuses a file (see that script).
PREP_REFUSED = "afarm: refused: "
PREP_EXIT_CODES = (3, 4)
_ERROR_LINE = re.compile(
    r"(?i)(error|traceback|exception|cannot|can't|failed|unable|not a blend|"
    r"file format is not supported|out of memory)")


def frame_file(frame: int, ext: str, suffix: str = "") -> str:
    # Blender pads `####` to four digits and writes longer numbers in full, as does :04d.
    return f"frame_{frame:04d}{suffix}.{ext}"


MAX_STEM_BYTES = 100


def _keeps(c: str) -> bool:
    # ASCII: letters, digits and ._- as before. Beyond ASCII: letters, combining marks,
    # digits and pictographs (ñ, ø, 日, ☃) are kept; separators, control and format
    # characters (bidi overrides, zero-width joiners), punctuation and math symbols (which
    # hold look-alike slashes such as U+2215) are not.
    if c.isascii():
        return c.isalnum() or c in "._-"
    return unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "So"


def safe_stem(name: str) -> str:
    """A file name stem from a job name: the user's own letters (any script) kept, every
    run of anything else one '_', no leading or trailing '.' or '_' (so never '.' or '..'),
    at most MAX_STEM_BYTES bytes of UTF-8, cut between characters."""
    text = unicodedata.normalize("NFC", name)
    stem = re.sub("_+", "_", "".join(c if _keeps(c) else "_" for c in text)).strip("._-")
    out = ""
    for c in stem:
        if len((out + c).encode()) > MAX_STEM_BYTES:
            break
        out += c
    return out.rstrip("._-") or "job"


class BlenderApp(ConfiguredApp):
    kind = "blender"

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        super().__init__(name, conf)
        self.engine = str(conf.get("engine", ""))
        self.format = str(conf.get("format", "PNG"))
        self.followup = str(conf.get("followup_application", "ffmpeg"))

    # -- on the master ------------------------------------------------------------------
    def validate(self, params: dict[str, Any], files: list[InputFile]) -> dict[str, Any]:
        check_keys(params, PARAMS, self.name)
        # The first file is the scene; the others (textures, linked libraries, caches) sit
        # at the paths the scene refers to as //relative/paths. The scene may sit in a
        # folder of the project (shots/a.blend beside assets/): names are checked relative
        # paths (InputFile), so it never leaves the job.
        if not files or not files[0].name.lower().endswith(".blend"):
            raise UsageError(f"application {self.name!r} renders a .blend file;"
                             " give the path of a .blend first")
        if "frames" not in params:
            raise UsageError("--frames is required for Blender jobs, e.g. --frames 1-240")
        frames = parse_frames(str(params["frames"]))
        if min(frames) < 0:
            raise UsageError(f"--frames {params['frames']!r}: Blender jobs render frames 0 and"
                             " up; drop the negative frames")
        out: dict[str, Any] = {"frames": frames}
        out["chunk"] = int_param(params, "chunk", 1, 1, 100_000)
        # No engine given: the file's own, as the artist set it up.
        engine = str(params.get("engine") or self.engine).upper()
        if engine and engine not in ENGINES:
            raise UsageError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
        out["engine"] = engine
        fmt = str(params.get("format") or self.format).upper()
        if fmt == "EXR":
            fmt = "OPEN_EXR"
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r} is not one of PNG, OPEN_EXR")
        out["format"] = fmt
        tiles_spec = params.get("tiles") or ""
        if tiles_spec:
            cols, rows = parse_tiles(str(tiles_spec))
            out["tiles"] = [cols, rows]
            if fmt != "PNG":
                raise UsageError("--tiles needs --format PNG (tiles are stitched with ffmpeg)")
        encode = str(params.get("encode") or "")
        if encode not in ENCODINGS:
            raise UsageError(f"--encode {encode!r}: the only encoding is mp4")
        if encode and fmt != "PNG":
            raise UsageError("--encode mp4 needs --format PNG")
        out["encode"] = encode
        out["fps"] = int_param(params, "fps", 24, 1, 240)
        scene = params.get("scene")
        if scene:
            if not isinstance(scene, str) or len(scene) > 63 or scene.startswith("-") \
                    or any(ord(c) < 32 for c in scene):
                raise UsageError("--scene must be a scene name of at most 63 characters,"
                                 " not starting with '-'")
            out["scene"] = scene
        return out

    def plan(self, job_name: str, params: dict[str, Any],
             files: list[InputFile]) -> list[TaskSpec]:
        ext = FORMATS[params["format"]]
        frames: list[int] = params["frames"]
        plan: list[TaskSpec] = []
        finals: list[int] = []  # plan indices whose outputs are the job's frames
        if params.get("tiles"):
            cols, rows = params["tiles"]
            for f in frames:
                first = len(plan)
                tile_paths = []
                for t in tiles(cols, rows):
                    path = f"tiles/{frame_file(f, ext, '_' + t.name)}"
                    tile_paths.append(path)
                    plan.append(TaskSpec(
                        kind="render", label=f"frame {f} tile {t.name}", application=self.name,
                        params={**params, "frames": [f], "tile": [t.col, t.row, cols, rows]},
                        outputs=[path], frames=0))
                finals.append(len(plan))
                plan.append(TaskSpec(
                    kind="stitch", label=f"frame {f} stitch {cols}x{rows}",
                    application=self.followup, runs_on="master",
                    params={"cols": cols, "rows": rows}, inputs=tile_paths,
                    outputs=[f"out/{frame_file(f, ext)}"],
                    depends=list(range(first, len(plan))), frames=1))
        else:
            for part in chunk(frames, params["chunk"]):
                finals.append(len(plan))
                label = f"frame {part[0]}" if len(part) == 1 else f"frames {part[0]}..{part[-1]}"
                plan.append(TaskSpec(
                    kind="render", label=label, application=self.name,
                    params={**params, "frames": part},
                    outputs=[f"out/{frame_file(f, ext)}" for f in part], frames=len(part)))
        if params.get("encode"):
            plan.append(TaskSpec(
                kind="encode", label=f"encode {params['encode']}", application=self.followup,
                runs_on="master", params={"fps": params["fps"]},
                inputs=[f"out/{frame_file(f, ext)}" for f in frames],
                outputs=[f"out/{safe_stem(job_name.removesuffix('.blend'))}.{params['encode']}"],
                depends=finals))
        return plan

    def check_inputs(self, paths: list[Path]) -> None:
        # Blender writes plain files ("BLENDER" ... "ENDB"), and compressed ones with gzip
        # (older versions) or zstd (3.0 and later, with a seek table at the end): a file
        # that is none of these, or is cut short, fails here, not on every slave.
        try:
            check_file(paths[0], "the input .blend")
        except BadBlend as exc:
            raise UsageError(str(exc)) from None

    # -- on the slave ---------------------------------------------------------------------
    def commands(self, kind: str, params: dict[str, Any], ctx: RunContext) -> list[Command]:
        return [Command(self.argv(kind, params, ctx))]

    def argv(self, kind: str, params: dict[str, Any], ctx: RunContext) -> list[str]:
        if kind != "render" or not ctx.inputs:
            raise UsageError(f"{self.name} runs render tasks of one .blend, not {kind!r}")
        # Checked again here, on the slave: whoever sent the task, only these shapes of
        # argument ever reach Blender.
        fmt = params.get("format")
        if fmt not in FORMATS or params.get("engine") not in ("", *ENGINES):
            raise UsageError(f"refused: format {fmt!r} / engine {params.get('engine')!r}")
        frames = params.get("frames")
        if not isinstance(frames, list) or not frames or not all(
                isinstance(f, int) and not isinstance(f, bool) and 0 <= f <= MAX_FRAME
                for f in frames):
            raise UsageError("refused: frames must be a list of frame numbers")
        scene = params.get("scene")
        if scene is not None and (not isinstance(scene, str) or scene.startswith("-")
                                  or len(scene) > 63):
            raise UsageError(f"refused: scene {scene!r}")
        # -Y: scripts inside the submitted file never run.  Order matters: Blender applies
        # arguments left to right. render_prep.py comes before the file, so it checks every
        # path the file refers to as soon as it is read and before Blender opens any of
        # them, and again after it, to prove the check ran; engine, output and format
        # precede the frame option.
        prep = str(script_path("render_prep.py"))
        argv = [resolve_executable(self.executable), "-b", "-Y", "--python-exit-code", "1",
                "--python", prep, str(ctx.inputs[0])]
        if scene:
            argv += ["-S", scene]
        if params["engine"]:
            argv += ["-E", str(params["engine"])]
        argv += ["--python", prep]
        suffix = ""
        tile = params.get("tile")
        if tile:
            if not (isinstance(tile, list) and len(tile) == 4
                    and all(isinstance(v, int) for v in tile)
                    and 0 <= tile[0] < tile[2] <= 16 and 0 <= tile[1] < tile[3] <= 16):
                raise UsageError(f"refused: tile {tile!r}")
            col, row, cols, rows = tile
            suffix = f"_r{row}c{col}"
            argv += ["--python", str(script_path("tile_border.py"))]
        argv += ["-o", str(ctx.out_dir / f"frame_####{suffix}"), "-F", fmt, "-x", "1",
                 "-f", ",".join(str(f) for f in frames)]
        # What "inside the job" means for render_prep.py: the inputs' directory, the output
        # directory and the scratch directory.
        in_dir = str(ctx.in_dir) if ctx.in_dir else os.path.commonpath(
            [str(p.parent) for p in ctx.inputs])
        argv += ["--", "--job-dirs", in_dir, str(ctx.out_dir), str(ctx.scratch)]
        if tile:
            argv += ["--tile", str(col), str(row), str(cols), str(rows)]
        device = gpu_device(params)
        if device is not None:
            argv += ["--gpu-device", str(device)]
        return argv

    def failure(self, exit_code: int, log_lines: list[str]) -> str | None:
        errors = [ln for ln in log_lines
                  if _ERROR_LINE.search(ln) and not HARMLESS_LINE.match(ln)]
        refused = [ln.removeprefix(PREP_REFUSED) for ln in log_lines
                   if ln.startswith(PREP_REFUSED)]
        if exit_code in PREP_EXIT_CODES and refused:
            more = len(refused) - 1
            return ("the .blend was refused: " + refused[0]
                    + (f" (and {more} more; see the task log)" if more else ""))
        if exit_code != 0:
            return f"blender exited {exit_code}" + (f": {errors[-1]}" if errors else "")
        return None
