#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Measure a farm of SSH slaves on namespace hosts (needs root) and print the figures.

(a) Per-task overhead over SSH: a `command` job of many tasks of a fixed sleep, its actual
    makespan against the ideal (tasks x sleep / slaves), in ms per task.
(b) Distributing a large input file to every slave (bytes and seconds), and a second job on
    the same file, which must send no input bytes at all.
"""

import argparse
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

APPS = {
    "sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n",
    # Reads the first ITEM bytes of the input twice: real work on the file the job carries.
    "cmp": "kind = command\nexecutable = /usr/bin/cmp\nargv = -n, {item}, {input}, {input}\n"
           "capture_stdout = false\n",
}


def bytes_sent(farm: object) -> int:
    return sum(s["bytes_sent"] for s in farm.client.get("/api/v1/slaves"))  # type: ignore[attr-defined]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slaves", type=int, default=4)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--sleep", type=float, default=0.1)
    p.add_argument("--mib", type=int, default=200)
    a = p.parse_args()
    if os.geteuid() != 0:
        print("ssh_farm.py needs root (network namespaces, users, sshd)", file=sys.stderr)
        return 2
    with TestNet(a.slaves) as net, tempfile.TemporaryDirectory(prefix="afarm-bench-") as tmp:
        for h in net:
            install_shell(net, h)
            for name, text in APPS.items():
                (h.dir / "applications.d" / f"{name}.conf").write_text(text)
        base = Path(tmp)
        farm = ssh_master(base / "farm", net, list(net))
        for name, text in APPS.items():
            (farm.apps_dir / f"{name}.conf").write_text(text)
        farm.start()
        try:
            started = time.monotonic()
            job = farm.submit("--app", "sleep", "--items", ",".join([str(a.sleep)] * a.tasks))
            assert farm.wait(job)["status"] == "completed"
            wall = time.monotonic() - started
            ideal = a.tasks * a.sleep / a.slaves
            per_task = (wall - ideal) / (a.tasks / a.slaves) * 1000
            print(f"(a) {a.tasks} tasks of {a.sleep * 1000:.0f} ms on {a.slaves} SSH slaves:"
                  f" makespan {wall:.2f} s, ideal {ideal:.2f} s, overhead {per_task:.1f} ms"
                  f" per task ({wall / ideal:.2f}x ideal)")

            big = base / "input.bin"
            with open(big, "wb") as f:
                for _ in range(a.mib):
                    f.write(os.urandom(1 << 20))
            size = big.stat().st_size
            items = ",".join([str(size)] * a.slaves)
            before = bytes_sent(farm)
            started = time.monotonic()
            first = farm.submit(str(big), "--app", "cmp", "--items", items)
            assert farm.wait(first)["status"] == "completed"
            t1 = time.monotonic() - started
            sent1 = bytes_sent(farm) - before
            started = time.monotonic()
            second = farm.submit(str(big), "--app", "cmp", "--items", items)
            assert farm.wait(second)["status"] == "completed"
            t2 = time.monotonic() - started
            sent2 = bytes_sent(farm) - before - sent1
            print(f"(b) {a.mib} MiB input to {a.slaves} slaves: first job {t1:.2f} s,"
                  f" {sent1 / 2**20:.1f} MiB sent ({sent1 / size:.2f}x the file);"
                  f" second job on the same file {t2:.2f} s, {sent2} input bytes sent")
            print("    (submit includes the upload to the master and hashing:"
                  f" {size / 2**20:.0f} MiB)")
        finally:
            farm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
