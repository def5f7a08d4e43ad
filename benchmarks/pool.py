#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Push an application version from the master's pool to SSH slaves on namespace hosts
(needs root) and print the figures.

(a) The first job of a ~300 MB version on N slaves: the master rsyncs the archive into each
    slave's cache, the slave checks its sha256, unpacks it and tests it, then runs the task;
    seconds for the job and bytes sent.
(b) A second job on the same version: nothing is sent (0 bytes), the installs are reused.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.system.test_slave_shell_ssh import install_shell  # noqa: E402
from tests.system.test_ssh_farm import ssh_master  # noqa: E402
from tests.system.testnet import TestNet  # noqa: E402

# The master's definition of `tool`; every pool version of it carries this definition, its
# program `run` inside the version's archive.
TOOL = "kind = command\nexecutable = run\nargv = {item},\ncapture_stdout = false\n"
RUN = """#!/usr/bin/python3 -I
import sys
import time

time.sleep(float(sys.argv[1]))
"""


def bytes_sent(farm: object) -> int:
    return sum(s["bytes_sent"] for s in farm.client.get("/api/v1/slaves"))  # type: ignore[attr-defined]


def make_version(base: Path, mib: int) -> Path:
    d = base / "tool-1.0"
    d.mkdir()
    (d / "run").write_text(RUN)
    (d / "run").chmod(0o755)
    with open(d / "payload.bin", "wb") as f:  # incompressible, as binaries nearly are
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return d


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slaves", type=int, default=4)
    p.add_argument("--mib", type=int, default=300)
    a = p.parse_args()
    if os.geteuid() != 0:
        print("pool.py needs root (network namespaces, users, sshd)", file=sys.stderr)
        return 2
    with TestNet(a.slaves) as net, tempfile.TemporaryDirectory(prefix="afarm-bench-") as tmp:
        for h in net:
            install_shell(net, h)
        base = Path(tmp)
        farm = ssh_master(base / "farm", net, list(net))
        (farm.apps_dir / "tool.conf").write_text(TOOL)
        farm.start()
        try:
            started = time.monotonic()
            add = farm.ctl("--json", "app", "add", "tool", "1.0",
                           str(make_version(base, a.mib)))
            assert add.returncode == 0, add.stderr
            entry = json.loads(add.stdout)
            print(f"app add: {entry['size'] / 2**20:.1f} MiB archive"
                  f" ({entry['unpacked'] / 2**20:.1f} MiB unpacked) made, uploaded and"
                  f" indexed in {time.monotonic() - started:.2f} s")
            # One task per slave that takes long enough for every slave to get one.
            items = ",".join(["1.0"] * a.slaves)
            results = []
            for label in ("first", "second"):
                before = bytes_sent(farm)
                started = time.monotonic()
                job = farm.submit("--app", "tool (= 1.0)", "--items", items)
                status = farm.wait(job, timeout=1800)["status"]
                assert status == "completed", farm.ctl("logs", str(job)).stdout
                results.append((label, time.monotonic() - started, bytes_sent(farm) - before))
            holders = json.loads(farm.ctl("--json", "app", "list").stdout)["versions"][0]
            for label, secs, sent in results:
                print(f"{label} job on tool 1.0, {a.slaves} tasks of 1 s on {a.slaves} SSH"
                      f" slaves: {secs:.2f} s, {sent:,} bytes sent"
                      f" ({sent / entry['size']:.2f}x the archive)")
            print(f"push + check + unpack + test per slave: about"
                  f" {results[0][1] - results[1][1]:.2f} s more than the second job;"
                  f" held by {len(holders['slaves'])} slaves: {', '.join(holders['slaves'])}")
        finally:
            farm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
