# SPDX-License-Identifier: MIT
"""The master's content-addressed file store and the layout of each job's directory."""

import hashlib
import os
import re
from pathlib import Path

from afarm.errors import OperationFailed, UsageError

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_sha(sha: str) -> str:
    if not SHA256.match(sha):
        raise UsageError(f"{sha[:80]!r} is not a sha256 hex digest (64 lower-case hex digits)")
    return sha


class FileStore:
    """Input files by sha256: uploaded once, used by any number of jobs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        check_sha(sha)
        return self.root / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def writer(self, sha: str) -> "Upload":
        return Upload(self, check_sha(sha))


class Upload:
    """Streams an upload into a temporary file and keeps it only if its sha256 matches."""

    def __init__(self, store: FileStore, sha: str) -> None:
        self.store = store
        self.sha = sha
        self.tmp = store.root / "tmp" / f"{sha}.{os.getpid()}.{id(self)}"
        self.f = open(self.tmp, "wb")  # noqa: SIM115
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.h.update(data)
        self.f.write(data)
        self.size += len(data)

    def commit(self) -> int:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        if self.h.hexdigest() != self.sha:
            self.tmp.unlink(missing_ok=True)
            raise UsageError(f"upload of {self.sha[:12]} arrived with sha256"
                             f" {self.h.hexdigest()[:12]}; the file changed while sending,"
                             " send it again")
        final = self.store.path(self.sha)
        final.parent.mkdir(exist_ok=True)
        os.replace(self.tmp, final)
        return self.size

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


class JobDir:
    """`jobs/<id>/`: outputs land in `.partial/` and are renamed into place once verified."""

    def __init__(self, root: Path, job_id: int) -> None:
        self.root = root / str(job_id)
        self.partial = self.root / ".partial"
        self.logs = self.root / "logs"
        self.scratch = self.root / ".scratch"

    def create(self) -> None:
        for d in (self.root / "out", self.partial, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    def final(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if not p.is_relative_to(self.root.resolve()) or rel.startswith("."):
            raise OperationFailed(f"output path {rel!r} leaves the job directory")
        return p

    def partial_for(self, rel: str, tag: str) -> Path:
        return self.partial / f"{rel.replace('/', '__')}.{tag}"

    def publish(self, partial: Path, rel: str) -> Path:
        target = self.final(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)
        return target

    def outputs(self) -> list[str]:
        out = self.root / "out"
        if not out.is_dir():
            return []
        return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())

    def task_log(self, task_id: int) -> Path:
        return self.logs / f"task-{task_id}.log"
