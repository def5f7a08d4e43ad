# SPDX-License-Identifier: MIT
"""The master <-> slave channel: JSON lines, each a typed message checked once at the edge.

The master opens with `hello` carrying PROTOCOL_VERSION; a slave speaking another version
refuses, and the master refuses a reply of another version, both with a message that says
to install the same afarm on both. Everything a slave sends is bounded here (lines, log
size, counts), so a lying or broken slave cannot make the master keep unbounded data.
"""

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from afarm.errors import AfarmError

PROTOCOL_VERSION = 2
MAX_LOG_LINES = 200
MAX_LINE = 4096  # longer lines are cut: a log line is for people, not a data channel
MAX_ERRORS = 50
MAX_OUTPUTS = 100_000
MAX_TIMEOUT = 7 * 24 * 3600
MAX_ENERGY_J = 1e10  # ~2.8 MWh: more than any one task; a larger figure is not believed
_SHA = re.compile(r"^[0-9a-f]{64}$")


class ProtocolError(AfarmError):
    """A message that does not follow the protocol; the peer is told why."""


def _int(msg: dict[str, Any], key: str, lo: int = 0, hi: int = 2**53) -> int:
    v = msg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ProtocolError(f"{msg.get('op')}: {key} must be a whole number from {lo} to {hi}")
    return v


def _str(msg: dict[str, Any], key: str, limit: int = 255) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or len(v) > limit:
        raise ProtocolError(f"{msg.get('op')}: {key} must be text of at most {limit} chars")
    return v


def _seconds(msg: dict[str, Any], key: str) -> float:
    v = msg.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_TIMEOUT:
        raise ProtocolError(f"{msg.get('op')}: {key} must be a number of seconds above 0 and"
                            f" at most {MAX_TIMEOUT} (7 days)")
    return float(v)


def _energy(value: Any) -> float | None:
    """A measured energy in joules, or None when absent or not a believable number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value <= MAX_ENERGY_J else None


def _lines(value: Any, most: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(x)[:MAX_LINE] for x in value[-most:]]


@dataclass(frozen=True)
class InputRef:
    name: str
    sha256: str


@dataclass(frozen=True)
class Hello:
    name: str
    version: str
    protocol: int
    applications: list[str]
    cpus: int = 1
    memory: int = 0
    disk_free: int = 0
    pid: int = 0
    # A digest of what the slave runs with (afarm, application definitions, programs): a
    # change makes the master test the slave again.
    software: str = ""
    # Application versions installed from the master's pool ("blender/4.2.0") and the
    # Debian architecture they must be built for; absent from older slaves: none, amd64.
    installed: list[str] = field(default_factory=list)
    arch: str = ""

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> "Hello":
        protocol = msg.get("protocol")
        if protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the slave speaks afarm protocol {protocol!r} (afarm {msg.get('version')}),"
                f" this master {PROTOCOL_VERSION}: install the same afarm version on both")
        apps = msg.get("applications")
        if not isinstance(apps, list) or not all(isinstance(a, str) for a in apps):
            raise ProtocolError("hello: applications must be a list of names")
        raw = msg.get("installed")
        installed = [v[:130] for v in raw[:1000] if isinstance(v, str)] \
            if isinstance(raw, list) else []
        return cls(name=_str(msg, "name"), version=_str(msg, "version", 64),
                   protocol=protocol, applications=apps[:1000], cpus=_int(msg, "cpus"),
                   memory=_int(msg, "memory"), disk_free=_int(msg, "disk_free"),
                   pid=_int(msg, "pid"), software=_text(msg.get("software"), 64),
                   installed=installed, arch=_text(msg.get("arch"), 16))

    def to_wire(self) -> dict[str, Any]:
        return {"op": "hello", **asdict(self)}


@dataclass(frozen=True)
class RunRequest:
    job: int
    task: int
    attempt: int
    app: str
    kind: str
    params: dict[str, Any]
    inputs: list[InputRef]
    outputs: list[str]
    timeout: float
    version: str = ""  # a pool version of `app` installed on the slave; "": its own app

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["op"] = "run"
        if not self.version:
            del d["version"]
        return d

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> "RunRequest":
        params = msg.get("params")
        outputs = msg.get("outputs", [])
        inputs = msg.get("inputs", [])
        if not isinstance(params, dict):
            raise ProtocolError("run: params must be an object")
        if not isinstance(outputs, list) or len(outputs) > MAX_OUTPUTS or not all(
                isinstance(o, str) for o in outputs):
            raise ProtocolError("run: outputs must be a list of names")
        if not isinstance(inputs, list) or len(inputs) > MAX_OUTPUTS:
            raise ProtocolError("run: inputs must be a list")
        refs = []
        for i in inputs:
            if not isinstance(i, dict) or not isinstance(i.get("name"), str) \
                    or not _SHA.match(str(i.get("sha256", ""))):
                raise ProtocolError("run: each input needs a name and a sha256 hex digest")
            refs.append(InputRef(i["name"], i["sha256"]))
        return cls(job=_int(msg, "job"), task=_int(msg, "task"), attempt=_int(msg, "attempt"),
                   app=_str(msg, "app"), kind=_str(msg, "kind", 64), params=params,
                   inputs=refs, outputs=outputs,
                   timeout=_seconds(msg, "timeout"), version=_text(msg.get("version"), 64))


@dataclass
class TaskReply:
    """`done`: how an attempt ended, from whoever ran it."""

    task: int
    attempt: int
    exit_code: int | None = None
    error: str | None = None
    timed_out: bool = False
    outputs: list[str] = field(default_factory=list)
    out_dir: str = ""
    seconds: float = 0.0
    argv: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    energy_j: float | None = None  # measured by the slave (RAPL) where it can; else None

    def to_wire(self) -> dict[str, Any]:
        return {"op": "done", **asdict(self)}

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> "TaskReply":
        outputs = msg.get("outputs") or []
        if not isinstance(outputs, list) or len(outputs) > MAX_OUTPUTS:
            raise ProtocolError("done: outputs must be a list of at most"
                                f" {MAX_OUTPUTS} names")
        code = msg.get("exit_code")
        error = msg.get("error")
        seconds = msg.get("seconds")
        return cls(
            task=_int(msg, "task"), attempt=_int(msg, "attempt"),
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            error=str(error)[:MAX_LINE] if error else None,
            timed_out=bool(msg.get("timed_out")),
            outputs=[str(o)[:255] for o in outputs],
            out_dir=str(msg.get("out_dir") or "")[:1024],
            seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
            argv=_lines(msg.get("argv"), 10_000),
            log=_lines(msg.get("log"), MAX_LOG_LINES),
            errors=_lines(msg.get("errors"), MAX_ERRORS),
            warnings=_lines(msg.get("warnings"), MAX_ERRORS),
            energy_j=_energy(msg.get("energy_j")))


@dataclass(frozen=True)
class Progress:
    task: int
    attempt: int
    saved: str

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> "Progress":
        return cls(_int(msg, "task"), _int(msg, "attempt"), _str(msg, "saved"))


MAX_CHECKS = 100
MAX_GPUS = 64


def _text(value: Any, limit: int) -> str:
    return str(value)[:limit] if value is not None else ""


@dataclass(frozen=True)
class Check:
    """One acceptance check on a slave: its name, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class TestReport:
    """`test`: what the slave's acceptance checks found (the master adds its own, rsync)."""

    checks: list[Check] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)  # "nvidia: ...", "dri: renderD128", ...
    cycles_devices: list[str] = field(default_factory=list)  # "CUDA: RTX 3080", "CPU: ..."
    blender: str = ""  # Blender's version; "" where the slave has no Blender application

    __test__ = False  # not a pytest class

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def reason(self) -> str:
        """What failed, in one line; "" when it passed."""
        bad = [f"{c.name}: {c.detail}" if c.detail else c.name
               for c in self.checks if not c.ok]
        if not self.checks:
            return "the slave ran no acceptance checks"
        return "; ".join(bad)[:MAX_LINE]

    def to_wire(self) -> dict[str, Any]:
        return {"op": "test", **asdict(self)}

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> "TestReport":
        raw = msg.get("checks")
        if not isinstance(raw, list) or len(raw) > MAX_CHECKS:
            raise ProtocolError(f"test: checks must be a list of at most {MAX_CHECKS}")
        checks = []
        for c in raw:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) \
                    or not isinstance(c.get("ok"), bool):
                raise ProtocolError("test: each check needs a name and ok (true/false)")
            secs = c.get("seconds")
            checks.append(Check(c["name"][:64], c["ok"], _text(c.get("detail"), MAX_LINE),
                                float(secs) if isinstance(secs, int | float)
                                and not isinstance(secs, bool) and math.isfinite(secs)
                                else 0.0))
        return cls(checks=checks, gpus=_lines(msg.get("gpus"), MAX_GPUS),
                   cycles_devices=_lines(msg.get("cycles_devices"), MAX_GPUS),
                   blender=_text(msg.get("blender"), 64))


@dataclass(frozen=True)
class BenchResult:
    """Seconds per frame of afarm's benchmark scene on one engine and device."""

    application: str
    version: str
    engine: str
    device: str
    seconds_per_frame: float
    frames: int


@dataclass
class BenchReport:
    """`bench`: the benchmark's figures, or why it could not run."""

    results: list[BenchResult] = field(default_factory=list)
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"op": "bench", **asdict(self)}

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> "BenchReport":
        raw = msg.get("results") or []
        if not isinstance(raw, list) or len(raw) > MAX_CHECKS:
            raise ProtocolError(f"bench: results must be a list of at most {MAX_CHECKS}")
        results = []
        for r in raw:
            if not isinstance(r, dict):
                raise ProtocolError("bench: each result must be an object")
            spf = r.get("seconds_per_frame")
            if isinstance(spf, bool) or not isinstance(spf, int | float) \
                    or not math.isfinite(spf) or not 0 < spf <= MAX_TIMEOUT:
                raise ProtocolError("bench: seconds_per_frame must be a number of seconds"
                                    f" above 0 and at most {MAX_TIMEOUT}")
            results.append(BenchResult(_str(r, "application"), _str(r, "version", 64),
                                       _str(r, "engine", 64), _str(r, "device", 255),
                                       float(spf), _int(r, "frames", 1, 100_000)))
        error = msg.get("error")
        return cls(results=results, error=str(error)[:MAX_LINE] if error else None)
