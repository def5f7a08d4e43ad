# SPDX-License-Identifier: MIT
"""The web page's HTML: every user-given text escaped, buttons from data, logs classified."""

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

from afarm.master.web import pages
from afarm.master.web.thumbs import kind_of, thumb_argv
from afarm.master.web.views import PAGE, Frame, SlaveView
from afarm.master.web.zipstream import zip_chunks

NASTY = "<script>alert(1)</script>\"'&"


def test_slaves_get_the_buttons_their_state_offers_with_every_field_escaped() -> None:
    html = pages.slaves_page([
        SlaveView(NASTY, "pending", [], None, None, None, NASTY, NASTY, 0, ["accept"],
                  "SHA256:abc<"),
        SlaveView("s2", "asleep", [(3, 7, "frames 1-4<")], 1.5, 120.0, 2, "+speed", "boom",
                  1, ["wake"])],
        NASTY)
    assert "<script>" not in html
    assert 'data-slave-action="accept" data-slave="&lt;script&gt;' in html
    assert 'data-fingerprint="SHA256:abc&lt;"' in html
    assert 'data-slave-action="wake" data-slave="s2"' in html
    assert "120 W" in html and "1.5 s/frame" in html
    assert '<a href="/jobs/3">job 3</a>: frames 1-4&lt;' in html


def test_a_log_line_with_an_error_or_a_warning_is_marked_and_escaped() -> None:
    html = pages.log_page(1, 2, NASTY, "ok\nWARNING: <low>\nError: bad & worse\nfine", 0)
    assert '<span class="warn">WARNING: &lt;low&gt;</span>' in html
    assert '<span class="err">Error: bad &amp; worse</span>' in html
    assert 'tabindex="0">ok\n' in html and "<script>" not in html
    assert "1 error lines, 1 warning lines" in html


def test_the_frame_grid_pages_and_links_each_frame() -> None:
    cell = pages.frame_cell(3, Frame(12, "frame_0012.png", "completed", "image", True, 9))
    assert 'href="/jobs/3/frames/12"' in cell and 'src="/jobs/3/thumbs/frame_0012.png"' in cell
    waiting = pages.frame_cell(3, Frame(4, "frame_0004.png", "active", "image", False, 9, 3, 4))
    assert "<img" not in waiting and "tiles 3/4" in waiting
    nav = pages.pager(3, 2, PAGE * 10)
    assert "Page 2 of 10" in nav and 'href="/jobs/3?page=10#frames"' in nav
    assert pages.pager(3, 1, PAGE) == ""


def test_times_are_iso_utc_for_the_script_to_localise() -> None:
    assert pages.when(0) == ""
    assert pages.when(86400) == ('<time datetime="1970-01-02T00:00:00Z">1970-01-02 00:00:00'
                                 " UTC</time>")


def test_outputs_are_told_apart_by_extension() -> None:
    assert [kind_of(n) for n in ("a.PNG", "b.exr", "c.mp4", "d.out", "noext")] == [
        "image", "image", "video", "file", "file"]


def test_ffmpeg_reads_a_frame_only_as_a_plain_file() -> None:
    argv = thumb_argv("/usr/bin/ffmpeg", Path("/j/out/concat:x|y.png"), Path("/t/a.jpg"))
    assert argv[argv.index("-i") + 1] == "file:/j/out/concat:x|y.png"
    assert "-nostdin" in argv and argv[-1] == "file:/t/a.jpg"


def test_the_zip_streams_every_file_in_bounded_chunks(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(bytes([i]) * (3 << 20))
        files.append((f"job-1/f{i}.bin", p))
    files.append(("job-1/gone.bin", tmp_path / "gone.bin"))

    async def collect() -> list[bytes]:
        return [c async for c in zip_chunks(files)]

    chunks = asyncio.run(collect())
    assert max(len(c) for c in chunks) <= (1 << 20) + 4096
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as z:
        assert z.namelist() == ["job-1/f0.bin", "job-1/f1.bin", "job-1/f2.bin"]
        assert z.read("job-1/f2.bin") == bytes([2]) * (3 << 20)


def test_the_favicon_tells_warnings_apart_from_a_plain_finish() -> None:
    assert pages.favicon_of(["completed", "completed-with-warnings"]) == "warnings"
    assert pages.favicon_of(["completed-with-warnings", "active"]) == "busy"
    assert pages.favicon_of(["completed-with-warnings", "failed"]) == "failed"
    assert pages.favicon_of(["completed"]) == "idle"


def test_a_slave_shows_how_long_it_has_been_in_its_state() -> None:
    html = pages.slaves_page([
        SlaveView("s1", "asleep", [], None, None, None, "", "", 1, ["wake"], since=3 * 3600),
        SlaveView("s2", "idle", [], None, None, None, "", "", 1, [])], "speed")
    assert '<tr id="slave-s1" data-state="asleep">' in html
    assert "<td>3 h 0 min</td>" in html and "<td>—</td>" in html
    assert 'data-slave-action="wake" data-slave="s1"' in html
    assert 'data-slave="s2"' not in html


def test_wake_is_offered_only_where_the_master_can_wake_the_slave() -> None:
    from types import SimpleNamespace

    from afarm.master.web.views import wakeable

    farm: Any = SimpleNamespace(power=SimpleNamespace(machines={"s1": object()}))
    assert wakeable(farm, "s1", "asleep") and wakeable(farm, "s1", "down")
    assert not wakeable(farm, "s1", "online") and not wakeable(farm, "s1", "busy")
    assert not wakeable(farm, "s2", "asleep")  # no mac in its definition
    assert not wakeable(SimpleNamespace(power=None), "s1", "asleep")  # type: ignore[arg-type]
