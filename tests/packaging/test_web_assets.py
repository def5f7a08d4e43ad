# SPDX-License-Identifier: MIT
"""The web page's assets ship in the package: a build of the Python package (what pybuild
installs into python3-afarm) holds every file the page loads."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src/afarm/master/web/static"


def test_the_built_package_holds_every_static_file_of_the_page(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    shipped = {p.name for p in (tmp_path / "afarm/master/web/static").iterdir()}
    wanted = {p.name for p in STATIC.iterdir() if p.is_file()}
    assert {"app.js", "app.css", "sha256.js", "favicon-idle.svg"} <= wanted
    assert shipped == wanted
