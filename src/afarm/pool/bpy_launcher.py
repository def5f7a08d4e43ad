#!/usr/bin/python3 -I
# SPDX-License-Identifier: MIT
"""`blender` for a pool version built from PyPI's bpy wheel (Blender as a Python module):
takes the command line afarm gives Blender and does the same through bpy.

Blender as a module has no command line, so this walks afarm's argv left to right as
Blender does: -b and -Y (bpy never runs a file's scripts: files open with use_scripts off),
--factory-startup, --python-exit-code N, --python SCRIPT (run as __main__ with the whole
argv in sys.argv, so afarm's scripts find their arguments after "--"), FILE (opened, which
runs load_post handlers such as render_prep.py's), -S, -E, -o, -F, -x, -f and -s/-e/-a,
--version. Anything else is refused, never ignored.
"""

import ctypes
import os
import runpy
import shutil
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)


def main(argv: list[str]) -> int:
    args = argv[1:]
    if "--" in args:
        args = args[:args.index("--")]
    if args in (["--version"], ["-b", "--version"]):
        import bpy
        print(f"Blender {bpy.app.version_string}")
        return 0
    import bpy
    exit_code = 0
    start = end = None
    i = 0

    def value() -> str:
        nonlocal i
        i += 1
        if i >= len(args):
            raise SystemExit(f"afarm bpy launcher: {args[i - 1]} needs a value")
        return args[i]

    def render_frames(frames: list[int]) -> None:
        scene = bpy.context.scene
        saved = scene.frame_start, scene.frame_end
        for f in frames:
            scene.frame_start = scene.frame_end = f
            bpy.ops.render.render(animation=True, scene=scene.name)
        scene.frame_start, scene.frame_end = saved

    while i < len(args):
        a = args[i]
        if a in ("-b", "--background", "-Y", "--disable-autoexec", "--factory-startup"):
            if a == "--factory-startup":
                bpy.ops.wm.read_factory_settings(use_empty=False)
        elif a == "--python-exit-code":
            exit_code = int(value())
        elif a == "--python":
            script = value()
            sys.argv = list(argv)
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    raise
            except Exception as exc:  # as Blender: a failing script ends with its code
                print(f"Error: Python script {script} failed: {exc!r}", file=sys.stderr,
                      flush=True)
                if exit_code:
                    return exit_code
        elif a == "-S":
            name = value()
            scene = bpy.data.scenes.get(name)
            if scene is None:
                raise SystemExit(f"Error: no scene {name!r}")
            bpy.context.window.scene = scene
        elif a == "-E":
            bpy.context.scene.render.engine = value()
        elif a == "-o":
            bpy.context.scene.render.filepath = value()
        elif a == "-F":
            bpy.context.scene.render.image_settings.file_format = value()
        elif a == "-x":
            bpy.context.scene.render.use_file_extension = value() == "1"
        elif a == "-f":
            render_frames([int(f) for f in value().split(",")])
        elif a == "-s":
            start = int(value())
        elif a == "-e":
            end = int(value())
        elif a == "-a":
            scene = bpy.context.scene
            render_frames(list(range(start if start is not None else scene.frame_start,
                                     (end if end is not None else scene.frame_end) + 1)))
        elif not a.startswith("-"):
            bpy.ops.wm.open_mainfile(filepath=a, load_ui=False, use_scripts=False)
        else:
            raise SystemExit(f"afarm bpy launcher: option {a!r} is not supported")
        i += 1
    return 0


def _exit(code: int) -> None:
    """Leave at once, as Blender does: bpy's module teardown after a render with Python
    handlers registered crashes (SIGSEGV) the interpreter's own exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # bpy's own lines ("Saved: ...") sit in C's stdio buffers
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    bpy = sys.modules.get("bpy")
    tmp = getattr(getattr(bpy, "app", None), "tempdir", "") if bpy else ""
    if tmp and os.path.basename(tmp.rstrip("/")).startswith("blender_"):
        shutil.rmtree(tmp, ignore_errors=True)
    os._exit(code)


if __name__ == "__main__":
    try:
        rc = main(sys.argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - reported, then the same quick exit
        import traceback
        traceback.print_exc()
        rc = 1
    _exit(rc)
