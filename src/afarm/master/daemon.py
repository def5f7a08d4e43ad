# SPDX-License-Identifier: MIT
"""`afarm-master`: load the configuration, open both ports, run the farm until stopped."""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from afarm import __version__, addon
from afarm.applications.registry import load_applications
from afarm.config.loader import load
from afarm.config.types import MasterConfig, SlaveDef
from afarm.errors import AfarmError, ConfigError, UsageError
from afarm.master import auth, blend_deps, discovered, enroll, job_api, pool_api, results_api
from afarm.master.accounting import parse_tariff
from afarm.master.farm import Farm
from afarm.master.http import guard, openapi
from afarm.master.http.limits import (
    BODY_LIMITS,
    LimitedSite,
    Limits,
    body_deadline,
    raise_fd_limit,
)
from afarm.master.http.lograte import QuietBadRequests, RateLimit
from afarm.master.http_util import errors
from afarm.master.metering import Power, Site
from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.ranking import PRESETS, Policy, make_policy
from afarm.master.slaves.acceptance import AcceptanceSettings
from afarm.master.slaves.definitions import slave_definitions, transport_for
from afarm.master.slaves.power import PowerSettings, Window, parse_window, settings_of
from afarm.master.slaves.waker import Machine, PowerManager
from afarm.master.slaves.wol import BROADCAST
from afarm.master.web import routes as web_routes
from afarm.notify import notify
from afarm.protocol.net import is_loopback, join_hostport
from afarm.runner.sandbox import Sandbox, SandboxSettings
from afarm.transport.local import LocalTransport

log = logging.getLogger("afarm.master")
EX_OK, EX_USAGE, EX_SOFTWARE, EX_OSERR, EX_NOPERM, EX_CONFIG = 0, 64, 70, 71, 77, 78
DEFAULT_CONFIG = "/etc/afarm/master.conf"


def load_config(path: str) -> MasterConfig:
    cfg = load(path, "master")
    made = MasterConfig.of(cfg, slave_definitions(cfg), path)
    site_of(made)  # a bad tariff is a config error at load, not at the first task
    power_settings(made)
    return made


def power_settings(cfg: MasterConfig) -> PowerSettings:
    try:
        return settings_of(cfg.power)
    except ValueError as exc:
        raise ConfigError(cfg.where, [str(exc)]) from None


def power_manager(cfg: MasterConfig, farm: Farm) -> PowerManager:
    """The power manager over the farm's slaves; those with a mac can sleep and wake."""
    machines = {}
    for name, d in cfg.slaves.items():
        if d.mac:
            machines[name] = Machine(d.mac, d.broadcast, windows=_windows(d),
                                     sleep_watts=d.sleep_watts)
    sched = farm.scheduler
    return PowerManager(sched.places, power_settings(cfg), machines, clock=farm.clock,
                        ranked=lambda: [p.name for p in sched.ranked_places()[0]],
                        demand=sched.power_demand,
                        properties=sched.properties.row)


def _windows(d: SlaveDef) -> tuple[Window, ...] | None:
    return None if not d.sleep_windows else tuple(parse_window(w) for w in d.sleep_windows)


def announced_machines(cfg: MasterConfig,
                       discovery: discovered.Discovery) -> Callable[[str], Machine | None]:
    """Wake a slave without a mac at the MAC it announced (issue 11: accepted slaves sleep
    and wake with nobody typing a MAC); a broadcast its definition sets is kept."""
    def machine(name: str) -> Machine | None:
        found = discovery.wake_address(name)
        if found is None:
            return None
        d = cfg.slaves.get(name)
        broadcast = d.broadcast if d is not None and d.broadcast != BROADCAST else found[1]
        return Machine(found[0], broadcast, windows=_windows(d) if d else None,
                       sleep_watts=d.sleep_watts if d else 2.0)
    return machine


def site_of(cfg: MasterConfig) -> Site:
    """[energy] as the meter uses it; ConfigError if the tariff is not understood."""
    e = cfg.energy
    try:
        tariff = parse_tariff(e.tariff, e.price_per_kwh)
    except ValueError as exc:
        raise ConfigError(cfg.where, [f"[energy] tariff: {exc}"]) from None
    if tariff.periods and not e.price_per_kwh and not tariff.covers_day():
        raise ConfigError(cfg.where, ["[energy] tariff leaves hours of the day without a"
                                      " price; cover the whole day or set price_per_kwh"
                                      " for the hours it leaves out"])
    return Site(e.watts_busy, e.watts_idle, e.price_per_kwh, e.currency, tariff)


def ranking_setup(cfg: MasterConfig) -> tuple[Properties, str, dict[str, Policy]]:
    """The slaves' ranking properties and the policies of master.conf, checked."""
    problems = []
    policies: dict[str, Policy] = {}
    for name, conf in cfg.policies.items():
        try:
            policies[name] = make_policy(name, conf["kind"], list(conf["keys"]),
                                         dict(conf.get("weights", {})))
        except ValueError as exc:
            problems.append(f"[policies] [[{name}]]: {exc}")
    known = {**PRESETS, **policies}
    if cfg.scheduler.policy not in known:
        problems.append(f"[scheduler] policy = {cfg.scheduler.policy!r} is not a policy;"
                        " give one of " + ", ".join(sorted(known)))
    if problems:
        raise ConfigError(cfg.where, problems)
    static = {n: d.ranking() for n, d in cfg.slaves.items()}
    local = cfg.local_slaves
    shared = {k: v for k, v in (("watts_busy", local.watts_busy),
                                ("watts_idle", local.watts_idle), ("price", local.price)) if v}
    for i in range(1, local.count + 1):
        static[f"local-{i}"] = {**shared, **cfg.local_properties.get(f"local-{i}", {})}
    site = site_of(cfg)
    props = Properties(static, price=site.price_per_kwh, tariff=site.tariff,
                       watts_busy=site.watts_busy, watts_idle=site.watts_idle)
    return props, cfg.scheduler.policy, policies


def build_farm(cfg: MasterConfig) -> Farm:
    sched = cfg.scheduler
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    apps_dir = Path(cfg.master.applications_dir)
    apps = load_applications(apps_dir)
    sandbox = SandboxSettings.from_config(cfg.sandbox)
    farm = Farm(cfg.state_dir, apps, slave_failures_per_job=sched.slave_failures_per_job,
                slaves_per_task=sched.slaves_per_task, task_timeout=sched.task_timeout,
                followup_workers=sched.followup_workers,
                file_retention=cfg.master.file_retention_days * 86400.0,
                pool_dir=Path(cfg.master.pool_dir) if cfg.master.pool_dir else None,
                app_keep_days=cfg.master.app_keep_days,
                sandbox=Sandbox(sandbox), max_output_bytes=sched.max_output_mib << 20)
    farm.scheduler.configure_ranking(*ranking_setup(cfg))
    local = cfg.local_slaves
    for i in range(1, local.count + 1):
        name = f"local-{i}"
        t = LocalTransport(name, Path(local.work_dir) / name, apps_dir,
                           ["--sandbox", sandbox.to_json()])
        farm.add_slave(farm.link(name, t, local.slots, list(local.tags)))
        # The local slaves share this machine: its draw is split over all their slots.
        farm.meter.places[name] = Power(local.watts_busy or 0.0, local.watts_idle or 0.0,
                                        local.price or 0.0, local.count * local.slots,
                                        shared=True)
    for name, conf in cfg.slaves.items():
        farm.add_slave(farm.link(name, transport_for(name, conf, cfg.state_dir), conf.slots,
                                 list(conf.tags)))
        farm.meter.places[name] = Power.of(conf)
    farm.meter.site = site_of(cfg)
    farm.acceptance.settings = AcceptanceSettings.from_config(cfg.acceptance)
    farm.power = power_manager(cfg, farm)
    farm.power_loop = farm.power.settings.enabled
    return farm


def token_policy(cfg: MasterConfig) -> tuple[dict[str, auth.Token], bool]:
    """The token file's tokens by digest, and whether a token is required. Read once, at
    start: a new token works after a restart."""
    jp = cfg.job_port
    digests = auth.load_tokens(Path(jp.token_file))
    exposed = not all(is_loopback(cfg.listen(key).host)
                      for key in ("job_port", "results_port"))
    if exposed and not digests:
        raise ConfigError(cfg.where, [
            f"[job_port] listen = {jp.listen} is not loopback, so clients need a token,"
            f" but {jp.token_file} holds none; run: afarm-master --config {cfg.where}"
            " new-token"])
    return digests, exposed or bool(digests)


async def serve(cfg: MasterConfig) -> int:
    digests, required = token_policy(cfg)
    farm = build_farm(cfg)
    m, jp, h = cfg.master, cfg.job_port, cfg.http
    # The master's own client token: afarmctl and the demo find it with no set-up step.
    # It is admin: whoever may read it (root, group afarm-master) runs the farm anyway.
    accepted = {**digests, auth.ensure_client_token(cfg.state_dir):
                auth.Token(auth.ADMIN, auth.CLIENT_TOKEN)}
    listen = {key: cfg.listen(key) for key in ("job_port", "results_port")}
    names = guard.Guard([port for _, port in listen.values()], list(m.server_names))
    limits = Limits(h.max_connections, h.max_connections_per_client, h.header_timeout)
    limits.fit_fd_limit(raise_fd_limit())
    max_upload = jp.max_upload_mib << 20
    max_json = jp.max_request_kib << 10
    open_paths = frozenset({openapi.PATH, addon.PATH})
    # Every job-port request needs a token, on loopback too; POST /api/v1/enroll carries
    # the enrolment token's signature instead.
    job_auth = auth.middleware(accepted, True, open_paths)
    # The guard outside `errors`: the errors' JSON answers get the CORS headers the web
    # page needs to read them (its own refusals are answers, never exceptions).
    job_app = web.Application(
        middlewares=[guard.middleware(names, listen["job_port"][1]), errors,
                     body_deadline(h.body_timeout), enroll.skip_client_auth(job_auth)],
        client_max_size=max_json)
    job_app[BODY_LIMITS] = (max_json, h.body_timeout)
    job_app.add_routes(job_api.routes(farm, max_upload, idle_timeout=h.body_timeout,
                                      max_tasks=cfg.scheduler.max_tasks_per_job))
    job_app.add_routes(enroll.routes(farm, cfg.state_dir, slaves_dir=Path(m.slaves_dir)))
    job_app.add_routes(pool_api.routes(farm, max_upload, idle_timeout=h.body_timeout))
    job_app.add_routes([openapi.route(openapi.job_port())])
    discovery = discovered.Discovery(
        farm, cfg.state_dir, Path(m.slaves_dir), listen["job_port"],
        pending_expiry=float(cfg.discovery.get("pending_expiry_hours", 24)) * 3600)
    job_app.add_routes(discovered.routes(discovery))
    job_app.add_routes(blend_deps.routes(farm))  # the web page's dependency report
    if farm.power is not None:
        farm.power.announced = announced_machines(cfg, discovery)
    # Reading results needs a token only where the ports are reachable from elsewhere or
    # the admin made tokens; the Host and Origin checks keep web pages out either way.
    # The web page's views and assets check the token themselves (a browser following a
    # link cannot send one: they answer with a page that asks for it).
    res_app = web.Application(middlewares=[
        errors, guard.middleware(names, listen["results_port"][1]),
        auth.middleware(accepted, required, open_paths | web_routes.OPEN_PATHS,
                        web_routes.OPEN_PREFIXES)], client_max_size=max_json)
    page_routes, page_index = web_routes.routes(
        farm, job_port=listen["job_port"][1],
        authorized=lambda r: not required or auth.bearer_ok(r, accepted))
    res_app.add_routes(results_api.routes(farm, page_index))
    res_app.add_routes(page_routes)
    res_app.add_routes([openapi.route(openapi.results_port(required))])
    runners = []
    try:
        for app, key in ((job_app, "job_port"), (res_app, "results_port")):
            host, port = listen[key]
            runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                   keepalive_timeout=h.keepalive_timeout)
            await runner.setup()
            await LimitedSite(runner, host, port, limits, reuse_address=True,
                              shutdown_timeout=1.0).start()
            runners.append(runner)
            log.info("%s listening on %s", key.replace("_", " "), join_hostport(host, port))
    except OSError as exc:
        for r in runners:
            await r.cleanup()
        log.error("cannot listen: %s; is another afarm-master running?", exc)
        return EX_OSERR
    await farm.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    discovery.start(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notify("READY=1")
    log.info("afarm-master %s ready: %d slaves, %d applications", __version__,
             len(farm.dispatchers), len(farm.apps))
    await stop.wait()
    notify("STOPPING=1")
    log.info("stopping")
    discovery.stop()
    for r in runners:
        await r.cleanup()
    await farm.stop()
    return EX_OK


ROOT_REFUSED = (
    "afarm-master refuses to run as root: what it writes would belong to root, and the"
    " afarm-master service could not use it afterwards. Run it as its own user:"
    " systemctl start afarm-master, or runuser -u afarm-master -- afarm-master --config"
    " {config}. If it ran as root before, give its state back with: chown -R"
    " afarm-master:afarm-master {state}. To run as root anyway (a throw-away test),"
    " pass --allow-root or set [master] allow_root = yes.")


def setup_logging() -> None:
    """Lines with a timestamp, unless journald (which stamps them itself) reads stderr;
    each kind of message at most a few times a minute, so an attack cannot fill the disk."""
    fmt = "%(name)s %(levelname)s %(message)s"
    if not _stderr_is_journal():
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(QuietBadRequests())
    handler.addFilter(RateLimit(burst=20, window=60))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _stderr_is_journal() -> bool:
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return dev.isdigit() and ino.isdigit() and (st.st_dev, st.st_ino) == (int(dev), int(ino))


def new_token(cfg: MasterConfig, a: argparse.Namespace) -> int:
    try:
        if a.label and a.label_option and a.label != a.label_option:
            raise UsageError("give the label once: new-token LABEL")
        label = a.label or a.label_option or "afarmctl"
        print(auth.new_token(Path(cfg.job_port.token_file), label, a.scope))
    except UsageError as exc:
        log.error("%s", exc)
        return EX_USAGE
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="afarm-master",
                                description="The afarm master daemon (see afarm-master(8)).")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="master.conf to use")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command")
    sub.add_parser("run", help="run the daemon (the default)")
    sub.add_parser("check-config", help="validate the configuration and exit")
    tok = sub.add_parser(
        "new-token", help="create a client token (submit-only unless --scope admin) and"
        " print it once", description="Create a client token, store its sha256 in"
        " [job_port] token_file and print it once. A submit token uploads files, submits and"
        " manages jobs and reads everything; only an admin token also manages the farm"
        " (applications, slaves, enrolment tokens, gc). Restart afarm-master to use it.")
    tok.add_argument("label", nargs="?", metavar="LABEL",
                     help="a name for the token, shown in the master's log (default:"
                          " afarmctl): up to 64 printable characters")
    tok.add_argument("--label", dest="label_option", metavar="LABEL", help=argparse.SUPPRESS)
    tok.add_argument("--scope", choices=auth.SCOPES, default=auth.SUBMIT,
                     help="submit (the default): jobs only; admin: everything")
    p.add_argument("--allow-root", action="store_true",
                   help="run even as root (see [master] allow_root)")
    a = p.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(a.config)
        logging.getLogger().setLevel(cfg.master.log_level.upper())
        if a.command == "check-config":
            load_applications(Path(cfg.master.applications_dir))
            ranking_setup(cfg)
            token_policy(cfg)
            print(f"{a.config}: OK")
            return EX_OK
        if a.command == "new-token":
            return new_token(cfg, a)
        if os.geteuid() == 0 and not (a.allow_root or cfg.master.allow_root):
            log.error("%s", ROOT_REFUSED.format(config=a.config, state=cfg.state_dir))
            return EX_NOPERM
        return asyncio.run(serve(cfg))
    except ConfigError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    except AfarmError as exc:
        log.error("%s", exc)
        return EX_SOFTWARE
    except KeyboardInterrupt:
        return EX_OK


if __name__ == "__main__":
    sys.exit(main())
