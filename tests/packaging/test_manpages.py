# SPDX-License-Identifier: MIT
"""The man pages render cleanly, and the generated ones (afarm.conf(5), the sample
configuration files) are current with the config specs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from afarm import __version__
from afarm.config import manpage, sample
from afarm.config.loader import load

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("afarmctl.1", "afarm.conf.5", "afarm-master.8", "afarm-slave.8",
         "afarm-slave-shell.8")
SPECS = [spec for spec, _, _ in manpage.FILES]


@pytest.mark.parametrize("page", PAGES)
def test_the_page_renders_without_groff_warnings(page: str) -> None:
    assert shutil.which("groff"), "needs groff: run make deps-test (groff-base)"
    cp = subprocess.run(["groff", "-ww", "-z", "-man", str(ROOT / "man" / page)],
                        capture_output=True, text=True, check=False)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr


@pytest.mark.parametrize("page", PAGES)
def test_the_page_names_this_version_of_afarm(page: str) -> None:
    th = next(ln for ln in (ROOT / "man" / page).read_text().splitlines()
              if ln.startswith(".TH "))
    assert f'"afarm {__version__}"' in th, th


def test_the_shipped_afarm_conf_page_is_generated_from_the_specs() -> None:
    assert (ROOT / "man" / "afarm.conf.5").read_text() == manpage.render(), \
        "run: PYTHONPATH=src python3 -m afarm.config.manpage man/afarm.conf.5"


def _part(page: str, spec: str) -> str:
    title = next(t for s, _, t in manpage.FILES if s == spec)
    return page.split(f'.SH "{title}"', 1)[1].split("\n.SH ", 1)[0]


@pytest.mark.parametrize("spec", SPECS)
def test_every_key_of_the_spec_is_documented_in_afarm_conf(spec: str) -> None:
    part = _part((ROOT / "man" / "afarm.conf.5").read_text(), spec)
    keys = manpage.read_spec(spec).all_keys()
    assert keys
    for section, key in keys:
        assert f"\\fB{manpage.esc(key.name)}\\fR = " in part, f"{spec}: {key.name}"
        assert key.doc, f"{spec}.spec: {key.name} has no comment above it"
        for s in section.path:
            if s != "__many__":
                assert f"[{s}]" in part


def test_spec_keys_are_read_with_their_comments_and_defaults() -> None:
    spec = manpage.read_spec("master")
    keys = {(s.path, k.name): k for s, k in spec.all_keys()}
    level = keys[(("master",), "log_level")]
    assert level.check == "option" and level.args == ["debug", "info", "warning", "error"]
    assert level.default == "info" and level.doc == ["How much the daemon logs."]
    assert keys[(("slaves", "__many__"), "host")].required
    assert keys[(("slaves", "__many__"), "tags")].default == []
    assert spec.description[0].startswith("The master daemon's configuration")


@pytest.mark.parametrize("spec", list(sample.SAMPLES))
def test_the_shipped_sample_configuration_is_generated_from_the_spec(spec: str) -> None:
    path = ROOT / "etc" / "afarm" / sample.SAMPLES[spec]
    assert path.read_text() == sample.render(spec), \
        "run: PYTHONPATH=src python3 -m afarm.config.sample etc/afarm"


@pytest.mark.parametrize("spec", list(sample.SAMPLES))
def test_the_sample_loads_to_the_defaults_as_shipped_and_uncommented(
        spec: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = sample.render(spec)
    defaults = load(None, spec)
    shipped = tmp_path / "shipped.conf"
    shipped.write_text(text)
    assert load(shipped, spec) == defaults
    # Uncomment every key of the plain sections: still the defaults, and no key unknown.
    top = text.split("\n#[[", 1)[0]
    uncommented = re.sub(r"^#(?=[a-z_]+ = )", "", top, flags=re.M)
    assert uncommented != top
    edited = tmp_path / "uncommented.conf"
    edited.write_text(uncommented)
    with caplog.at_level("WARNING"):
        assert load(edited, spec) == defaults
    assert "unknown" not in caplog.text


def test_the_example_slave_of_the_master_sample_is_a_valid_definition(tmp_path: Path) -> None:
    slaves = sample.render("master").split("\n[slaves]\n", 1)[1]
    example = slaves.split("\n#[[example]]\n", 1)[1]
    lines = [ln[1:] for ln in example.splitlines() if re.match(r"^#[a-z_]+ = ", ln)]
    path = tmp_path / "example.conf"
    path.write_text("\n".join(lines).replace("HOST", "192.0.2.7") + "\n")
    conf = load(path, "slavedef")
    assert conf["host"] == "192.0.2.7" and conf["user"] == "afarm"
