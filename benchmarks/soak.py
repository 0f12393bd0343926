"""``make soak``: mixed Thrift + Dubbo load through our proxy for ``SOAK_SECONDS`` (600) while
the MetaRouters change every second and an upstream host is killed and restarted every 30 s.

The mesh is the split form of ``aeraki run``: ``aeraki control DIR`` (the control plane, its
own process, watching a manifest directory) and ``aeraki proxy`` (our proxy, its own process
so its RSS is its own, an ADS client of that control plane). Upstreams are the integration
tests' real peers on 127.0.0.1: two thriftpy2 servers and two Java Dubbo providers, labelled
``v1``/``v2`` (ServiceEntry endpoints + DestinationRule subsets, as in the e2e tests).

While ``SOAK_CLIENTS`` client threads (half Thrift, half Dubbo; :mod:`benchmarks.soak_clients`)
call through the proxy at ``SOAK_RATE`` calls/s in all (2,000; 0 = as fast as answers come),
three schedules run:

* **routes**: every ``SOAK_ROUTE_EVERY`` s both MetaRouters are rewritten (atomically) with the
  next v1/v2 weight split (100/0, 0/100, 50/50, 80/20, 20/80, …);
* **kills**: every ``SOAK_KILL_EVERY`` s the next host in turn (thrift v1, dubbo v1, thrift v2,
  dubbo v2) gets SIGKILL — by the PID this script started — and is restarted on the same port
  ``SOAK_DOWN_SECONDS`` later; each kill's *window* runs from the kill until the new process
  accepts connections, plus ``SOAK_GRACE`` s;
* **memory**: the proxy's VmRSS is sampled every second.

Verdict (each failed check is a "problem"; exit status 1 if any):

* every call was answered — no failures (refused/reset/closed/garbage) and no hangs (no
  answer within ``SOAK_CALL_TIMEOUT`` s);
* error replies only for the protocol whose host was down, inside a kill window (no retries
  are configured, so requests the router sends to a dead host get the proxy's error reply);
* both versions answered on both protocols (the route changes took effect);
* every restarted host came back, and the proxy and control plane are still running;
* proxy RSS grew < ``SOAK_RSS_LIMIT`` (10 %) from the end of warm-up (first minute, or
  ``SOAK_WARMUP`` s) to the end.

``SOAK_WORKERS=N`` runs the proxy as ``aeraki proxy --workers N`` (its RSS and CPU are then
the sum over the supervisor and the workers).

Bounded in time (``SOAK_SECONDS``) and count (``SOAK_MAX_CALLS`` per client); every wait is
bounded; everything listens on 127.0.0.1; processes are stopped by PID. Results are printed and
written to the "Soak" section of ``benchmarks/RESULTS.md`` (``SOAK_RESULTS``; ``SOAK_NO_WRITE=1``
to skip); ``SOAK_WORKDIR`` keeps the manifests and process logs in that (new) directory.

    python -m benchmarks.soak          # SOAK_SECONDS=60 for a quick run
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from aeraki.control.cli import local_proxy_bootstrap
from benchmarks.results_section import machine_line, write_section
from benchmarks.soak_clients import ClientTally, Pacer, dubbo_client, thrift_client
from tests.control.test_runtime import service_yaml
from tests.integration.peers.dubbo import start_dubbo_provider
from tests.integration.peers.procs import (
    LOOPBACK,
    REPO_ROOT,
    PeerProcess,
    ProcessGroup,
    can_connect,
    free_ports,
    poll_until,
)
from tests.integration.peers.thrift_peer import start_thrift_server
from tests.integration.test_control_e2e import (
    DUBBO,
    DUBBO_PORT_NAME,
    THRIFT,
    THRIFT_PORT_NAME,
    dubbo_router,
    route,
    thrift_router,
)

HERE = Path(__file__).resolve().parent
AERAKI = str(Path(sys.executable).with_name("aeraki"))
#: v1/v2 weights the route schedule cycles through.
SPLITS = ((100, 0), (0, 100), (50, 50), (80, 20), (20, 80), (50, 50))
#: Kill order: (protocol, label).
KILL_ORDER = (("thrift", "v1"), ("dubbo", "v1"), ("thrift", "v2"), ("dubbo", "v2"))
READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Settings:
    """Every knob, from ``SOAK_*`` environment variables (see the module docstring)."""

    seconds: float = 600.0
    warmup: float = 60.0
    clients: int = 8
    rate: float = 2000.0
    route_every: float = 1.0
    kill_every: float = 30.0
    down_seconds: float = 3.0
    grace: float = 2.0
    call_timeout: float = 5.0
    rss_limit: float = 0.10
    max_calls: int = 2_000_000
    #: ``aeraki proxy --workers``: RSS and CPU are then the supervisor's plus its workers'
    workers: int = 1

    @classmethod
    def from_env(cls) -> Settings:
        values: dict[str, float | int] = {}
        for f in fields(cls):
            raw = os.environ.get(f"SOAK_{f.name.upper()}")
            if raw:
                values[f.name] = int(raw) if f.type == "int" else float(raw)
        if "seconds" in values and "warmup" not in values:
            values["warmup"] = min(cls.warmup, values["seconds"] / 4)
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Host:
    """One upstream we may kill and restart on the same port."""

    protocol: str
    label: str
    proc: PeerProcess
    env: dict[str, str] | None = None
    cwd: Path | None = None


@dataclass
class Kill:
    protocol: str
    label: str
    killed_at: float
    ready_at: float | None = None  # None: did not come back


@dataclass
class Result:
    """Everything the soak measured; ``problems`` lists every failed check."""

    settings: Settings
    #: monotonic time the load started (failures, hangs and kills are reported relative to it)
    started: float = 0.0
    seconds: float = 0.0
    tallies: list[ClientTally] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    route_writes: int = 0
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    rss_warm: int = 0
    rss_end: int = 0
    proxy_cpu: float = 0.0
    pushes: str = "n/a"
    proxy_stats: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def rss_growth(self) -> float:
        return (self.rss_end - self.rss_warm) / self.rss_warm if self.rss_warm else 0.0


# ------------------------------------------------------------------------------ the mesh


@dataclass
class Mesh:
    root: Path
    group: ProcessGroup
    hosts: dict[tuple[str, str], Host]
    thrift_port: int
    dubbo_port: int
    control: PeerProcess
    proxy: PeerProcess
    control_admin: int
    proxy_admin: int
    workers: int = 1

    def proxy_pids(self) -> list[int]:
        """The proxy's processes: itself, and its workers when it has several."""
        if self.workers == 1:
            return [self.proxy.pid]
        listed = json.loads(_get(self.proxy_admin, "/workers"))["workers"]
        return [self.proxy.pid, *(int(w["pid"]) for w in listed)]


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so the file source never reads half a manifest."""
    tmp = path.parent.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def _routers(split: tuple[int, int]) -> tuple[str, str]:
    v1, v2 = split
    thrift = thrift_router(route("soak", (THRIFT, "v1", v1), (THRIFT, "v2", v2)))
    dubbo = dubbo_router(route("soak", (DUBBO, "v1", v1), (DUBBO, "v2", v2)))
    return thrift, dubbo


def _start_upstreams(group: ProcessGroup) -> dict[tuple[str, str], Host]:
    """Two thriftpy2 servers and two Java providers, the JVMs started in parallel."""
    hosts: dict[tuple[str, str], Host] = {}
    env = {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}

    def java(label: str) -> None:
        provider = start_dubbo_provider(group, label=label, ready_timeout=READY_TIMEOUT)
        hosts["dubbo", label] = Host("dubbo", label, provider.process)

    threads = [threading.Thread(target=java, args=(label,)) for label in ("v1", "v2")]
    for thread in threads:
        thread.start()
    for label in ("v1", "v2"):
        server = start_thrift_server(group, "thriftpy2", "framed", "binary", label=label)
        hosts["thrift", label] = Host("thrift", label, server.process, env, REPO_ROOT)
    for thread in threads:
        thread.join(READY_TIMEOUT + 10)
    if len(hosts) != 4:
        raise RuntimeError(f"soak: upstreams did not all start: {sorted(hosts)}")
    return hosts


@contextlib.contextmanager
def mesh(workdir: Path, workers: int = 1) -> Iterator[Mesh]:
    """Upstreams, manifests, ``aeraki control`` and ``aeraki proxy``; stopped by PID on exit."""
    root = workdir / "mesh"
    root.mkdir(parents=True)
    with ProcessGroup(workdir / "logs") as group:
        hosts = _start_upstreams(group)
        thrift_port, dubbo_port, xds, control_admin, proxy_admin = free_ports(5)
        t1, t2 = hosts["thrift", "v1"].proc.port, hosts["thrift", "v2"].proc.port
        d1, d2 = hosts["dubbo", "v1"].proc.port, hosts["dubbo", "v2"].proc.port
        (root / "thrift.yaml").write_text(
            service_yaml("thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, thrift_port, t1, t2)
        )
        (root / "dubbo.yaml").write_text(
            service_yaml("dubbo", "meta-dubbo", DUBBO, DUBBO_PORT_NAME, dubbo_port, d1, d2)
        )
        thrift, dubbo = _routers(SPLITS[2])
        (root / "thrift-route.yaml").write_text(thrift)
        (root / "dubbo-route.yaml").write_text(dubbo)
        control = group.spawn(
            "aeraki-control",
            [
                *(AERAKI, "control", str(root), "--xds-address", f"{LOOPBACK}:{xds}"),
                *("--admin-address", f"{LOOPBACK}:{control_admin}"),
                *("--poll-ms", "100", "--quiet-ms", "50", "--max-delay-ms", "300"),
            ],
        )
        poll_until(
            lambda: can_connect(LOOPBACK, xds),
            timeout=READY_TIMEOUT,
            what="aeraki control",
            alive=control.alive,
        )
        bootstrap = workdir / "proxy-bootstrap.json"
        bootstrap.write_text(json.dumps(local_proxy_bootstrap(xds, admin_port=proxy_admin)))
        argv = [AERAKI, "proxy", "-c", str(bootstrap), "--workers", str(workers)]
        proxy = group.spawn("aeraki-proxy", argv)
        poll_until(
            lambda: can_connect(LOOPBACK, thrift_port) and can_connect(LOOPBACK, dubbo_port),
            timeout=READY_TIMEOUT,
            what="aeraki proxy listeners (from xDS)",
            alive=proxy.alive,
        )
        poll_until(  # every worker too, when there are several (their listeners came first)
            lambda: _ready(proxy_admin),
            timeout=READY_TIMEOUT,
            what="aeraki proxy /ready",
            alive=proxy.alive,
        )
        yield Mesh(
            root,
            group,
            hosts,
            thrift_port,
            dubbo_port,
            control,
            proxy,
            control_admin,
            proxy_admin,
            workers,
        )


# ------------------------------------------------------------------------------ schedules


def _every(period: float, stop: threading.Event, first: float) -> Iterator[int]:
    """Ticks at ``first + k * period`` (monotonic) until ``stop``; bounded by the stop."""
    tick = 0
    while not stop.wait(max(0.0, first + tick * period - time.monotonic())):
        yield tick
        tick += 1


def route_schedule(m: Mesh, s: Settings, stop: threading.Event, result: Result) -> None:
    for tick in _every(s.route_every, stop, time.monotonic() + s.route_every):
        thrift, dubbo = _routers(SPLITS[tick % len(SPLITS)])
        _write_atomic(m.root / "thrift-route.yaml", thrift)
        _write_atomic(m.root / "dubbo-route.yaml", dubbo)
        result.route_writes += 1


def kill_schedule(m: Mesh, s: Settings, stop: threading.Event, result: Result) -> None:
    for tick in _every(s.kill_every, stop, time.monotonic() + s.kill_every):
        protocol, label = KILL_ORDER[tick % len(KILL_ORDER)]
        host = m.hosts[protocol, label]
        kill = Kill(protocol, label, time.monotonic())
        result.kills.append(kill)
        host.proc.popen.kill()  # SIGKILL to the PID we started: a crash, no goodbye
        host.proc.popen.wait(10)
        m.group.stop(host.proc)
        stop.wait(s.down_seconds)  # stays down even if the soak ends meanwhile
        host.proc = _restart(m.group, host)
        kill.ready_at = time.monotonic()


def _restart(group: ProcessGroup, host: Host) -> PeerProcess:
    old = host.proc
    for _ in range(20):  # the port may linger a moment; bounded retries
        proc = group.spawn(old.name, old.argv, env=host.env, cwd=host.cwd, port=old.port)
        proc.port = old.port
        with contextlib.suppress(TimeoutError, RuntimeError):
            poll_until(
                lambda: can_connect(LOOPBACK, old.port),
                timeout=READY_TIMEOUT,
                what=f"restarted {old.name}",
                alive=proc.alive,
            )
            return proc
        group.stop(proc)
        time.sleep(0.25)
    raise RuntimeError(f"soak: {old.name} did not come back on port {old.port}")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------ the run


def run(s: Settings, workdir: Path, *, log: Callable[[str], None] = print) -> Result:
    """Start the mesh, run the load and the schedules for ``s.seconds``, judge the result."""
    result = Result(s)
    with mesh(workdir, s.workers) as m:
        log(f"soak: mesh up (proxy pids {m.proxy_pids()}); {s.seconds:.0f} s of load")
        stop, quit_schedules = threading.Event(), threading.Event()
        tallies, threads = _start_clients(m, s, stop)
        schedules = [
            threading.Thread(target=f, args=(m, s, quit_schedules, result), daemon=True)
            for f in (route_schedule, kill_schedule)
        ]
        result.tallies = tallies
        started = result.started = time.monotonic()
        for thread in schedules:
            thread.start()
        try:
            _sample_rss(m, s, result, started, log)
        finally:
            quit_schedules.set()
            for thread in schedules:
                thread.join(READY_TIMEOUT + 30)
            stop.set()
            for thread in threads:
                thread.join(s.call_timeout * 2 + 5)
        result.seconds = time.monotonic() - started
        stuck = sum(thread.is_alive() for thread in threads)
        if stuck:
            result.problems.append(f"{stuck} client thread(s) still running after the stop")
        _final_readings(m, result)
    _judge(result)
    return result


def _start_clients(
    m: Mesh, s: Settings, stop: threading.Event
) -> tuple[list[ClientTally], list[threading.Thread]]:
    tallies, threads = [], []
    for index in range(s.clients):
        protocol = "thrift" if index % 2 == 0 else "dubbo"
        tally = ClientTally(protocol)
        target, port = (
            (thrift_client, m.thrift_port) if protocol == "thrift" else (dubbo_client, m.dubbo_port)
        )
        kwargs = {"timeout": s.call_timeout, "max_calls": s.max_calls}
        pacer = Pacer(s.rate / s.clients, stop)
        thread = threading.Thread(
            target=target, args=(port, pacer, tally), kwargs=kwargs, daemon=True
        )
        tallies.append(tally)
        threads.append(thread)
        thread.start()
    return tallies, threads


def _sample_rss(
    m: Mesh, s: Settings, result: Result, started: float, log: Callable[[str], None]
) -> None:
    """Sample the proxy's RSS each second until the end; note it at warm-up end and end."""
    for tick in _every(1.0, threading.Event(), started + 1.0):
        now = time.monotonic() - started
        if not m.proxy.alive():
            result.problems.append(f"the proxy exited (status {m.proxy.popen.poll()})")
            return
        rss = sum(_rss_kib(pid) for pid in m.proxy_pids())
        result.rss_kib.append((now, rss))
        if not result.rss_warm and now >= s.warmup:
            result.rss_warm = rss
        if now >= s.seconds:
            result.rss_end = rss
            return
        if tick % 60 == 59:
            calls = sum(t.calls for t in result.tallies)
            log(f"soak: {now:.0f} s, {calls:,} calls, proxy RSS {rss / 1024:.1f} MiB")


def _ready(port: int) -> bool:
    try:
        return _get(port, "/ready") == "LIVE\n"
    except OSError:  # not listening yet, or 503 (urllib's HTTPError is an OSError)
        return False


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


def _final_readings(m: Mesh, result: Result) -> None:
    for proc in (m.proxy, m.control):
        if not proc.alive():
            result.problems.append(f"{proc.name} is not running at the end: {proc.log_tail(500)}")
    if m.proxy.alive():
        result.proxy_cpu = sum(_cpu_seconds(pid) for pid in m.proxy_pids())
        with contextlib.suppress(OSError):
            for line in _get(m.proxy_admin, "/stats").splitlines():
                name, _, value = line.partition(": ")
                if value.strip().lstrip("-").isdigit():
                    result.proxy_stats[name] = int(value)
    with contextlib.suppress(OSError):
        pushes = re.search(r"^\S*pushes_total\S*\s+(\S+)", _get(m.control_admin, "/metrics"), re.M)
        result.pushes = pushes.group(1) if pushes else "n/a"
    for host in m.hosts.values():
        if not host.proc.alive():
            result.problems.append(f"{host.protocol} {host.label} is not running at the end")


# ------------------------------------------------------------------------------ verdict


def _judge(r: Result) -> None:
    s = r.settings
    for protocol in ("thrift", "dubbo"):
        mine = [t for t in r.tallies if t.protocol == protocol]
        failures = sorted(f for t in mine for f in t.failures)
        hangs = sorted(h for t in mine for h in t.hangs)
        if failures:
            when, what = failures[0]
            r.problems.append(
                f"{protocol}: {len(failures)} calls got no answer, the first {_when(r, when)}: "
                f"{what}"
            )
        if hangs:
            r.problems.append(
                f"{protocol}: {len(hangs)} calls hung past {s.call_timeout} s, sent "
                + ", ".join(_when(r, h) for h in hangs[:3])
            )
        windows = [
            (k.killed_at - 0.05, (k.ready_at or float("inf")) + s.grace)
            for k in r.kills
            if k.protocol == protocol
        ]
        stray = [e for t in mine for e in t.errors if not any(a <= e <= b for a, b in windows)]
        if stray:
            r.problems.append(
                f"{protocol}: {len(stray)} error replies while no {protocol} host was down"
            )
        seen = {label for t in mine for label in t.ok}
        if not {"v1", "v2"} <= seen:
            r.problems.append(f"{protocol}: answers only from {sorted(seen)}")
    for kill in r.kills:
        if kill.ready_at is None:
            r.problems.append(f"{kill.protocol} {kill.label} did not come back after its kill")
    if not r.kills:
        r.problems.append("no host was killed (SOAK_KILL_EVERY longer than the run?)")
    if not r.rss_warm or not r.rss_end:
        r.problems.append("proxy RSS was not sampled at warm-up end and at the end")
    elif r.rss_growth >= s.rss_limit:
        r.problems.append(f"proxy RSS grew {r.rss_growth:.1%} (limit {s.rss_limit:.0%})")


def _when(r: Result, at: float) -> str:
    """``at`` relative to the start, and the kill it follows most closely (if any)."""
    text = f"at {at - r.started:.1f} s"
    before = [k for k in r.kills if k.killed_at <= at + 0.05]
    if before:
        k = before[-1]
        back = "never back" if k.ready_at is None else f"back at {k.ready_at - r.started:.1f} s"
        text += f" ({k.protocol} {k.label} killed at {k.killed_at - r.started:.1f} s, {back})"
    return text


def _latency_ms(tallies: list[ClientTally]) -> str:
    values = sorted(v for t in tallies for v in t.latency)
    if not values:
        return "n/a"

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return f"{at(0.5):.1f} / {at(0.99):.1f} / {values[-1] * 1000:.0f}"


METHOD = """\
## Soak (`make soak`, `benchmarks/soak.py`)

- **Mesh.** `aeraki control DIR` (manifest directory: ServiceEntry + DestinationRule v1/v2 and
  a MetaRouter per protocol) and `aeraki proxy` (its ADS client), separate processes; upstreams
  are two thriftpy2 servers (framed binary) and two Java Dubbo providers (Hessian2), v1/v2.
- **Load.** `SOAK_CLIENTS` threads (half thriftpy2 `whoami`/`echo`, half raw Dubbo
  `whoami`/`sayHello`), one call in flight each, paced to `SOAK_RATE` calls/s in all (a steady
  moderate load on a shared 2-CPU machine), every call bounded by `SOAK_CALL_TIMEOUT` s; no
  retries or timeouts configured in the mesh.
- **Churn.** Both MetaRouters rewritten every second (v1/v2 weights cycling 100/0, 0/100,
  50/50, 80/20, 20/80); every 30 s one upstream (thrift v1, dubbo v1, thrift v2, dubbo v2 in
  turn) is SIGKILLed by PID and restarted on its port `SOAK_DOWN_SECONDS` later.
- **Pass when** every call was answered (no failures, no hangs), error replies only came for
  the protocol whose host was down (kill → back up + `SOAK_GRACE` s), both versions answered,
  every host came back, and the proxy's RSS grew < 10 % from the end of warm-up to the end.
- *Latency* = p50 / p99 / max ms of answered calls (client side, all in one Python process
  sharing 2 CPUs with proxy, control plane and upstreams: a health check, not a benchmark).
- **Found by the soak:** a call sent just as its upstream was SIGKILLed could hang forever
  (about one per 600 s run): the connect completed, the dying process reset it, and the pool
  handed the already-closed connection to the waiting request. Fixed in `HostPool._on_connected`
  (commit ef68eaf; regression test `tests/proxy/upstream/test_pool_races.py`); the FAIL run
  below the fixed one is that finding.
"""


def report(r: Result) -> str:
    """The run as Markdown."""
    s = r.settings
    rows = [
        "| protocol | calls | ok v1 / v2 / echo | error replies (host down) | failures | hangs "
        "| latency p50 / p99 / max ms | reconnects |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for protocol in ("thrift", "dubbo"):
        mine = [t for t in r.tallies if t.protocol == protocol]
        ok = sum((t.ok for t in mine), start=ClientTally(protocol).ok)
        rows.append(
            f"| {protocol} | {sum(t.calls for t in mine):,} | {ok['v1']:,} / {ok['v2']:,} / "
            f"{ok['echo']:,} | {sum(len(t.errors) for t in mine):,} | "
            f"{sum(len(t.failures) for t in mine)} | {sum(len(t.hangs) for t in mine)} | "
            f"{_latency_ms(mine)} | {sum(t.connects for t in mine) - len(mine)} |"
        )
    calls = sum(t.calls for t in r.tallies)
    restarts = [k.ready_at - k.killed_at for k in r.kills if k.ready_at is not None]
    verdict = "PASS" if not r.problems else "FAIL: " + "; ".join(r.problems)
    errors = _error_text(r.tallies)
    lines = [
        f"##### {machine_line(HERE.parent)}",
        "",
        f"**{verdict}** — {r.seconds:.0f} s, {s.clients} clients, {calls:,} calls "
        f"({calls / r.seconds if r.seconds else 0:,.0f}/s); {r.route_writes} route changes "
        f"({r.pushes} xDS pushes); {_workers_text(s.workers)}{len(r.kills)} kills, back up in "
        f"{max(restarts, default=0):.1f} s at most; proxy RSS {r.rss_warm / 1024:.1f} MiB at "
        f"{s.warmup:.0f} s → {r.rss_end / 1024:.1f} MiB at the end ({r.rss_growth:+.1%}); proxy "
        f"CPU {r.proxy_cpu:.0f} s ({r.proxy_cpu / calls * 1e6 if calls else 0:.0f} µs/call).",
        "",
        *rows,
        "",
        f"Error replies seen: {errors}. Proxy stats: {_stats_text(r.proxy_stats)}.",
    ]
    return "\n".join(lines) + "\n"


def _workers_text(workers: int) -> str:
    """How the proxy ran, when not as one process (RSS and CPU then add up its processes)."""
    return f"proxy as {workers} workers + supervisor (RSS, CPU summed); " if workers > 1 else ""


def _error_text(tallies: list[ClientTally]) -> str:
    texts: dict[str, int] = {}
    for t in tallies:
        for text, count in t.error_text.items():
            texts[text] = texts.get(text, 0) + count
    top = sorted(texts.items(), key=lambda kv: -kv[1])[:4]
    return "; ".join(f"{count:,}× “{text}”" for text, count in top) or "none"


def _stats_text(stats: dict[str, int]) -> str:
    keys = (
        "request",
        "local_response_business_exception",
        "upstream_cx_connect_fail",
        "upstream_cx_destroy_with_active_rq",
        "request_decoding_error",
        "response_decoding_error",
    )
    picked = []
    for key in keys:
        total = sum(v for k, v in stats.items() if k.endswith("." + key) or k == key)
        picked.append(f"{key} {total:,}")
    return ", ".join(picked)


def main() -> int:
    s = Settings.from_env()
    print(f"soak: {s}", flush=True)
    keep = os.environ.get("SOAK_WORKDIR")  # keep manifests and process logs there
    with tempfile.TemporaryDirectory(prefix="aeraki-soak-") as tmp:
        workdir = Path(keep or tmp)
        result = run(s, workdir, log=lambda line: print(line, flush=True))
        if result.problems:
            print(f"soak: process logs in {workdir / 'logs'}" + ("" if keep else " (deleted)"))
    text = report(result)
    print(text)
    if not os.environ.get("SOAK_NO_WRITE"):
        path = Path(os.environ.get("SOAK_RESULTS") or HERE / "RESULTS.md")
        write_section(path, "soak", METHOD, text)
        print(f"soak: results written to {path}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
