# SPDX-License-Identifier: MIT
"""The master's dependency report of an uploaded .blend (what the web page shows before it
submits): traced by the master with BAT in a bounded child process, each path relative to
the .blend and marked present (an uploaded file of that name) or missing, with the
datablock that wants it. Projects made by the real Blender."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.errors import UsageError
from afarm.master import blend_deps
from afarm.master.files import FileStore
from tests.farm import MasterProcess
from tests.fixtures.blends import make_broken_blend, run_blender
from tests.fixtures.projects import make_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("deps"), slaves=0).start(wait_slaves=False)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT with shots/shot.blend linking ../assets/chars.blend, which links mats.blend."""
    return make_project(tmp_path_factory.mktemp("project")).parent.parent


def upload(m: MasterProcess, root: Path, names: list[str]) -> list[dict[str, str]]:
    return [{"name": n, "sha256": m.client.upload(root / n)} for n in names]


def ask(m: MasterProcess, sha: str, blend: str, files: list[dict[str, str]]) -> Any:
    return m.client.post(f"/api/v1/files/{sha}/dependencies", {"blend": blend, "files": files})


def by_path(answer: Any) -> dict[str, dict[str, Any]]:
    return {d["path"]: d for d in answer["dependencies"]}


def test_a_linked_library_is_missing_until_the_project_folder_is_uploaded(
        farm: MasterProcess, project: Path) -> None:
    shot = upload(farm, project, ["shots/shot.blend"])
    answer = ask(farm, shot[0]["sha256"], "shots/shot.blend", shot)
    deps = by_path(answer)
    lib = deps["../assets/chars.blend"]
    assert lib["present"] is False and lib["raw"] == "//../assets/chars.blend"
    assert lib["reason"] == "not uploaded"
    assert any(w.startswith("library ") and w.endswith(" in shots/shot.blend")
               for w in lib["wanted_by"])
    assert deps["../caches/wave.pc2"]["present"] is False
    assert answer["missing"] == len(answer["dependencies"]) >= 4
    # The project folder, by the names a folder upload gives (relative to its top).
    names = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    files = upload(farm, project, names)
    answer = ask(farm, shot[0]["sha256"], "shots/shot.blend", files)
    assert answer["missing"] == 0, answer
    deps = by_path(answer)
    assert deps["../assets/chars.blend"]["files"] == ["assets/chars.blend"]
    # Libraries of libraries are followed in the uploaded files, as on the slave.
    assert deps["../assets/mats.blend"]["present"] is True
    brick = deps["../assets/tex/brick.png"]
    assert brick["files"] == ["assets/tex/brick.png"]
    assert brick["wanted_by"] == ["image 'brick.png' in assets/mats.blend"]
    skin = deps["tex/skin.<UDIM>.png"]
    assert skin["sequence"] and skin["files"] == ["shots/tex/skin.1001.png",
                                                  "shots/tex/skin.1002.png"]
    # The scratch tree is gone.
    assert list((farm.state / "deps").iterdir()) == []


def test_a_corrupt_blend_gets_a_clear_refusal(farm: MasterProcess, tmp_path: Path) -> None:
    broken = make_broken_blend(tmp_path)
    files = upload(farm, tmp_path, ["broken.blend"])
    with pytest.raises(UsageError, match="broken.blend.*(truncated|corrupt|cannot be read)"):
        ask(farm, files[0]["sha256"], "broken.blend", files)
    assert broken.is_file()


def test_a_request_naming_no_uploaded_blend_or_a_path_out_of_the_job_is_refused(
        farm: MasterProcess) -> None:
    with pytest.raises(UsageError, match="upload the .blend first"):
        ask(farm, "0" * 64, "a.blend", [])
    with pytest.raises(UsageError, match="blend '..' must be a plain file name"):
        ask(farm, "0" * 64, "../a.blend", [])
    with pytest.raises(UsageError, match="relative path inside the job"):
        ask(farm, "0" * 64, "a.blend", [{"name": "/etc/passwd", "sha256": "1" * 64}])


_ABSOLUTE = r"""
import sys, bpy
lib, out = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
with bpy.data.libraries.load(lib, link=True, relative=False) as (src, dst):
    dst.objects = ["Char"]
bpy.context.scene.collection.objects.link(dst.objects[0])
bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=False)
"""


def test_a_library_outside_the_uploaded_files_is_missing_and_nothing_of_it_is_told(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    # A .blend linking a library by an absolute path that exists on the master's machine
    # (this test's master runs here): the master neither says it exists nor tells what it
    # links (the child does not even open it: a second guard, not seen from here).
    script = tmp_path / "abs.py"
    script.write_text(_ABSOLUTE)
    out = tmp_path / "abs.blend"
    cp = run_blender(["-b", "--factory-startup", "--python-exit-code", "1", "--python",
                      str(script), "--", str(project / "assets/chars.blend"), str(out)])
    assert cp.returncode == 0 and out.is_file(), cp.stdout[-2000:]
    files = upload(farm, tmp_path, ["abs.blend"])
    deps = by_path(ask(farm, files[0]["sha256"], "abs.blend", files))
    lib = deps[str(project / "assets/chars.blend")]
    assert lib["present"] is False and lib["reason"] == "outside the uploaded files"
    # Read, the library would have added its own material library and texture.
    assert list(deps) == [str(project / "assets/chars.blend")]


def test_the_trace_runs_under_a_time_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           project: Path) -> None:
    import asyncio

    from afarm.errors import OperationFailed

    store = FileStore(tmp_path / "files")
    sha = "a" * 64
    dst = store.path(sha)
    dst.parent.mkdir(parents=True)
    dst.write_bytes((project / "shots/shot.blend").read_bytes())
    monkeypatch.setattr(blend_deps, "TIMEOUT", 0.01)

    class Farm:
        files = store
        state_dir = tmp_path

    with pytest.raises(OperationFailed, match="took over 0.01 s and was stopped"):
        asyncio.run(blend_deps.report(Farm(), sha, "s.blend", {},  # type: ignore[arg-type]
                                      asyncio.Semaphore(1)))
    assert list((tmp_path / "deps").iterdir()) == []


def test_the_trace_runs_under_a_memory_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             project: Path) -> None:
    import asyncio

    from afarm.errors import AfarmError

    store = FileStore(tmp_path / "files")
    sha = "b" * 64
    dst = store.path(sha)
    dst.parent.mkdir(parents=True)
    dst.write_bytes((project / "shots/shot.blend").read_bytes())

    class Farm:
        files = store
        state_dir = tmp_path

    def run() -> Any:
        return asyncio.run(blend_deps.report(Farm(), sha, "s.blend", {},  # type: ignore[arg-type]
                                             asyncio.Semaphore(1)))

    assert run()["missing"] >= 4  # within the bound it works
    monkeypatch.setattr(blend_deps, "MEMORY", 16 << 20)  # too little to read a .blend
    with pytest.raises(AfarmError, match="(?i)memory"):
        run()


def test_a_name_used_as_a_file_and_as_a_folder_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    sha = "c" * 64
    store.path(sha).parent.mkdir(parents=True)
    store.path(sha).write_bytes(b"x")
    (tmp_path / "tree").mkdir()
    with pytest.raises(UsageError, match="'a/b' both as a file and as a folder"):
        blend_deps.lay_out(tmp_path / "tree", store, {"a": sha, "a/b": sha})
    assert blend_deps.lay_out(tmp_path / "tree2", store, {"x/y": sha, "z": "d" * 64}) == ["z"]


def test_the_report_needs_the_job_ports_token(farm: MasterProcess) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{farm.job_port}/api/v1/files/{'0' * 64}/dependencies",
        data=b'{"blend": "a.blend"}', method="POST",
        headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)
    assert refused.value.code == 401
