# SPDX-License-Identifier: MIT
"""The add-on's Blender side: preferences (master, token), the job options stored with the
scene, the panel in Output Properties, and the operators that scan, submit and follow.

The master's address and token live in the add-on's preferences (Blender's userpref.blend),
never in the .blend: a shared file must not carry a farm's token. The job options (frames,
chunk, ...) are the scene's, like its other render settings. Network work runs in a thread
in the UI (a timer shows what it found); in background mode (blender -b, as the tests drive
it) the operators run to the end before they return.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bpy

from . import bridge

ADDON = __package__ or "afarm_blender"
POLL_SECONDS = 2.0
SHOWN_FILES = 12  # dependency lines the panel shows (the rest are counted)

# What the operators found; kept here, not in the .blend.
state: dict[str, Any] = {"scan": None, "job": None, "error": "", "note": "", "frame": None,
                         "busy": False, "outcome": []}
_previews: Any = None


def _prefs(context: Any) -> Any:
    return context.preferences.addons[ADDON].preferences


def _farm(context: Any) -> bridge.Farm:
    p = _prefs(context)
    return bridge.Farm(p.master, p.token, p.results, p.afarm_path)


def _settings(scene: Any) -> bridge.Settings:
    s = scene.afarm
    start, end = scene.frame_start, scene.frame_end
    return bridge.Settings(frames=s.frames or f"{start}-{end}", chunk=s.chunk,
                           tiles=s.tiles, encode=s.encode, priority=s.priority, tags=s.tags,
                           strict=s.strict, allow_missing=s.allow_missing,
                           scene=scene.name)


def _blend() -> Path:
    if not bpy.data.filepath:
        raise bridge.BridgeError("save the .blend first: the farm renders the file on disk")
    return Path(bpy.data.filepath)


def _frame_dir() -> Path:
    """Where this Blender session keeps the frames it shows (its own private directory)."""
    if state.get("frame_dir") is None:
        state["frame_dir"] = tempfile.mkdtemp(prefix="afarm-blender-frames-")
    return Path(state["frame_dir"])


def _show_frame(path: Path | None) -> None:
    """Load the last frame as the panel's preview icon (main thread only)."""
    global _previews
    if path is None or state.get("frame_path") == str(path):
        return
    import bpy.utils.previews

    if _previews is None:
        _previews = bpy.utils.previews.new()
    key = str(path)
    if key not in _previews:
        _previews.load(key, key, "IMAGE")
    state["frame"] = _previews[key].icon_id
    state["frame_path"] = key


def _follow_once(farm: bridge.Farm) -> bool:
    """Fetch the job's state and its newest frame; True once it has finished."""
    job = farm.job(int(state["job"]["id"]))
    state["job"] = job
    state["frame_file"] = farm.last_frame(job, _frame_dir())
    if bridge.finished(job):
        state["outcome"] = bridge.outcome(job)
        return True
    return False


def _submitted(job: dict[str, Any], scan: bridge.Scan) -> None:
    state.update(job=job, scan=scan, error="", outcome=[], frame=None, frame_path=None,
                 frame_file=None, new_job=int(job["id"]))


def _submit_and_follow(farm: bridge.Farm, blend: Path, settings: bridge.Settings) -> None:
    """The worker thread of a submit in the UI: upload and submit (which may take long for
    a large project), then follow the job until it ends."""
    try:
        _submitted(*farm.submit(blend, settings))
        while not _follow_once(farm):
            time.sleep(POLL_SECONDS)
    except bridge.BridgeError as exc:
        state["error"] = str(exc)
    finally:
        state["busy"] = False


def _redraw() -> float | None:
    """Timer: show what the worker thread found; stops once it is done."""
    new_job = state.pop("new_job", None)
    if new_job is not None:  # bpy data is written from the main thread only
        bpy.context.scene.afarm.job_id = new_job
    _show_frame(state.get("frame_file"))
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()
    return 1.0 if state["busy"] else None


class AfarmPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON
    __annotations__ = {
        "master": bpy.props.StringProperty(
            name="Master", description="The master's job port, HOST[:PORT] (default port"
            " 7731; the results port is the next one)", default="127.0.0.1:7731"),
        "results": bpy.props.StringProperty(
            name="Results port", description="HOST:PORT of the results port when it is not"
            " the job port + 1"),
        "token": bpy.props.StringProperty(
            name="Token", subtype="PASSWORD", description="The bearer token (afarm-master"
            " --config FILE new-token prints one); empty: $AFARM_TOKEN, or the local"
            " master's client token. Kept in userpref.blend, as readable as that file"),
        "afarm_path": bpy.props.StringProperty(
            name="afarm folder", subtype="DIR_PATH", description="The folder holding the"
            " afarm package, when this Blender cannot import it (Debian's Blender needs"
            " none: python3-afarm is on its path)"),
    }

    def draw(self, context: Any) -> None:
        col = self.layout.column()
        for name in ("master", "results", "token", "afarm_path"):
            col.prop(self, name)


class AfarmSceneSettings(bpy.types.PropertyGroup):
    __annotations__ = {
        "frames": bpy.props.StringProperty(
            name="Frames", description="1-240, 1,5,10-20 or 1-100x5; empty: the scene's"
            " frame range"),
        "chunk": bpy.props.IntProperty(name="Chunk", default=1, min=1, max=100_000,
                                       description="frames per task"),
        "tiles": bpy.props.StringProperty(name="Tiles", description="COLSxROWS, e.g. 2x2:"
                                          " split each frame (empty: whole frames)"),
        "encode": bpy.props.BoolProperty(name="Encode mp4", description="encode the"
                                         " frames into an mp4"),
        "priority": bpy.props.IntProperty(name="Priority", default=50, min=0, max=100),
        "tags": bpy.props.StringProperty(name="Tags", description="comma-separated slave"
                                         " tags the job requires"),
        "strict": bpy.props.BoolProperty(name="Strict", description="a missing file on"
                                         " the slave fails the job"),
        "allow_missing": bpy.props.BoolProperty(name="Allow missing", description="submit"
                                                " even when files the .blend needs are"
                                                " missing here"),
        "job_id": bpy.props.IntProperty(name="Last job", default=0, min=0),
    }


class AFARM_OT_scan(bpy.types.Operator):
    """List the files the .blend needs and which are missing"""

    bl_idname = "afarm.scan"
    bl_label = "Check Dependencies"

    def execute(self, context: Any) -> set[str]:
        try:
            state["scan"] = _farm(context).scan(_blend())
            state["error"] = ""
        except bridge.BridgeError as exc:
            state["error"] = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        scan = state["scan"]
        if scan.note:
            self.report({"WARNING"}, scan.note)
        if scan.missing:
            self.report({"WARNING"}, f"{len(scan.missing)} missing: {scan.missing[0]}")
        return {"FINISHED"}


class AFARM_OT_submit(bpy.types.Operator):
    """Save the file, carry it and the files it needs to the farm, and submit the job"""

    bl_idname = "afarm.submit"
    bl_label = "Submit to afarm"

    def execute(self, context: Any) -> set[str]:
        if state["busy"]:
            self.report({"WARNING"}, "afarm is still busy with the last job")
            return {"CANCELLED"}
        try:
            blend = _blend()
            if bpy.data.is_dirty:
                bpy.ops.wm.save_mainfile()
            farm = _farm(context)
            settings = _settings(context.scene)
            if not bpy.app.background:
                # Uploads may take minutes: the UI stays live, a timer shows the outcome.
                state.update(busy=True, error="", job=None, outcome=[])
                threading.Thread(target=_submit_and_follow, args=(farm, blend, settings),
                                 daemon=True).start()
                bpy.app.timers.register(_redraw, first_interval=0.5)
                self.report({"INFO"}, f"submitting {blend.name} to afarm")
                return {"FINISHED"}
            job, scan = farm.submit(blend, settings)
        except bridge.BridgeError as exc:
            state["error"] = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _submitted(job, scan)
        context.scene.afarm.job_id = state.pop("new_job")
        self.report({"INFO"}, f"afarm job {job['id']} accepted")
        if scan.note:
            self.report({"WARNING"}, scan.note)
        return {"FINISHED"}


class AFARM_OT_refresh(bpy.types.Operator):
    """Fetch the job's progress and its newest frame now"""

    bl_idname = "afarm.refresh"
    bl_label = "Refresh"

    def execute(self, context: Any) -> set[str]:
        job_id = context.scene.afarm.job_id
        if not job_id:
            self.report({"ERROR"}, "no job yet: submit one first")
            return {"CANCELLED"}
        if state["job"] is None or int(state["job"]["id"]) != job_id:
            state["job"] = {"id": job_id}
        try:
            _follow_once(_farm(context))
        except bridge.BridgeError as exc:
            state["error"] = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _show_frame(state.get("frame_file"))
        return {"FINISHED"}


class AFARM_PT_panel(bpy.types.Panel):
    bl_label = "afarm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context: Any) -> None:
        layout = self.layout
        s = context.scene.afarm
        layout.label(text=f"Master: {_prefs(context).master} (set in the add-on's"
                     " preferences)")
        col = layout.column(align=True)
        for name in ("frames", "chunk", "tiles", "encode", "priority", "tags", "strict",
                     "allow_missing"):
            col.prop(s, name)
        row = layout.row()
        row.operator("afarm.scan", icon="FILE_FOLDER")
        row.operator("afarm.submit", icon="RENDER_ANIMATION")
        if state["busy"] and not state["job"]:
            layout.label(text="Submitting: packing and uploading the project...",
                         icon="SORTTIME")
        if state["error"]:
            box = layout.box()
            box.alert = True
            box.label(text=state["error"], icon="ERROR")
        _draw_scan(layout, state["scan"])
        _draw_job(layout, state["job"])


def _draw_scan(layout: Any, scan: bridge.Scan | None) -> None:
    if scan is None:
        return
    box = layout.box()
    box.label(text=f"{len(scan.files)} files, {sum(n for _, n in scan.files) >> 10} KiB"
              + (f", traced in {scan.seconds:.2f} s" if scan.seconds else ""))
    for name, size in scan.files[:SHOWN_FILES]:
        box.label(text=f"{name}  ({size >> 10} KiB)", icon="FILE")
    if len(scan.files) > SHOWN_FILES:
        box.label(text=f"... and {len(scan.files) - SHOWN_FILES} more")
    for line in scan.missing:
        row = box.row()
        row.alert = True
        row.label(text=f"missing: {line}", icon="ERROR")
    if scan.note:
        box.label(text=scan.note, icon="INFO")


def _draw_job(layout: Any, job: dict[str, Any] | None) -> None:
    if not job or "progress" not in job:
        return
    box = layout.box()
    box.label(text=bridge.progress_text(job))
    for line in state["outcome"]:
        box.label(text=line)
    box.operator("afarm.refresh", icon="FILE_REFRESH")
    if state.get("frame"):
        box.template_icon(icon_value=state["frame"], scale=8.0)


CLASSES = (AfarmPreferences, AfarmSceneSettings, AFARM_OT_scan, AFARM_OT_submit,
           AFARM_OT_refresh, AFARM_PT_panel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.afarm = bpy.props.PointerProperty(type=AfarmSceneSettings)


def unregister() -> None:
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    if state.get("frame_dir"):
        shutil.rmtree(state["frame_dir"], ignore_errors=True)
        state["frame_dir"] = None
    del bpy.types.Scene.afarm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
