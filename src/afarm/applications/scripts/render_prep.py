# SPDX-License-Identifier: MIT
"""Run by afarm in Blender before every render, after the .blend is loaded.

Debian's Blender is built without OpenImageDenoise, and Cycles then refuses to render any
scene that has denoising on ("Error: Build without OpenImageDenoiser") -- Blender's own
default scene included. Rather than fail such a job on every slave, the render goes ahead
without denoising and the task log says so. Nothing else about the file changes.
"""

import bpy


def has_oidn() -> bool:
    try:
        import _cycles
    except ImportError:
        return False
    return bool(getattr(_cycles, "with_openimagedenoise", False))


def main() -> None:
    if has_oidn():
        return
    for scene in bpy.data.scenes:
        if scene.render.engine == "CYCLES" and scene.cycles.use_denoising:
            scene.cycles.use_denoising = False
            print(f"afarm: warning: scene {scene.name!r} asks for denoising, but this "
                  "Blender is built without OpenImageDenoise; rendering without it")


main()
