# SPDX-License-Identifier: MIT
"""render_prep.py's missing-file warnings, without Blender: the rule for one reference and
the files of UDIM tiles."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fixtures.scripts import load_script

rp = load_script("render_prep.py")


def dirs(tmp_path: Path) -> object:
    for d in ("in", "out", "scratch"):
        (tmp_path / d).mkdir(exist_ok=True)
    return rp.JobDirs(str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path / "scratch"))


def test_udim_and_uvtile_tokens_name_each_tiles_file() -> None:
    assert rp.tile_path("/j/in/wood.<UDIM>.png", 1012) == "/j/in/wood.1012.png"
    assert rp.tile_path("/j/in/wood_<UVTILE>.png", 1012) == "/j/in/wood_u2_v2.png"
    assert rp.tile_path("/j/in/wood.1001.png", 1002) is None


def test_a_missing_file_or_directory_inside_the_job_is_a_warning(tmp_path: Path) -> None:
    d = dirs(tmp_path)
    cwd = str(tmp_path / "scratch")
    base = str(tmp_path / "in")
    ref = rp.Ref("modifier 'Cache' of object 'Cube'", "//caches/a.mdd", base, rp.FILE)
    assert rp.check_ref(ref, d, cwd) == ([], [
        "modifier 'Cache' of object 'Cube' reads '//caches/a.mdd': no such file in the job"])
    cache = rp.Ref("fluid cache of x", "//cache_fluid", base, rp.DIR)
    assert rp.check_ref(cache, d, cwd)[1] == [
        "fluid cache of x reads '//cache_fluid': no such directory in the job"]


def test_an_unbaked_cache_directory_that_is_missing_is_no_warning(tmp_path: Path) -> None:
    ref = rp.Ref("point cache of x", "//blendcache", str(tmp_path / "in"), rp.OPTDIR)
    assert rp.check_ref(ref, dirs(tmp_path), str(tmp_path / "scratch")) == ([], [])
    outside = rp.Ref("point cache of x", "/etc", str(tmp_path / "in"), rp.OPTDIR)
    assert rp.check_ref(outside, dirs(tmp_path), str(tmp_path / "scratch"))[0]


def test_the_frames_a_task_renders_are_read_from_blenders_f_option() -> None:
    argv = ["blender", "-b", "-Y", "x.blend", "-o", "/o/frame_####", "-f", "3,4,9", "--",
            "--job-dirs", "/a", "/b", "/c", "-f", "7"]
    assert rp.parse_frames(argv) == [3, 4, 9]
    assert rp.parse_frames(["blender", "-b"]) == []


def test_a_sequence_frame_is_computed_as_blender_computes_it() -> None:
    assert rp.image_frame(1, 1, 10, 0, False) == 1
    assert rp.image_frame(15, 1, 10, 0, False) == 10  # held on its last frame
    assert rp.image_frame(15, 1, 10, 0, True) == 5  # cyclic: wraps
    assert rp.image_frame(10, 1, 10, 0, True) == 10
    assert rp.image_frame(5, 3, 10, 100, False) == 103  # start and offset
    assert rp.image_frame(5, 1, 0, 0, False) is None  # no duration: no frame


def test_a_sequence_file_keeps_the_digits_width_of_its_name() -> None:
    assert rp.sequence_file("/j/in/plates/p_v2_0001.png", 17) == "/j/in/plates/p_v2_0017.png"
    assert rp.sequence_file("/j/in/p1.exr", 123) == "/j/in/p123.exr"
    assert rp.sequence_file("/j/in2/plate.png", 3) is None


class Data:
    """A stand-in for bpy.data: the collections given, every other one empty."""

    def __init__(self, **collections: object) -> None:
        self.__dict__.update(collections)
        self.filepath = collections.get("filepath", "/job/in/shots/a.blend")

    def __getattr__(self, name: str) -> list[object]:
        return []

    def user_map(self) -> list[object]:  # Blender's is a dict keyed by every datablock
        return [*self.objects, *self.scenes]


def emitter(external: bool, baked: bool = True, path: str = "//../../../../") -> object:
    item = SimpleNamespace(filepath=path, use_external=external, use_disk_cache=True,
                           is_baked=baked, name="")
    psys = SimpleNamespace(name="Particles", point_cache=SimpleNamespace(point_caches=[item]))
    return SimpleNamespace(name="Emitter", library=None, particle_systems=[psys],
                           modifiers=[], animation_data=None)


def fake_bpy(*objects: object, actions: list[object] | None = None,
             filepath: str = "/job/in/shots/a.blend") -> object:
    data = Data(objects=list(objects), actions=actions or [], filepath=filepath)
    return SimpleNamespace(data=data)


def test_the_unused_external_path_of_an_internal_disk_cache_is_not_checked() -> None:
    # "Make Paths Relative" turns a disk cache's empty external path into '//../..' up to
    # '/': Blender never reads it while use_external is off, so it must not refuse the file.
    bpy = fake_bpy(emitter(external=False))
    refs, unused = rp.file_refs(bpy, rp._Bases(bpy, "/job/scratch"))
    assert [r.raw for r in unused if r.owner.startswith("point cache")] == ["//../../../../"]
    assert not [r for r in refs if r.owner.startswith("point cache")]


def test_an_external_path_a_keyframe_or_driver_can_switch_on_is_still_checked() -> None:
    curve = SimpleNamespace(data_path='particle_systems["Particles"].point_cache.use_external')
    for bpy in (fake_bpy(emitter(external=False),
                         actions=[SimpleNamespace(fcurves=[curve])]),
                fake_bpy(emitter(external=False))):
        if not bpy.data.actions:  # the same switch as a driver on the object
            bpy.data.objects[0].animation_data = SimpleNamespace(drivers=[curve])
        refs, _ = rp.file_refs(bpy, rp._Bases(bpy, "/job/scratch"))
        assert [(r.raw, r.use) for r in refs if r.owner.startswith("point cache")] == [
            ("//../../../../", rp.OPTDIR)]
    bpy = fake_bpy(emitter(external=True, path="/etc"))
    refs, _ = rp.file_refs(bpy, rp._Bases(bpy, "/job/scratch"))
    assert [(r.raw, r.use) for r in refs if r.owner.startswith("point cache")] == [
        ("/etc", rp.DIR)]


def test_layered_actions_fcurves_count_as_animation() -> None:
    curve = SimpleNamespace(data_path="point_cache.use_external")
    bag = SimpleNamespace(fcurves=[curve])
    layered = SimpleNamespace(layers=[SimpleNamespace(strips=[SimpleNamespace(
        channelbags=[bag])])])
    assert rp.animates(fake_bpy(actions=[layered]), "use_external")
    assert not rp.animates(fake_bpy(actions=[SimpleNamespace(fcurves=[])]), "use_external")


def test_a_disk_caches_files_are_named_by_the_cache_or_its_owner_in_hex() -> None:
    assert rp.disk_cache_prefix("", "Emitter") == "456D6974746572_"
    assert rp.disk_cache_prefix("Smoke", "Emitter") == "Smoke_"


def test_a_baked_disk_cache_without_its_files_is_a_warning(tmp_path: Path) -> None:
    blend = tmp_path / "in" / "shots" / "a.blend"
    blend.parent.mkdir(parents=True)
    blend.write_bytes(b"")
    bpy = fake_bpy(emitter(external=False), filepath=str(blend))
    bases = rp._Bases(bpy, str(tmp_path))
    want = ("baked point cache of particle system 'Particles' of object 'Emitter' reads"
            " '//blendcache_a/456D6974746572_*': no such files in the job")
    assert rp.disk_cache_warnings(bpy, bases) == [want]
    cache = blend.parent / "blendcache_a"
    cache.mkdir()
    (cache / "other_000001_00.bphys").write_bytes(b"x")
    assert rp.disk_cache_warnings(bpy, bases) == [want]
    (cache / "456D6974746572_000001_00.bphys").write_bytes(b"x")
    assert rp.disk_cache_warnings(bpy, bases) == []
    # An unbaked cache is simulated again when its files are missing: nothing to say.
    bpy = fake_bpy(emitter(external=False, baked=False), filepath=str(tmp_path / "b.blend"))
    assert rp.disk_cache_warnings(bpy, rp._Bases(bpy, str(tmp_path))) == []


def test_a_fluid_cache_is_wanted_even_when_not_marked_baked() -> None:
    # Blender's default (Replay) cache is written while frames play and never marked baked;
    # a task starting at frame N without it simulates from N: other smoke than local.
    settings = SimpleNamespace(cache_directory="//cache_fluid/", has_cache_baked_any=False)
    fluid = SimpleNamespace(name="Fluid", type="FLUID", fluid_type="DOMAIN",
                            domain_settings=settings)
    domain = SimpleNamespace(name="Domain", library=None, particle_systems=[],
                             modifiers=[fluid], animation_data=None)
    bpy = fake_bpy(domain)
    refs, _ = rp.file_refs(bpy, rp._Bases(bpy, "/job/scratch"))
    assert [(r.owner, r.raw, r.use) for r in refs] == [
        ("fluid cache of modifier 'Fluid' of object 'Domain'", "//cache_fluid/", rp.DIR)]


def test_a_volume_sequence_frame_is_computed_as_blender_computes_it() -> None:
    assert rp.volume_frame(3, 1, 10, 0, "CLIP") == 3
    assert rp.volume_frame(12, 1, 10, 0, "CLIP") is None  # past its end: no volume
    assert rp.volume_frame(12, 1, 10, 0, "EXTEND") == 10
    assert rp.volume_frame(0, 1, 10, 0, "EXTEND") == 1
    assert rp.volume_frame(12, 1, 10, 0, "REPEAT") == 2
    assert rp.volume_frame(10, 1, 10, 0, "REPEAT") == 10
    assert rp.volume_frame(12, 1, 10, 0, "PING_PONG") == 8  # back down from 10
    assert rp.volume_frame(5, 3, 10, 100, "CLIP") == 103  # start and offset
    assert rp.volume_frame(5, 1, 0, 0, "CLIP") is None


def test_a_volume_sequences_file_the_task_reads_is_a_warning_when_missing(
        tmp_path: Path) -> None:
    seq = tmp_path / "in" / "vdb"
    seq.mkdir(parents=True)
    for n in (1, 2):
        (seq / f"smoke_{n:04d}.vdb").write_bytes(b"x")
    vol = SimpleNamespace(name="Smoke", library=None, filepath="//vdb/smoke_0001.vdb",
                          is_sequence=True, frame_start=1, frame_duration=3, frame_offset=0,
                          sequence_mode="CLIP")
    bpy = SimpleNamespace(data=Data(volumes=[vol], filepath=str(tmp_path / "in" / "a.blend")))
    assert rp.sequence_warnings(bpy, [1, 2], str(tmp_path)) == []
    assert rp.sequence_warnings(bpy, [2, 3], str(tmp_path)) == [
        "volume 'Smoke' reads '//vdb/smoke_0001.vdb': the sequence's file 'smoke_0003.vdb'"
        " for the frames of this task is not in the job"]


def test_a_missing_windows_path_is_a_warning_and_any_other_colon_a_refusal(
        tmp_path: Path) -> None:
    d = dirs(tmp_path)
    cwd, base = str(tmp_path / "scratch"), str(tmp_path / "in")
    assert rp.blender_abspath("C:\\tex\\Wood.png", base, cwd) == "/c/tex/Wood.png"
    assert rp.blender_abspath("d:/x.png", base, cwd) == "/d/x.png"
    for raw in ("C:\\Users\\bob\\tex\\wood.png", "C:/Users/bob/tex/wood.png"):
        refusals, warnings = rp.check_ref(rp.Ref("image 'wood'", raw, base, rp.FILE), d, cwd)
        assert refusals == [] and len(warnings) == 1
        assert warnings[0].startswith(f"image 'wood' reads {raw!r}: a Windows path; no such")
    # A point cache's unused default path is no warning; a File Output to C:\ is refused.
    assert rp.check_ref(rp.Ref("point cache of x", "C:\\cache\\", base, rp.OPTDIR), d,
                        cwd) == ([], [])
    assert rp.check_ref(rp.Ref("File Output node", "C:\\renders\\", base, rp.WRITE), d,
                        cwd)[0]
    # Only a drive letter: any other ':' is a protocol to ffmpeg (or hides one).
    for raw in ("concat:/etc/passwd|/etc/hosts", "C:\\x|concat:/etc/passwd", "CC:/x",
                "file:/etc/passwd"):
        refusals, _ = rp.check_ref(rp.Ref("image 'x'", raw, base, rp.FILE), d, cwd)
        assert refusals and "':' is not allowed" in refusals[0], raw


def test_a_windows_path_whose_linux_place_exists_is_judged_like_any_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = dirs(tmp_path)
    monkeypatch.setattr(rp.os.path, "lexists", lambda p: p == "/e/secret")
    refusals, warnings = rp.check_ref(rp.Ref("image 'x'", "E:\\secret", str(tmp_path / "in"),
                                             rp.FILE), d, str(tmp_path / "scratch"))
    assert warnings == [] and refusals and "outside" in refusals[0], refusals


def test_a_file_or_library_saved_by_a_newer_blender_is_a_warning() -> None:
    lib = SimpleNamespace(name="chars.blend", library=None, version=(3, 6, 5))
    same = SimpleNamespace(name="props.blend", library=None, version=(3, 4, 9))
    bpy = SimpleNamespace(app=SimpleNamespace(version=(3, 4, 1), version_string="3.4.1"),
                          data=SimpleNamespace(version=(4, 1, 0), libraries=[lib, same]))
    got = rp.version_warnings(bpy)
    assert [w.split(",")[0] for w in got] == [
        "the file was saved by Blender 4.1", "library 'chars.blend' was saved by Blender 3.6"]
    assert "newer than this slave's 3.4.1" in got[0]
    assert "--app 'blender (>= 4.1)'" in got[0]
    bpy.data.version = (3, 4, 30)  # a later save of the same minor version: no warning
    assert rp.version_warnings(bpy) == [got[1]]
