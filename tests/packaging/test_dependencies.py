# SPDX-License-Identifier: MIT
"""A Python dependency stays declared only while code imports it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debian package -> the module it provides, where the names differ.
MODULES = {"python3-dbus": "dbus", "python3-debian": "debian", "python3-systemd": "systemd",
           "python3-blender-asset-tracer": "blender_asset_tracer",
           "python3-gi": "gi"}


def _declared(package: str = "python3-afarm") -> set[str]:
    control = (ROOT / "debian" / "control").read_text()
    stanza = control.split(f"Package: {package}\n", 1)[1].split("\n\n", 1)[0]
    depends = stanza.split("Depends:", 1)[1].split("\nRecommends:", 1)[0]
    depends = depends.split("\nDescription:", 1)[0]
    return set(re.findall(r"python3-[a-z0-9.-]+", depends)) - {"python3-afarm"}


def _imported() -> set[str]:
    found = set()
    for path in (ROOT / "src").rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:from|import) ([a-zA-Z_][\w]*)", path.read_text(),
                                re.M))
    return found


def test_every_declared_python_dependency_is_imported_by_afarm() -> None:
    declared = _declared()
    assert "python3-aiohttp" in declared  # the parsing found the list
    unused = sorted(p for p in declared
                    if MODULES.get(p, p.removeprefix("python3-")) not in _imported())
    assert not unused, f"declared in debian/control but imported nowhere in src: {unused}"


def test_afarmctl_declares_the_dependency_tracer_it_imports() -> None:
    """afarmctl traces .blend dependencies with BAT before it uploads."""
    declared = _declared("afarmctl")
    assert declared == {"python3-blender-asset-tracer"}
    assert all(MODULES[p] in _imported() for p in declared)


def test_the_master_declares_the_dependency_tracer_its_job_port_runs() -> None:
    """The master traces an uploaded .blend with BAT for the web page's dependency report
    (afarm.master.blend_deps); a slave never does."""
    assert _declared("afarm-master") == {"python3-blender-asset-tracer"}
    assert "blender_asset_tracer" in (ROOT / "src/afarm/master/blend_child.py").read_text()
    assert "python3-blender-asset-tracer" not in _declared("afarm-slave")
