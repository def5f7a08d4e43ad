# SPDX-License-Identifier: MIT
"""Build afarm's demo and benchmark scene from nothing and save it as a .blend file.

Run inside Blender (the caller passes ``--python-exit-code 1`` so a failure is an exit code):

    blender -b -Y --factory-startup --python-exit-code 1 --python demo_scene.py -- \
        --output /abs/scene.blend [--frames 24] [--width 320] [--height 180] [--samples 8]

The scene is deterministic: the same arguments give the same renders on every slave, which
is what lets tiles be stitched bit-exactly and benchmark times be compared.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import bpy

# Blender keeps only what follows "--" for the script; everything before it is Blender's.
_SEPARATOR = "--"


class DemoSceneError(Exception):
    """Bad arguments or a scene that could not be built or saved."""


class _Parser(argparse.ArgumentParser):
    # argparse would print its usage and exit on its own; raising instead gives one failure
    # path for every bad argument: a one-line reason on stderr and exit code 2 (see the end).
    def error(self, message: str) -> NoReturn:
        raise DemoSceneError(f"demo_scene.py: {message}")


def _int_in(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be in {low}..{high}, got {value}")
        return value

    return parse


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = list(argv)
    if _SEPARATOR not in args:
        raise DemoSceneError("demo_scene.py: arguments must follow '--' (see the docstring)")
    ours = args[args.index(_SEPARATOR) + 1 :]
    parser = _Parser(prog="demo_scene.py", description=__doc__)
    parser.add_argument("--output", required=True, help="absolute path of the .blend to write")
    parser.add_argument("--frames", type=_int_in("--frames", 1, 100_000), default=24)
    parser.add_argument("--width", type=_int_in("--width", 4, 16_384), default=320)
    parser.add_argument("--height", type=_int_in("--height", 4, 16_384), default=180)
    parser.add_argument("--samples", type=_int_in("--samples", 1, 65_536), default=8)
    parsed = parser.parse_args(ours)
    if not os.path.isabs(parsed.output) or not parsed.output.endswith(".blend"):
        raise DemoSceneError("demo_scene.py: --output must be an absolute path ending in .blend,"
                             f" got {parsed.output!r}")
    if not os.path.isdir(os.path.dirname(parsed.output)):
        raise DemoSceneError(
            f"demo_scene.py: the directory of --output does not exist: {parsed.output!r}")
    return parsed


def _clear() -> None:
    # --factory-startup gives a cube, camera and light; start from an empty file so the
    # scene depends only on this script, not on whatever the startup file holds.
    for collection in (
        bpy.data.objects,
        bpy.data.meshes,
        bpy.data.materials,
        bpy.data.cameras,
        bpy.data.lights,
    ):
        for block in list(collection):
            collection.remove(block)


def _material(name: str, color: tuple[float, float, float], roughness: float,
              metallic: float = 0.0) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    # The viewport colour makes Workbench renders of the same file recognisable too.
    mat.diffuse_color = (*color, 1.0)
    return mat


def _mesh_object(kind: str, name: str, material: bpy.types.Material,
                 location: tuple[float, float, float], **kwargs: float) -> bpy.types.Object:
    adders = {
        "plane": bpy.ops.mesh.primitive_plane_add,
        "cube": bpy.ops.mesh.primitive_cube_add,
        "monkey": bpy.ops.mesh.primitive_monkey_add,
        "sphere": bpy.ops.mesh.primitive_uv_sphere_add,
        "torus": bpy.ops.mesh.primitive_torus_add,
    }
    adders[kind](location=location, **kwargs)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.materials.append(material)
    return obj


def _smooth(obj: bpy.types.Object, subdivisions: int) -> None:
    for polygon in obj.data.polygons:
        polygon.use_smooth = True
    if subdivisions:
        modifier = obj.modifiers.new("Subdivision", "SUBSURF")
        modifier.levels = subdivisions
        modifier.render_levels = subdivisions


def _key(obj: bpy.types.Object, frame: int, **values: tuple[float, float, float]) -> None:
    for path, value in values.items():
        setattr(obj, path, value)
        obj.keyframe_insert(data_path=path, frame=frame)


def _linear(obj: bpy.types.Object) -> None:
    # Constant speed makes the frames of a chunk cost the same, so benchmark seconds per
    # frame do not depend on which frames a slave happened to get.
    if obj.animation_data and obj.animation_data.action:
        for curve in obj.animation_data.action.fcurves:
            for point in curve.keyframe_points:
                point.interpolation = "LINEAR"


def build(frames: int, width: int, height: int, samples: int) -> None:
    _clear()
    scene = bpy.context.scene
    scene.name = "afarm-demo"
    scene.frame_start = 1
    scene.frame_end = frames
    scene.frame_current = 1
    scene.render.fps = 24

    _mesh_object("plane", "Ground", _material("Ground", (0.42, 0.40, 0.36), 0.8),
                 (0.0, 0.0, 0.0), size=30.0)

    monkey = _mesh_object("monkey", "Suzanne", _material("Coral", (0.90, 0.25, 0.18), 0.35),
                          (-1.9, -0.3, 1.0))
    _smooth(monkey, 1)
    _key(monkey, 1, location=(-1.9, -0.3, 1.0), rotation_euler=(0.0, 0.0, 0.0))
    _key(monkey, frames + 1, location=(1.9, -0.3, 1.0),
         rotation_euler=(0.0, 0.0, 2.0 * math.pi))
    _linear(monkey)

    cube = _mesh_object("cube", "Cube", _material("Teal", (0.10, 0.55, 0.60), 0.25),
                        (2.2, 2.4, 0.6), size=1.2)
    _key(cube, 1, rotation_euler=(0.0, 0.0, 0.0))
    _key(cube, frames + 1, rotation_euler=(math.pi / 2.0, 0.0, math.pi))
    _linear(cube)

    sphere = _mesh_object("sphere", "Sphere",
                          _material("Gold", (0.95, 0.70, 0.25), 0.2, metallic=1.0),
                          (-2.0, 2.8, 0.8), radius=0.8, segments=32, ring_count=16)
    _smooth(sphere, 0)

    torus = _mesh_object("torus", "Torus", _material("Violet", (0.45, 0.25, 0.75), 0.4),
                         (0.3, 3.6, 0.35), major_radius=0.9, minor_radius=0.3)
    _smooth(torus, 0)
    _key(torus, 1, rotation_euler=(0.0, 0.0, 0.0))
    _key(torus, frames + 1, rotation_euler=(0.0, 0.0, -math.pi))
    _linear(torus)

    target = bpy.data.objects.new("CameraTarget", None)
    scene.collection.objects.link(target)
    target.location = (0.0, 1.2, 0.9)

    camera_data = bpy.data.cameras.new("Camera")
    camera_data.lens = 38.0
    camera = bpy.data.objects.new("Camera", camera_data)
    scene.collection.objects.link(camera)
    camera.location = (0.0, -7.5, 3.0)
    track = camera.constraints.new("TRACK_TO")
    track.target = target
    track.track_axis = "TRACK_NEGATIVE_Z"
    track.up_axis = "UP_Y"
    scene.camera = camera

    sun_data = bpy.data.lights.new("Sun", "SUN")
    sun_data.energy = 3.0
    sun_data.angle = math.radians(8.0)
    sun_data.color = (1.0, 0.95, 0.88)
    sun = bpy.data.objects.new("Sun", sun_data)
    scene.collection.objects.link(sun)
    sun.rotation_euler = (math.radians(50.0), math.radians(10.0), math.radians(35.0))

    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.20, 0.32, 0.55, 1.0)
    background.inputs["Strength"].default_value = 0.8

    render = scene.render
    render.engine = "CYCLES"
    render.resolution_x = width
    render.resolution_y = height
    render.resolution_percentage = 100
    # Dither adds per-pixel noise seeded by position in the rendered rectangle, so a tile
    # would differ from the same pixels of a full frame.
    render.dither_intensity = 0.0
    render.use_border = False
    render.use_crop_to_border = False
    render.filepath = "//render/frame_####"
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGB"
    render.image_settings.color_depth = "8"
    render.film_transparent = False

    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.preview_samples = samples
    # A fixed sample count makes every frame the same amount of work, so the benchmark's
    # seconds per frame measure the machine, not how early the noise happened to converge.
    cycles.use_adaptive_sampling = False
    # Debian's Blender is built without OpenImageDenoise: with denoising on, a render fails
    # ("Error: Build without OpenImageDenoiser", exit 1).
    cycles.use_denoising = False
    cycles.use_preview_denoising = False
    cycles.seed = 0
    cycles.use_animated_seed = False
    # Few bounces are enough for these simple materials and keep a frame well under a second.
    cycles.max_bounces = 4
    cycles.diffuse_bounces = 2
    cycles.glossy_bounces = 2
    cycles.transmission_bounces = 2
    cycles.volume_bounces = 0
    cycles.transparent_max_bounces = 4
    cycles.caustics_reflective = False
    cycles.caustics_refractive = False

    view = scene.view_settings
    view.view_transform = "Filmic"
    view.look = "High Contrast"


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    build(args.frames, args.width, args.height, args.samples)
    # Overwriting an existing scene would otherwise leave a scene.blend1 backup beside it.
    bpy.context.preferences.filepaths.save_version = 0
    result = bpy.ops.wm.save_as_mainfile(filepath=args.output, check_existing=False,
                                         compress=False, relative_remap=False)
    if "FINISHED" not in result or not os.path.isfile(args.output):
        raise DemoSceneError(f"demo_scene.py: could not save {args.output!r}: {result}")
    print(f"demo_scene.py: wrote {args.output} ({args.frames} frames, "
          f"{args.width}x{args.height}, {args.samples} samples)")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except DemoSceneError as error:
        # Exit at once with a one-line reason; a traceback would fail the run only when the
        # caller remembered --python-exit-code.
        print(error, file=sys.stderr, flush=True)
        sys.exit(2)
