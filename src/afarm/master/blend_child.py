# SPDX-License-Identifier: MIT
"""The child process of afarm.master.blend_deps: trace one uploaded .blend among the
uploaded files laid out by name, keep to them, and print the report as JSON. It imports
only the tracer (the master's limits on memory apply to it) and never opens a library
outside the uploaded files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from afarm.errors import UsageError


def inside(path: Path, top: Path) -> bool:
    return path == top or path.is_relative_to(top)


def trace_tree(tree: Path, blend: str) -> dict[str, Any]:
    """Runs in the child: trace ``tree/blend`` (symlinks into the store), keep to ``tree``."""
    from blender_asset_tracer import bpathlib
    from blender_asset_tracer.trace import file2blocks

    from afarm.project import trace as tracer

    top = tracer.lexical(tree)
    main = tracer.lexical(tree / blend)

    def linked(self: Any, blocks_per_lib: Any) -> Any:
        # BAT 1.23's own loop, except that a library outside the uploaded files is never
        # opened (it would be a file of the master, e.g. another job's input).
        for lib_bpath, idblocks in blocks_per_lib.items():
            lib_path = bpathlib.make_absolute(lib_bpath.to_path())
            if not inside(tracer.lexical(lib_path), top) or not lib_path.exists():
                continue
            yield from self.iter_blocks(self.open_blendfile(lib_path), idblocks)

    file2blocks.BlockIterator._visit_linked_blocks = linked  # type: ignore[assignment]
    tracer.check(main, main)

    def name(p: Path) -> str:
        return os.path.relpath(p, top)

    deps: dict[tuple[str, str], dict[str, Any]] = {}
    from blender_asset_tracer import blendfile

    try:
        for u in tracer._usages(main):
            if not inside(u.blend, top):
                continue
            raw = u.raw.decode("utf-8", "replace")
            outside = not inside(u.target, top)
            found = [] if outside else [name(f) for f in u.files if inside(f, top)]
            if u.owner.startswith("library ") and found:
                tracer.check(u.files[0], main)
            where = os.path.relpath(u.target, main.parent)
            key = (where, raw)
            dep = deps.setdefault(key, {
                "path": where if not outside else raw, "raw": raw, "sequence": u.sequence,
                "present": bool(found), "files": found, "wanted_by": [],
                "reason": "" if found else "outside the uploaded files" if outside
                else "not uploaded"})
            dep["wanted_by"].append(f"{u.owner} in {name(u.blend)}")
    except blendfile.exceptions.BlendFileError as exc:
        raise UsageError(f"{name(tracer.lexical(exc.filepath))}: cannot be read as a .blend"
                         f" file ({exc.args[0]}); save it again from Blender") from None
    except (EOFError, OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise UsageError(f"{blend}: reading it (or a library it links) failed: {exc!s:.200};"
                         " is it a complete .blend file? Save it again from Blender") from None
    finally:
        blendfile.close_all_cached()
    out = sorted(deps.values(), key=lambda d: (d["present"], d["path"]))
    for d in out:
        d["wanted_by"] = list(dict.fromkeys(d["wanted_by"]))
    return {"blend": blend, "dependencies": out}


def main(argv: list[str]) -> int:  # pragma: no cover - the child process
    import logging

    logging.disable(logging.CRITICAL)
    try:
        answer = trace_tree(Path(argv[0]), argv[1])
    except UsageError as exc:
        answer = {"error": str(exc).replace(argv[0].rstrip("/") + "/", "")}
    except MemoryError:
        answer = {"error": f"{argv[1]}: tracing it needs more memory than the master"
                           " allows; submit it with afarmctl, which traces it on your machine"}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
