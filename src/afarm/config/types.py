# SPDX-License-Identifier: MIT
"""master.conf read once into frozen dataclasses: the daemon passes these around, never the
raw configobj dicts, so a key is spelt and converted (paths, addresses, lists) in one place."""

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from afarm.errors import ConfigError
from afarm.protocol.net import AddressError, HostPort, parse_hostport


class _Section:
    """A spec section as a frozen dataclass: each field takes the key of its name."""

    @classmethod
    def of(cls, section: dict[str, Any]) -> Self:
        values = {}
        for f in fields(cls):
            if f.name not in section and f.default is not MISSING:
                continue  # a key newer than the dict (a test's or an old caller's)
            v = section[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**values)


@dataclass(frozen=True)
class MasterSection(_Section):
    state_dir: str
    applications_dir: str
    slaves_dir: str
    log_level: str
    file_retention_days: float
    server_names: tuple[str, ...]
    allow_root: bool
    pool_dir: str = ""
    app_keep_days: float = 30.0


@dataclass(frozen=True)
class JobPort(_Section):
    listen: str
    token_file: str
    max_upload_mib: int
    max_request_kib: int


@dataclass(frozen=True)
class HttpLimits(_Section):
    header_timeout: int
    body_timeout: int
    keepalive_timeout: int
    max_connections: int
    max_connections_per_client: int


@dataclass(frozen=True)
class SchedulerSection(_Section):
    slave_failures_per_job: int
    slaves_per_task: int
    task_timeout: int
    max_tasks_per_job: int
    followup_workers: int
    max_output_mib: int
    policy: str


@dataclass(frozen=True)
class LocalSlaves(_Section):
    count: int
    slots: int
    work_dir: str
    tags: tuple[str, ...]
    watts_busy: float  # 0: unknown
    watts_idle: float
    price: float


@dataclass(frozen=True)
class EnergySection(_Section):
    watts_busy: float
    watts_idle: float
    price_per_kwh: float
    currency: str
    tariff: tuple[str, ...]


@dataclass(frozen=True)
class SlaveDef(_Section):
    """One SSH slave: a [slaves] section or a slaves.d/NAME.conf file."""

    host: str
    port: int
    user: str
    key: str
    work_dir: str
    tags: tuple[str, ...]
    slots: int
    watts_idle: float = 0.0  # 0: unknown
    watts_busy: float = 0.0
    price: float = 0.0
    speed: float = 0.0  # frames/s from a benchmark; 0: unknown
    properties: tuple[tuple[str, float], ...] = ()
    mac: str = ""  # Wake-on-LAN; "": cannot be woken, so never suspended
    broadcast: str = "255.255.255.255"
    sleep_watts: float = 2.0
    sleep_windows: tuple[str, ...] = ()  # (): [power] sleep_windows

    @classmethod
    def of(cls, section: dict[str, Any]) -> "SlaveDef":
        return super().of({**section, "properties": tuple(sorted(
            section.get("properties", {}).items()))})

    def ranking(self) -> dict[str, float]:
        """The properties this definition gives the ranking (0, unknown, left out)."""
        fixed = {k: getattr(self, k) for k in ("watts_idle", "watts_busy", "price", "speed")}
        return {**dict(self.properties), **{k: v for k, v in fixed.items() if v}}


@dataclass(frozen=True)
class MasterConfig:
    where: str  # the file it came from, for messages
    master: MasterSection
    job_port: JobPort
    results_listen: str
    http: HttpLimits
    scheduler: SchedulerSection
    local_slaves: LocalSlaves
    sandbox: dict[str, Any]  # runner.sandbox.SandboxSettings.from_config reads it
    slaves: dict[str, SlaveDef]
    energy: EnergySection
    local_properties: dict[str, dict[str, float]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    acceptance: dict[str, Any] = field(default_factory=dict)  # AcceptanceSettings
    power: dict[str, Any] = field(default_factory=dict)  # master/slaves/power.py settings_of
    discovery: dict[str, Any] = field(default_factory=dict)  # [discovery] (master/discovered)

    @classmethod
    def of(cls, cfg: dict[str, Any], slaves: dict[str, dict[str, Any]],
           where: str) -> "MasterConfig":
        made = cls(where=where, master=MasterSection.of(cfg["master"]),
                   job_port=JobPort.of(cfg["job_port"]),
                   results_listen=cfg["results_port"]["listen"],
                   http=HttpLimits.of(cfg["http"]),
                   scheduler=SchedulerSection.of(cfg["scheduler"]),
                   local_slaves=LocalSlaves.of(cfg["local_slaves"]),
                   sandbox=dict(cfg["sandbox"]),
                   slaves={n: SlaveDef.of(c) for n, c in slaves.items()},
                   energy=EnergySection.of(cfg["energy"]),
                   local_properties={n: dict(v) for n, v in cfg["local_slaves"].items()
                                     if isinstance(v, dict)},
                   policies=dict(cfg.get("policies", {})),
                   acceptance=dict(cfg["acceptance"]),
                   power=dict(cfg.get("power", {})),
                   discovery=dict(cfg.get("discovery", {})))
        made.listen("job_port")  # a bad address is a config error at load, not at start
        made.listen("results_port")
        return made

    def listen(self, port: str) -> HostPort:
        """The address `[port] listen` names (job_port or results_port)."""
        value = self.job_port.listen if port == "job_port" else self.results_listen
        try:
            return parse_hostport(value, None, f"[{port}] listen =")
        except AddressError as exc:
            raise ConfigError(self.where, [str(exc)]) from None

    @property
    def state_dir(self) -> Path:
        return Path(self.master.state_dir)
