# SPDX-License-Identifier: MIT
"""Run by afarm in Blender around loading a task's .blend: refuse every file path that
leaves the job, then fix what this Blender cannot render.

The slave runs (see afarm.applications.blender; arguments apply left to right):

    blender -b -Y --python-exit-code 1 --python render_prep.py FILE.blend [-S ..] [-E ..] \
        --python render_prep.py [--python tile_border.py] -o .. -F .. -x 1 -f N \
        -- --job-dirs IN OUT SCRATCH [--tile ..] [--gpu-device N]

The first run, before FILE, registers a load_post handler. Blender calls it once FILE is read
and *before* it evaluates the scene: no image, movie, sound, cache or volume has been opened
yet (measured with strace on Blender 3.4). Linked libraries are the exception: Blender parses
them while it reads FILE, so an outside library is refused before anything of it is rendered,
not before it is read. The second run, after FILE (and after -S and -E), proves the handler
ran for this file and fixes denoising.

The rule (defence in depth; the sandbox is what really bounds a task): every path Blender may
read must be a plain file (or, for caches, a directory) inside IN, OUT or SCRATCH once `//`,
`..` and symlinks are resolved, and must hold no ':' (ffmpeg reads `concat:`, `http:`, `file:`
as protocols). Every path a compositor File Output node writes must stay inside OUT or
SCRATCH. A movie or sound (read through ffmpeg) must not be text: ffmpeg follows playlists
and manifests to the files and hosts they name. A refusal prints one line per path naming
the datablock (PREFIX) and exits EXIT_REFUSED before anything renders. Missing files are not
refused; they are warned about: one WARNING line each, which afarm's runner stores as a task
warning (the job then ends completed-with-warnings, or fails with --strict). The scene's own
output path needs no check: afarm's `-o` overrides it.

Debian's Blender is built without OpenImageDenoise, and Cycles then refuses to render any
scene that has denoising on; such a render goes ahead without denoising, with a WARNING line
(a task warning, like a missing file).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

PREFIX = "afarm: refused: "
WARNING = "afarm: warning: "
EXIT_REFUSED = 3  # a path leaves the job: the task fails, with PREFIX lines saying why
EXIT_BROKEN = 4  # render_prep.py itself could not check the file: fail closed
_STATE_MODULE = "_afarm_render_prep_state"
_USAGE = "usage: blender ... --python render_prep.py FILE ... -- --job-dirs IN OUT SCRATCH"

# How Blender uses a path, which decides what may sit there.
FILE = "file"  # one file it reads
MEDIA = "media"  # one file it reads through ffmpeg (movies, sounds)
FAMILY = "family"  # a file name standing for a numbered family (sequence, UDIM tiles)
DIR = "dir"  # a directory it reads (and, for caches, may write)
OPTDIR = "optdir"  # a cache directory it uses only if present (nothing baked, external off)
WRITE = "write"  # a file prefix it writes (compositor File Output)


class PrepError(Exception):
    """render_prep.py was called wrongly; nothing was checked."""


class JobDirs(NamedTuple):
    inputs: str
    outputs: str
    scratch: str

    def read_roots(self) -> tuple[str, ...]:
        return tuple(os.path.realpath(d) for d in self)

    def write_roots(self) -> tuple[str, ...]:
        return tuple(os.path.realpath(d) for d in (self.outputs, self.scratch))


# Without its cache a simulation is run anew by each task from the task's first frame.
BAKE_HINT = ("; bake the simulation (Physics > Fluid > Bake All) and submit again, or every"
             " task simulates from its own first frame")


class Ref(NamedTuple):
    """One path the loaded file refers to, with the datablock that wants it."""

    owner: str  # e.g. "image 'Secret'"
    raw: str  # as stored in the file
    base: str  # the directory '//' means for this datablock
    use: str  # FILE, MEDIA, FAMILY, DIR, OPTDIR or WRITE
    hint: str = ""  # what the user can do when it is missing


def parse_job_dirs(argv: Sequence[str]) -> JobDirs:
    """Read ``--job-dirs IN OUT SCRATCH`` from the arguments after Blender's ``--``."""
    args = list(argv)
    if "--" not in args:
        raise PrepError(f"render_prep.py: no '--' in the command line\n{_USAGE}")
    ours = args[args.index("--") + 1:]
    # Other afarm scripts (tile_border.py) read their own options after the same '--'.
    if ours.count("--job-dirs") != 1:
        raise PrepError(f"render_prep.py: expected '--job-dirs IN OUT SCRATCH' once\n{_USAGE}")
    rest = ours[ours.index("--job-dirs") + 1:]
    values = rest[:next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]
    if len(values) != 3:
        raise PrepError(f"render_prep.py: --job-dirs takes 3 directories, got {values!r}")
    for value in values:
        if not os.path.isabs(value) or not os.path.isdir(value):
            raise PrepError(f"render_prep.py: --job-dirs {value!r} is not an absolute path"
                            " of an existing directory")
    return JobDirs(*values)


def parse_gpu_device(argv: Sequence[str]) -> int | None:
    """``--gpu-device N`` after Blender's ``--``: the GPU the agent pinned this task to (its
    only visible one, through CUDA_VISIBLE_DEVICES/HIP_VISIBLE_DEVICES); None: CPU."""
    args = list(argv)
    ours = args[args.index("--") + 1:] if "--" in args else []
    if "--gpu-device" not in ours:
        return None
    i = ours.index("--gpu-device")
    value = ours[i + 1] if i + 1 < len(ours) else ""
    if ours.count("--gpu-device") != 1 or not value.isdigit() or int(value) > 63:
        raise PrepError(f"render_prep.py: --gpu-device takes one device number, got {value!r}")
    return int(value)


# Cycles' GPU back-ends, best first; the first one that lists a device is used.
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


def use_gpu(bpy: Any, device: int) -> str:
    """Cycles renders on the GPU: the pinned device is the only one the process sees, so
    every GPU device Cycles lists is it. Returns the back-end used; raises PrepError when
    Cycles finds no GPU (rendering on the CPU would silently break the job's request)."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in GPU_BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # this Blender was built without it
            continue
        (getattr(prefs, "refresh_devices", None) or prefs.get_devices)()
        gpus = [d for d in prefs.devices if d.type == backend]
        if not gpus:
            continue
        for d in prefs.devices:
            d.use = d.type == backend
        for scene in bpy.data.scenes:
            scene.cycles.device = "GPU"
        print(f"afarm: Cycles renders on {backend} device {device}: "
              + ", ".join(d.name for d in gpus), flush=True)
        return backend
    raise PrepError(f"render_prep.py: this task was given GPU {device}, but Cycles finds no"
                    " GPU here (check the driver and the sandbox's GPU access)")


# -- the rule, without Blender ------------------------------------------------------------

WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/][^:]*")  # C:\tex\a.png; no other ':' after


def blender_abspath(raw: str, base: str, cwd: str) -> str:
    """The path Blender opens for `raw`: '//' is `base`, other relative paths are `cwd`'s,
    and a Windows drive path is read on Linux as /c/...: BLI_path_abs lowercases the drive
    letter into the first directory ('C:\\tex\\a.png' -> '/c/tex/a.png')."""
    if WINDOWS_DRIVE.fullmatch(raw):
        return "/" + raw[0].lower() + raw[2:].replace("\\", "/")
    if raw.startswith("//"):
        # Blender joins by plain concatenation: "///etc/x" is base + "/etc/x", not "/etc/x".
        return base.rstrip("/") + "/" + raw[2:]
    if os.path.isabs(raw):
        return raw
    return cwd.rstrip("/") + "/" + raw


def inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _places(path: str) -> set[str]:
    # Blender may normalise '..' itself (lexically) or leave it to the kernel, which follows
    # symlinks first; Windows-made files may mean '\' as a separator. Every reading counts.
    places = set()
    for p in {path, path.replace("\\", "/")}:
        places.update({os.path.normpath(p), os.path.realpath(p),
                       os.path.realpath(os.path.normpath(p))})
    return places


def where_problem(path: str, roots: Sequence[str],
                  place: str = "the job's files") -> str | None:
    """Why `path` is not inside `roots` (after '..' and symlinks), or None if it is."""
    outside = sorted(p for p in _places(path) if not inside(p, roots))
    if not outside:
        return None
    shown = outside[0]
    return f"outside {place}" + (f" (it resolves to {shown!r})" if shown != path else "")


def _kind_problem(path: str, want_dir: bool) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing: Blender renders without it; the caller warns
    if want_dir:
        return None if stat.S_ISDIR(mode) else "not a directory"
    return None if stat.S_ISREG(mode) else "not a plain file"


def _is_text(path: str) -> bool:
    # Every movie and sound container holds binary bytes in its first 4 KiB; a playlist or
    # manifest (HLS .m3u8, DASH .mpd, SDP, ffconcat) is text, and ffmpeg opens the files and
    # addresses it names, wherever they are.
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the 4 KiB boundary
    return True


def family_pattern(name: str) -> re.Pattern[str]:
    """The file names a sequence or UDIM name stands for: any digits where it has digits,
    '#'s, <UDIM> or <UVTILE>. Wider than Blender's own rule, so every file it may pick is
    checked."""
    out = []
    for part in re.split(r"(<UDIM>|<UVTILE>|#+|\d+)", name):
        if part == "<UVTILE>":
            out.append(r"u\d+_v\d+")
        elif part in ("<UDIM>",) or (part and (part.isdigit() or set(part) == {"#"})):
            out.append(r"\d+")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def _tree_problems(top: str, roots: Sequence[str]) -> Iterator[str]:
    """Entries under a directory Blender reads that point outside or are not plain files."""
    for parent, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                why = where_problem(path, roots)
                if why:
                    yield f"its entry {path!r} is a symlink {why}"
                    continue
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue  # a dangling link inside the job reads nothing
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                yield f"its entry {path!r} is not a plain file"


def check_ref(ref: Ref, dirs: JobDirs, cwd: str) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for one reference, each a sentence naming its datablock."""
    raw = ref.raw
    if not raw:
        return [], []
    said = f"{ref.owner} {'writes' if ref.use == WRITE else 'reads'} {raw!r}"
    drive = WINDOWS_DRIVE.fullmatch(raw) is not None
    if drive and ref.use != WRITE and not os.path.lexists(blender_abspath(raw, ref.base, cwd)):
        # A Windows-made file naming C:\... (Blender here looks in /c/..., which the task
        # cannot see): nothing is read, so it is a missing file, not an escape attempt.
        if ref.use == OPTDIR:
            return [], []
        return [], [f"{said}: a Windows path; no such file in the job (relink it with File"
                    " > External Data > Find Missing Files, or make paths relative on the"
                    " machine that has the file)"]
    if ":" in raw and not drive:
        return [f"{said}: a path with ':' is not allowed (ffmpeg treats 'concat:', 'http:',"
                " 'file:' and the like as protocols); use a plain relative path (//...)"], []
    if "\0" in raw:
        return [f"{said}: the path holds a NUL byte"], []
    path = blender_abspath(raw, ref.base, cwd)
    if ref.use == WRITE:
        why = where_problem(path, dirs.write_roots(), "the task's output directory")
        return ([f"{said}: {why}; afarm collects only its own output, so remove the node"]
                if why else []), []
    roots = dirs.read_roots()
    why = where_problem(path, roots)
    if why:
        return [f"{said}: {why}; make the path relative (//...) and send the file with the"
                " job"], []
    refusals: list[str] = []
    if ref.use == FAMILY:
        folder, name = os.path.split(path)
        pattern = family_pattern(name)
        try:
            siblings = sorted(n for n in os.listdir(folder) if pattern.fullmatch(n))
        except OSError:
            siblings = []
        for sibling in siblings:
            member = os.path.join(folder, sibling)
            problem = where_problem(member, roots) or _kind_problem(member, want_dir=False)
            if problem:
                refusals.append(f"{said}: its file {sibling!r} is {problem}")
        if not siblings:
            return [], [f"{said}: no such files in the job"]
        return refusals, []
    problem = _kind_problem(path, want_dir=ref.use in (DIR, OPTDIR))
    if problem:
        return [f"{said}: it is {problem}"], []
    if not os.path.exists(path):
        if ref.use == OPTDIR:
            return [], []
        return [], [f"{said}: no such {'directory' if ref.use == DIR else 'file'} in the"
                    f" job{ref.hint}"]
    if ref.use == MEDIA and _is_text(path):
        return [f"{said}: it is text, not a movie or sound: ffmpeg would open whatever files"
                " and addresses a playlist or manifest (HLS, DASH, SDP, ffconcat) names"], []
    if ref.use in (DIR, OPTDIR):
        refusals += [f"{said}: {p}" for p in _tree_problems(path, roots)]
    return refusals, []


# -- what a loaded file refers to (needs Blender) -------------------------------------------

class _Bases:
    """The directory '//' stands for, per library: each library's paths are relative to the
    file that links it, as Blender resolves them."""

    def __init__(self, bpy: Any, cwd: str) -> None:
        self.main = os.path.dirname(bpy.data.filepath)
        self.cwd = cwd
        self._libs: dict[int, str] = {}
        for lib in bpy.data.libraries:
            self.library_file(lib)

    def library_file(self, lib: Any, depth: int = 0) -> str:
        key = lib.as_pointer()
        if key not in self._libs:
            parent = lib.parent
            base = (os.path.dirname(self.library_file(parent, depth + 1))
                    if parent is not None and depth < 64 else self.main)
            self._libs[key] = os.path.normpath(blender_abspath(lib.filepath, base, self.cwd))
        return self._libs[key]

    def of(self, idb: Any) -> str:
        lib = getattr(idb, "library", None)
        return os.path.dirname(self.library_file(lib)) if lib is not None else self.main


def _name(kind: str, idb: Any) -> str:
    lib = getattr(idb, "library", None)
    return f"{kind} {idb.name!r}" + (f" (linked from {lib.filepath!r})" if lib else "")


def _node_trees(bpy: Any) -> Iterator[tuple[str, Any, Any]]:
    owners = (("material", bpy.data.materials), ("world", bpy.data.worlds),
              ("light", bpy.data.lights), ("texture", bpy.data.textures),
              ("line style", bpy.data.linestyles), ("scene", bpy.data.scenes))
    for kind, collection in owners:
        for idb in collection:
            tree = getattr(idb, "node_tree", None)
            if tree is not None:
                yield _name(kind, idb), tree, idb
    for group in bpy.data.node_groups:
        yield _name("node group", group), group, group


def _point_caches(bpy: Any) -> Iterator[tuple[str, Any, Any]]:
    for ob in bpy.data.objects:
        owner = _name("object", ob)
        for psys in ob.particle_systems:
            yield f"particle system {psys.name!r} of {owner}", psys.point_cache, ob
        for mod in ob.modifiers:
            if mod.type in ("CLOTH", "SOFT_BODY"):
                yield f"modifier {mod.name!r} of {owner}", mod.point_cache, ob
            elif mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
                for surface in mod.canvas_settings.canvas_surfaces:
                    yield (f"surface {surface.name!r} of modifier {mod.name!r} of {owner}",
                           surface.point_cache, ob)
    for scene in bpy.data.scenes:
        world = scene.rigidbody_world
        if world is not None and world.point_cache is not None:
            yield f"rigid body world of {_name('scene', scene)}", world.point_cache, scene


def _fcurves(action: Any) -> Iterator[Any]:
    """An action's fcurves: its own (Blender < 5) and those of its layers' strips (the
    layered actions of Blender 4.4 and later)."""
    yield from getattr(action, "fcurves", ())
    for layer in getattr(action, "layers", ()):
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", ()):
                yield from bag.fcurves


def animates(bpy: Any, prop: str) -> bool:
    """Whether any fcurve (of any action) or driver (of any datablock) in the file may set
    a property named `prop`, wherever it is."""
    paths = [fc.data_path for action in bpy.data.actions for fc in _fcurves(action)]
    for idb in bpy.data.user_map():
        anim = getattr(idb, "animation_data", None)
        if anim is not None:
            paths += [fc.data_path for fc in anim.drivers]
    return any(prop in path for path in paths)


def file_refs(bpy: Any, bases: _Bases) -> tuple[list[Ref], list[Ref]]:
    """(refs to check, refs Blender never opens in a render) of the loaded file."""
    refs: list[Ref] = []
    unused: list[Ref] = []
    data = bpy.data
    for img in data.images:
        # Blender reads a packed still or UDIM set from the .blend, but opens a movie or a
        # sequence by its path even when something is packed.
        if img.source in ("GENERATED", "VIEWER") or (
                img.source in ("FILE", "TILED") and img.packed_file is not None):
            continue
        use = {"SEQUENCE": FAMILY, "TILED": FAMILY, "MOVIE": MEDIA}.get(img.source, FILE)
        refs.append(Ref(_name("image", img), img.filepath, bases.of(img), use))
    for clip in data.movieclips:
        use = FAMILY if clip.source == "SEQUENCE" else MEDIA
        refs.append(Ref(_name("movie clip", clip), clip.filepath, bases.of(clip), use))
    for sound in data.sounds:
        if sound.packed_file is None:
            refs.append(Ref(_name("sound", sound), sound.filepath, bases.of(sound), MEDIA))
    for lib in data.libraries:
        if lib.packed_file is None:
            base = (os.path.dirname(bases.library_file(lib.parent)) if lib.parent is not None
                    else bases.main)
            refs.append(Ref(_name("library", lib), lib.filepath, base, FILE))
    for vol in data.volumes:
        # Checked even when packed: a volume's grids are read from its path.
        refs.append(Ref(_name("volume", vol), vol.filepath, bases.of(vol),
                        FAMILY if vol.is_sequence else FILE))
    for font in data.fonts:
        if font.packed_file is None and font.filepath != "<builtin>":
            refs.append(Ref(_name("font", font), font.filepath, bases.of(font), FILE))
    for cache in data.cache_files:
        use = FAMILY if cache.is_sequence else FILE
        refs.append(Ref(_name("cache file", cache), cache.filepath, bases.of(cache), use))
        for layer in cache.layers:
            refs.append(Ref(f"layer of {_name('cache file', cache)}", layer.filepath,
                            bases.of(cache), FILE))
    for text in data.texts:
        # A text's contents live in the .blend; Blender never opens its path in a render,
        # and -Y stops it from running.
        unused.append(Ref(_name("text", text), text.filepath, bases.of(text), FILE))
    for ob in data.objects:
        owner = _name("object", ob)
        base = bases.of(ob)
        for mod in ob.modifiers:
            what = f"modifier {mod.name!r} of {owner}"
            if mod.type == "MESH_CACHE":
                refs.append(Ref(what, mod.filepath, base, FILE))
            # is_external and is_cached are read-only: no keyframe changes them.
            elif mod.type == "MULTIRES":
                (refs if mod.is_external else unused).append(Ref(what, mod.filepath, base,
                                                                 FILE))
            elif mod.type == "OCEAN":
                (refs if mod.is_cached else unused).append(Ref(what, mod.filepath, base, DIR))
            elif mod.type == "FLUID" and mod.fluid_type == "DOMAIN":
                # Missing matters baked or not: Blender's default cache (Replay) is written
                # while the frames play and never marked baked, and a task that starts at
                # frame N without it simulates from N, not from the start: other smoke.
                refs.append(Ref(f"fluid cache of {what}", mod.domain_settings.cache_directory,
                                base, DIR, BAKE_HINT))
    switchable = None
    for what, cache, idb in _point_caches(bpy):
        for item in cache.point_caches:
            # Internal disk caches live in //blendcache_NAME beside the file, inside the job
            # (disk_cache_warnings says when a baked one is missing). The external path is
            # checked even while use_external is off if an fcurve or driver can switch it
            # on mid-render; otherwise Blender never reads it, and it is often nonsense:
            # File > External Data > Make Paths Relative turns the empty path of every disk
            # cache into '//../..' up to '/'.
            external = getattr(item, "use_external", True)
            if not external and switchable is None:
                switchable = animates(bpy, "use_external")
            (refs if external or switchable else unused).append(
                Ref(f"point cache of {what}", item.filepath, bases.of(idb),
                    DIR if external else OPTDIR))
    for owner, tree, idb in _node_trees(bpy):
        base = bases.of(idb)
        for node in tree.nodes:
            what = f"node {node.name!r} in {owner}"
            if node.bl_idname in ("ShaderNodeTexIES", "ShaderNodeScript"):
                # Whatever the mode: node settings can be keyframed to EXTERNAL.
                refs.append(Ref(what, node.filepath, base, FILE))
            elif node.bl_idname == "CompositorNodeOutputFile":
                refs += _file_output_refs(node, f"File Output {what}", base)
    for scene in data.scenes:
        refs += _strip_refs(scene, bases)
    return refs, unused


def _file_output_refs(node: Any, what: str, base: str) -> list[Ref]:
    # Muted nodes are checked too: a plain (Python-free) driver can unmute one mid-render.
    refs = [Ref(what, node.base_path, base, WRITE)]
    if node.format.file_format != "OPEN_EXR_MULTILAYER":
        # Each input is written to base_path/sub_path: the sub path may hold '/' and '..'.
        for slot in node.file_slots:
            joined = node.base_path.rstrip("/") + "/" + slot.path if node.base_path \
                else slot.path
            # Joined as text, even an absolute sub path (measured: "/x/y_" under "//../out/"
            # writes out/x/y_0001.png).
            refs.append(Ref(f"input {slot.path!r} of {what}", joined, base, WRITE))
    return refs


def _strip_refs(scene: Any, bases: _Bases) -> list[Ref]:
    # Proxies are not checked: a final render reads strips and clips at full size, never
    # their proxies.
    editor = scene.sequence_editor
    if editor is None:
        return []
    refs = []
    base = bases.of(scene)
    for strip in editor.sequences_all:
        what = f"sequencer strip {strip.name!r} in {_name('scene', scene)}"
        if strip.type == "IMAGE":
            folder = strip.directory
            for element in strip.elements:
                joined = folder.rstrip("/") + "/" + element.filename if folder \
                    else element.filename
                refs.append(Ref(what, joined, base, FILE))
        elif strip.type == "MOVIE":
            refs.append(Ref(what, strip.filepath, base, MEDIA))
        elif strip.type == "SOUND" and strip.sound is not None \
                and strip.sound.packed_file is None:
            refs.append(Ref(what, strip.sound.filepath, bases.of(strip.sound), MEDIA))
    return refs


def _others(bpy: Any, refs: list[Ref], unused: list[Ref], dirs: JobDirs,
            cwd: str) -> tuple[list[str], list[str]]:
    """Paths Blender itself lists that the walk above did not explain: refused, unnamed,
    when outside the job; warned about when missing (refusals, warnings).

    bpy.utils.blend_paths knows every kind of path Blender stores; this catches a kind the
    walk does not know (a newer Blender's), so the rule holds for it too.
    """
    explained: set[str] = set()
    for checked, group in ((True, refs), (False, unused)):
        for ref in group:
            full = os.path.normpath(blender_abspath(ref.raw, ref.base, cwd))
            explained.update({ref.raw, full})
            if checked:  # Blender lists an image strip's directory, the walk its files
                explained.add(os.path.dirname(full))
    refusals = []
    warnings = []
    unpacked = set(bpy.utils.blend_paths(absolute=True, packed=False, local=False))
    for path in bpy.utils.blend_paths(absolute=True, packed=True, local=False):
        if path in explained or os.path.normpath(path) in explained:
            continue
        ref = Ref("a datablock", path, os.path.dirname(bpy.data.filepath), FILE)
        full = blender_abspath(path, ref.base, cwd)
        if ":" in path or where_problem(full, dirs.read_roots()):
            refusals.append(f"the file refers to {path!r}, outside the job's files (found"
                            " by bpy.utils.blend_paths; afarm does not know which datablock"
                            " holds it)")
        elif path in unpacked and not re.search(r"[<#]", path) \
                and not os.path.lexists(full):
            warnings.append(f"the file refers to {path!r}: no such file in the job (found"
                            " by bpy.utils.blend_paths; afarm does not know which datablock"
                            " holds it)")
    return refusals, warnings


def _unread_libraries(bpy: Any, bases: _Bases) -> list[str]:
    """Libraries that are in the job but Blender could not read (a newer Blender says so
    with Library.is_missing; 3.4 has no such flag, and a missing file is warned about
    already): their objects render as empty placeholders."""
    return [f"{_name('library', lib)} reads {lib.filepath!r}: Blender could not read it"
            " (not a .blend, damaged, or from a newer Blender); its objects are missing"
            for lib in bpy.data.libraries
            if getattr(lib, "is_missing", False) and os.path.exists(bases.library_file(lib))]


def tile_path(path: str, number: int) -> str | None:
    """The file of UDIM tile `number` for an image path with <UDIM> or <UVTILE>."""
    if "<UDIM>" in path:
        return path.replace("<UDIM>", str(number))
    if "<UVTILE>" in path:
        u, v = (number - 1001) % 10 + 1, (number - 1001) // 10 + 1
        return path.replace("<UVTILE>", f"u{u}_v{v}")
    return None


def _tile_warnings(bpy: Any, bases: _Bases, cwd: str) -> list[str]:
    """Each UDIM tile an unpacked tiled image lists whose file is not in the job: Blender
    renders that tile's part of the model pink."""
    out = []
    for img in bpy.data.images:
        if img.source != "TILED" or img.packed_file is not None:
            continue
        path = blender_abspath(img.filepath, bases.of(img), cwd)
        wanted = [(t.number, tile_path(path, t.number)) for t in img.tiles]
        lacking = [(n, w) for n, w in wanted if w is not None and not os.path.exists(w)]
        if len(lacking) == len(wanted):
            continue  # none at all: check_ref said so in one line
        for number, want in lacking:
            if want is not None:
                out.append(f"{_name('image', img)} reads {img.filepath!r}: its UDIM tile"
                           f" {number} ({os.path.basename(want)!r}) is not in the job")
    return out


def disk_cache_prefix(cache_name: str, owner_name: str) -> str:
    """The file name prefix of an internal disk cache's files (ptcache_filename in Blender):
    the cache's name, else its owner datablock's name in upper-case hex."""
    return (cache_name or owner_name.encode("utf-8").hex().upper()) + "_"


def disk_cache_warnings(bpy: Any, bases: _Bases) -> list[str]:
    """Each baked internal disk cache none of whose files is in the job: Blender does not
    simulate a baked cache again, so what it drives (particles, cloth...) is missing or at
    rest in the frame. Its files sit in //blendcache_STEM beside the .blend that holds it."""
    out = []
    for what, cache, idb in _point_caches(bpy):
        for item in cache.point_caches:
            if getattr(item, "use_external", False) or not item.use_disk_cache \
                    or not item.is_baked:
                continue
            lib = getattr(idb, "library", None)
            blend = bases.library_file(lib) if lib is not None else bpy.data.filepath
            stem = os.path.splitext(os.path.basename(blend))[0]
            folder = os.path.join(os.path.dirname(blend), "blendcache_" + stem)
            prefix = disk_cache_prefix(item.name, idb.name)
            try:
                found = any(n.startswith(prefix) for n in os.listdir(folder))
            except OSError:
                found = False
            if not found:
                out.append(f"baked point cache of {what} reads '//blendcache_{stem}/"
                           f"{prefix}*': no such files in the job")
    return out


def _job_tree_problems(dirs: JobDirs) -> list[str]:
    # Inputs arrive as hard links, so the job's in/ never holds a symlink or a FIFO; if one
    # appears anyway, a sequence or a view of a multi-view image might open it by a name no
    # datablock spells out.
    return [f"the job's input directory is unsafe: {p}"
            for p in _tree_problems(dirs.inputs, dirs.read_roots())]


def _minor(version: Any) -> tuple[int, int]:
    major, minor = tuple(version)[:2]
    return int(major), int(minor)


def version_warnings(bpy: Any) -> list[str]:
    """The file, or a library it links, saved by a newer Blender than this one: Blender
    reads it, but drops or renders differently what the newer version added (it says
    "expect loss of data" on its console only)."""
    running = _minor(bpy.app.version)
    out = []
    for what, saved in [("the file", bpy.data.version),
                        *((_name("library", lib), lib.version) for lib in bpy.data.libraries)]:
        major, minor = _minor(saved)
        if (major, minor) > running:
            out.append(f"{what} was saved by Blender {major}.{minor}, newer than this slave's"
                       f" {bpy.app.version_string}: what the newer version added is lost or"
                       " renders differently; pin the job to a newer Blender (afarmctl submit"
                       f" --app 'blender (>= {major}.{minor})' with such a version in the"
                       " pool: afarmctl app add)")
    return out


def check_loaded_file(bpy: Any, dirs: JobDirs) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for the file Blender has just loaded."""
    cwd = os.getcwd()
    bases = _Bases(bpy, cwd)
    refs, unused = file_refs(bpy, bases)
    refusals: list[str] = []
    warnings: list[str] = version_warnings(bpy)
    seen: set[tuple[str, str, str]] = set()
    for ref in refs:
        key = (ref.owner, ref.raw, ref.use)
        if key in seen:
            continue
        seen.add(key)
        refused, warned = check_ref(ref, dirs, cwd)
        refusals += refused
        warnings += warned
    refused, warned = _others(bpy, refs, unused, dirs, cwd)
    refusals += refused
    warnings += warned + _tile_warnings(bpy, bases, cwd) + _unread_libraries(bpy, bases)
    warnings += disk_cache_warnings(bpy, bases)
    refusals += _job_tree_problems(dirs)
    return refusals, warnings


# -- running inside Blender ------------------------------------------------------------------

# -- the frames of an image sequence a task renders ------------------------------------

def parse_frames(argv: Sequence[str]) -> list[int]:
    """The frames this Blender renders: afarm's ``-f A,B,C`` (the last one before '--')."""
    args = list(argv)
    args = args[:args.index("--")] if "--" in args else args
    if "-f" not in args:
        return []
    i = len(args) - 1 - args[::-1].index("-f")
    value = args[i + 1] if i + 1 < len(args) else ""
    return [int(f) for f in value.split(",") if f.strip().lstrip("-").isdigit()]


def image_frame(frame: int, start: int, duration: int, offset: int, cyclic: bool) -> int | None:
    """The number of the sequence file Blender reads at scene frame `frame` (as
    BKE_image_user_frame_get computes it); None when the image user shows no frame."""
    if duration <= 0:
        return None
    n = frame - start + 1
    if cyclic:
        n %= duration
        if n <= 0:
            n += duration
    n = min(max(n, 0), duration)
    return n + offset


def sequence_file(path: str, number: int) -> str | None:
    """`path` with the last run of digits in its file name set to `number`, padded to the
    same width (how Blender names the files of a sequence)."""
    folder, name = os.path.split(path)
    runs = list(re.finditer(r"\d+", name))
    if not runs:
        return None
    last = runs[-1]
    digits = str(number).zfill(len(last.group()))
    return os.path.join(folder, name[:last.start()] + digits + name[last.end():])


def _sequence_users(bpy: Any) -> Iterator[tuple[Any, Any]]:
    """(image, its user: frame_start, frame_duration, frame_offset, use_cyclic) of every
    image sequence a node or texture shows."""
    for _owner, tree, _idb in _node_trees(bpy):
        for node in tree.nodes:
            img = getattr(node, "image", None)
            if img is None or getattr(img, "source", "") != "SEQUENCE":
                continue
            user = getattr(node, "image_user", None)
            # The compositor's Image node keeps its frame settings on the node itself.
            yield img, (user if user is not None else node)
    for tex in bpy.data.textures:
        img = getattr(tex, "image", None)
        if img is not None and img.source == "SEQUENCE":
            yield img, tex.image_user


def volume_frame(frame: int, start: int, duration: int, offset: int,
                 mode: str) -> int | None:
    """The number of the file of a volume sequence Blender reads at scene frame `frame`
    (as BKE_volume_sequence_frame computes it); None when the volume shows no frame."""
    if duration <= 0:
        return None
    n = frame - start + 1
    if mode == "CLIP" and not 1 <= n <= duration:
        return None
    if mode == "EXTEND":
        n = min(max(n, 1), duration)
    elif mode == "REPEAT":
        n %= duration
        n = n or duration
    elif mode == "PING_PONG":
        period = max(duration * 2 - 2, 1)
        n %= period
        n = n or period
        if n > duration:
            n = duration * 2 - n
    return n + offset


def _sequence_files(bpy: Any) -> Iterator[tuple[str, Any, Callable[[int], int | None]]]:
    """(kind, datablock, scene frame -> file number) of every image and volume sequence."""
    def image_number(u: Any) -> Callable[[int], int | None]:
        return lambda f: image_frame(f, u.frame_start, u.frame_duration, u.frame_offset,
                                     u.use_cyclic)

    def volume_number(v: Any) -> Callable[[int], int | None]:
        return lambda f: volume_frame(f, v.frame_start, v.frame_duration, v.frame_offset,
                                      v.sequence_mode)

    for img, user in _sequence_users(bpy):
        if img.packed_file is None and img.filepath:
            yield "image", img, image_number(user)
    for vol in bpy.data.volumes:
        if vol.is_sequence and vol.filepath:
            yield "volume", vol, volume_number(vol)


def sequence_warnings(bpy: Any, frames: Sequence[int], cwd: str) -> list[str]:
    """Files of image and volume sequences that the frames of this task read and the job
    lacks: Blender renders those frames black or without the image or volume."""
    bases = _Bases(bpy, cwd)
    found: dict[tuple[str, str], list[str]] = {}
    for kind, img, number in _sequence_files(bpy):
        path = blender_abspath(img.filepath, bases.of(img), cwd)
        folder, name = os.path.split(path)
        try:
            pattern = family_pattern(name)
            if not any(pattern.fullmatch(n) for n in os.listdir(folder)):
                continue  # none at all: check_ref said so when the file loaded
        except OSError:
            continue
        for frame in frames:
            n = number(frame)
            wanted = sequence_file(path, n) if n is not None else None
            if wanted is not None and not os.path.exists(wanted):
                names = found.setdefault((_name(kind, img), img.filepath), [])
                if os.path.basename(wanted) not in names:
                    names.append(os.path.basename(wanted))
    return [f"{owner} reads {raw!r}: the sequence's file{'s' if len(names) > 1 else ''} "
            + ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
            + " for the frames of this task "
            + ("are" if len(names) > 1 else "is") + " not in the job"
            for (owner, raw), names in found.items()]


def has_oidn() -> bool:
    try:
        import _cycles
    except ImportError:
        return False
    return bool(getattr(_cycles, "with_openimagedenoise", False))


def fix_denoising(bpy: Any) -> None:
    if has_oidn():
        return
    for scene in bpy.data.scenes:
        if scene.render.engine == "CYCLES" and scene.cycles.use_denoising:
            scene.cycles.use_denoising = False
            print(f"{WARNING}scene {scene.name!r} asks for denoising, but this "
                  "Blender is built without OpenImageDenoise; rendering without it (the"
                  " frames are noisier than a render with denoising)", flush=True)


def _exit_now(code: int, bpy: Any) -> None:
    # From inside a handler, only _exit stops Blender before it evaluates or renders
    # anything; an exception there is printed and Blender carries on.
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # Blender's own lines so far ("Read blend: ...") sit in C's stdio buffers
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    tmp = getattr(bpy.app, "tempdir", "")
    if tmp and os.path.basename(tmp.rstrip("/")).startswith("blender_"):
        shutil.rmtree(tmp, ignore_errors=True)
    os._exit(code)


def on_load(bpy: Any, dirs: JobDirs) -> None:
    try:
        refusals, warnings = check_loaded_file(bpy, dirs)
        for line in warnings:
            print(WARNING + line, flush=True)
        if refusals:
            for line in refusals:
                print(PREFIX + line, file=sys.stderr, flush=True)
            _exit_now(EXIT_REFUSED, bpy)
        setattr(sys.modules[_STATE_MODULE], "checked", bpy.data.filepath)  # noqa: B010
    except BaseException as exc:  # noqa: BLE001 - whatever went wrong, nothing renders
        print(f"{PREFIX}render_prep.py could not check the file: {exc!r}", file=sys.stderr,
              flush=True)
        _exit_now(EXIT_BROKEN, bpy)


def main(argv: Sequence[str]) -> None:
    import types

    import bpy

    dirs = parse_job_dirs(argv)
    gpu = parse_gpu_device(argv)
    state = sys.modules.get(_STATE_MODULE)
    if state is None:
        if bpy.data.filepath:
            raise PrepError("render_prep.py must come before the .blend in Blender's"
                            " arguments, so it checks the file before Blender uses it")
        state = sys.modules[_STATE_MODULE] = types.ModuleType(_STATE_MODULE)

        @bpy.app.handlers.persistent
        def afarm_render_prep(*_args: object) -> None:
            on_load(bpy, dirs)

        bpy.app.handlers.load_post.append(afarm_render_prep)
        return
    if not bpy.data.filepath or getattr(state, "checked", None) != bpy.data.filepath:
        raise PrepError("render_prep.py: the .blend was not checked when it loaded;"
                        " refusing to render it")
    # Here, not on load: -E and -S, which decide whether Cycles renders, apply in between.
    fix_denoising(bpy)
    try:
        lines = sequence_warnings(bpy, parse_frames(argv), os.getcwd())
    except Exception as exc:  # noqa: BLE001 - a check that breaks must not stop the render
        lines = [f"render_prep.py could not check the image sequences' frames: {exc!r}"]
    for line in lines:
        print(WARNING + line, flush=True)
    if gpu is not None:
        use_gpu(bpy, gpu)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except PrepError as error:
        print(PREFIX + str(error), file=sys.stderr, flush=True)
        sys.exit(EXIT_BROKEN)
