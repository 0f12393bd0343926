"""``make bench``, control-plane case: 1,000 services with MetaRouters, 100 ADS clients.

Issue 3's performance item: the time from a MetaRouter file change to every client having
ACKed the new route, and the control plane's RSS (targets: < 1 s end to end, < 300 MB).

At the shipped settings (the manifest directory is watched with inotify; ``--poll-ms``, default
500, is only the fallback where inotify is unavailable), once per value in ``BENCH_CP_POLLS``
(default "500"):

1. writes the services, DestinationRules and MetaRouters (:mod:`benchmarks.control_manifests`)
   into a temporary directory;
2. starts ``aeraki control DIR`` as its own process on the proxy core (so its RSS and CPU are
   its own), ``--quiet-ms 100 --max-delay-ms 1000 --poll-ms P``, ADS on 127.0.0.1;
3. connects the clients (:mod:`benchmarks.control_client`: each its own connection and node
   id, SotW, CDS+LDS wildcard then EDS/RDS by name, ACKs everything) from this process on the
   load core, and times the *initial convergence*: until every client has ACKed a full config
   (every type with its expected resource count);
4. *change propagation*, ``BENCH_CP_CHANGES`` times: rewrites one MetaRouter file atomically
   (new route names, catch-all flipped to the other subset) and times until every client has
   ACKed an RDS response containing the change (its marker in that client's bytes; the route's
   target cluster decoded and checked). The control plane's ``push:`` log line gives the split:
   *detect* (change noticed + debounce quiet time) → *push* (config rebuild + translation per
   node view) → *deliver* (push end → last client's ACK);
5. samples VmRSS every 100 ms and reads VmHWM (kernel peak) from ``/proc/<pid>/status``, and
   utime+stime from ``/proc/<pid>/stat`` around each change (CPU seconds per push).

If a target is missed, one more change is made under ``py-spy record`` attached to the control
plane, and the hottest functions are reported (``BENCH_CP_PROFILE=0`` to skip, ``=1`` always).
Every wait is bounded (``BENCH_CP_TIMEOUT`` seconds each); the control plane is stopped by PID.

Knobs: BENCH_CP_SERVICES (1000), BENCH_CP_CLIENTS (100), BENCH_CP_CHANGES (5), BENCH_CP_POLLS
(ms, comma-separated; "500"), BENCH_CP_QUIET_MS (100), BENCH_CP_MAX_DELAY_MS (1000),
BENCH_CP_TIMEOUT (900), BENCH_CP_PROFILE (auto), BENCH_PROXY_CPU (0), BENCH_LOAD_CPU (1),
BENCH_RESULTS, BENCH_NO_WRITE=1.

    python -m benchmarks.control_plane
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.control_client import CDS, EDS, LDS, RDS, Fleet, Watch
from benchmarks.control_manifests import PER_SERVICE, Service, router_yaml, write_atomic, write_mesh
from benchmarks.procs import LOOPBACK, can_connect, free_ports, log_tail, spawn, stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AERAKI = str(Path(sys.executable).parent / "aeraki")
TARGET_LATENCY_S = 1.0
TARGET_RSS_MB = 300.0
_TICKS = os.sysconf("SC_CLK_TCK")
_PUSH_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO aeraki\.control\.runtime: push: (\d+) "
    r"change\(s\), (\d+) resource\(s\), (\d+) node snapshot\(s\) changed in ([\d.]+) ms"
)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    services: int = field(default_factory=lambda: int(_env("BENCH_CP_SERVICES", "1000")))
    clients: int = field(default_factory=lambda: int(_env("BENCH_CP_CLIENTS", "100")))
    changes: int = field(default_factory=lambda: int(_env("BENCH_CP_CHANGES", "5")))
    polls_ms: tuple[int, ...] = field(
        default_factory=lambda: tuple(
            int(p) for p in _env("BENCH_CP_POLLS", "500").split(",") if p.strip()
        )
    )
    quiet_ms: int = field(default_factory=lambda: int(_env("BENCH_CP_QUIET_MS", "100")))
    max_delay_ms: int = field(default_factory=lambda: int(_env("BENCH_CP_MAX_DELAY_MS", "1000")))
    timeout: float = field(default_factory=lambda: float(_env("BENCH_CP_TIMEOUT", "900")))
    profile: str = field(default_factory=lambda: _env("BENCH_CP_PROFILE", "auto"))
    cp_cpu: int = field(default_factory=lambda: int(_env("BENCH_PROXY_CPU", "0")))
    load_cpu: int = field(default_factory=lambda: int(_env("BENCH_LOAD_CPU", "1")))

    def expected(self) -> dict[str, int]:
        n = self.services
        return {CDS: PER_SERVICE["cds"] * n, EDS: PER_SERVICE["eds"] * n, LDS: n, RDS: n}


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` (all threads), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def status_mb(pid: int, key: str) -> float:
    """A ``kB`` line of ``/proc/<pid>/status`` (VmRSS, VmHWM) in MiB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------- results


@dataclass
class Change:
    service: str
    latency: float  # change written → last client's ACK
    first: float  # → first client's ACK
    detect: float | None  # → push start (poll wait + debounce quiet)
    push: float | None  # push duration (control plane's log)
    deliver: float | None  # push end → last ACK
    cp_cpu: float  # control-plane CPU seconds over the change
    client_cpu: float  # this process (all clients) CPU seconds over the change


@dataclass
class Phase:
    poll_ms: int
    watch: str = "?"  # how the control plane watched the directory: "inotify" or "polling"
    initial: float = 0.0  # process start → every client has ACKed a full config
    initial_after_connect: float = 0.0  # first client connect → same
    initial_cpu: float = 0.0
    idle_cpu_pct: float = 0.0  # control plane CPU while nothing changes (polling)
    changes: list[Change] = field(default_factory=list)
    rss_peak: float = 0.0  # max(VmHWM, sampled VmRSS), MiB
    rss_steady: float = 0.0  # VmRSS after the changes, MiB
    response_mb: float = 0.0  # bytes received by all clients during the initial config
    profile: list[str] = field(default_factory=list)
    missed: bool = False
    errors: list[str] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [c.latency for c in self.changes]


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _opt_median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------- the run


class ControlProcess:
    """``aeraki control`` as a child process; RSS sampled in the background."""

    def __init__(self, s: Settings, directory: Path, poll_ms: int, work: Path) -> None:
        self.port = free_ports(1)[0]
        self.log = work / f"control-{poll_ms}ms.log"
        argv = [
            AERAKI,
            "--log-level",
            "info",
            "control",
            str(directory),
            "--xds-address",
            f"{LOOPBACK}:{self.port}",
            "--quiet-ms",
            str(s.quiet_ms),
            "--max-delay-ms",
            str(s.max_delay_ms),
            "--poll-ms",
            str(poll_ms),
        ]
        self.started = time.monotonic()
        self.proc = spawn(argv, s.cp_cpu, self.log)
        self.pid = self.proc.pid
        self.rss_peak = 0.0
        self._sampler: asyncio.Task[None] | None = None

    def start_sampling(self) -> None:
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while self.proc.poll() is None:
            self.rss_peak = max(self.rss_peak, status_mb(self.pid, "VmRSS"))
            await asyncio.sleep(0.1)

    def peak(self) -> float:
        return max(self.rss_peak, status_mb(self.pid, "VmHWM"))

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"aeraki control exited with {self.proc.returncode}: {log_tail(self.log)}"
            )

    async def wait_listening(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not can_connect(self.port):
            self.alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"aeraki control not listening after {limit:.0f} s")
            await asyncio.sleep(0.05)

    def watch_mode(self) -> str:
        """How the file source watches the directory, from its startup log line."""
        text = self.log.read_text(errors="replace")
        return "inotify" if "(inotify)" in text else "polling" if "polling every" in text else "?"

    def pushes_since(self, wall: float) -> list[tuple[float, float, int]]:
        """(push end wall time, duration s, nodes changed) of ``push:`` lines after ``wall``."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _PUSH_LINE.match(line)
            if not m:
                continue
            end = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            duration = float(m.group(5)) / 1000
            if end - duration >= wall - 0.002:  # log timestamps have ms resolution
                out.append((end, duration, int(m.group(4))))
        return out

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        await asyncio.get_running_loop().run_in_executor(None, stop, self.proc)


async def _change(
    s: Settings,
    cp: ControlProcess,
    fleet: Fleet,
    directory: Path,
    svc: Service,
    tag: str,
    subset: str,
) -> Change:
    route = f"all-{tag}"
    expected_cluster = svc.cluster(subset)
    fleet.set_watch(lambda: Watch(route.encode(), svc.route_name, route, expected_cluster))
    cpu0, mine0 = cpu_seconds(cp.pid), self_cpu()
    wall0, t0 = time.time(), time.monotonic()
    write_atomic(directory / svc.router_file, router_yaml(svc, tag, subset))

    def done() -> bool:
        cp.alive()
        return all(c.watch is not None and c.watch.acked_at for c in fleet.clients)

    await fleet.wait(done, s.timeout, f"change {tag}")
    acks = [c.watch.acked_at for c in fleet.clients if c.watch is not None]
    wrong = [c.watch.wrong for c in fleet.clients if c.watch is not None and c.watch.wrong]
    if wrong:
        raise RuntimeError(f"change {tag}: wrong route content: {wrong[0]}")
    last, first = max(acks) - t0, min(acks) - t0
    await asyncio.sleep(0.05)  # let the log line land
    pushes = cp.pushes_since(wall0)
    detect = push = deliver = None
    if pushes:
        end, duration, _ = pushes[0]
        detect = end - duration - wall0
        push = duration
        deliver = last - (end - wall0)
    return Change(
        service=svc.name,
        latency=last,
        first=first,
        detect=detect,
        push=push,
        deliver=deliver,
        cp_cpu=cpu_seconds(cp.pid) - cpu0,
        client_cpu=self_cpu() - mine0,
    )


def _start_spy(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


async def _profiled_change(
    s: Settings,
    cp: ControlProcess,
    fleet: Fleet,
    directory: Path,
    svc: Service,
    work: Path,
) -> list[str]:
    """One more change with py-spy attached to the control plane; the hottest functions."""
    from benchmarks.profile import _short, summarise

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        return ["py-spy not installed: no profile"]
    out = work / "control-profile.txt"
    argv = [spy, "record", "--pid", str(cp.pid), "--rate", "100", "--nonblocking"]
    argv += ["--function", "--format", "raw", "--output", str(out)]
    proc = _start_spy(argv, work / "py-spy.log")
    try:
        await asyncio.sleep(1.0)  # attach
        change = await _change(s, cp, fleet, directory, svc, "profiled", "v2")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        except subprocess.TimeoutExpired:
            stop(proc)
    if not out.is_file():
        return [f"py-spy produced no output: {log_tail(work / 'py-spy.log', 400)}"]
    total, by_self, by_incl = summarise(out)
    lines = [
        f"py-spy record --nonblocking --function, 100 Hz, attached to `aeraki control` during "
        f"one more change ({change.latency:.2f} s end to end, push {change.push or 0:.2f} s); "
        f"{total} samples, including idle ones before and after the push.",
        "",
        "| % samples (self) | function |",
        "|---|---|",
        *[f"| {n * 100 / total:.1f} | `{_short(f)}` |" for f, n in by_self[:15]],
        "",
        "| % samples (inclusive) | function |",
        "|---|---|",
        *[f"| {n * 100 / total:.1f} | `{_short(f)}` |" for f, n in by_incl[:20]],
    ]
    return lines


async def run_phase(s: Settings, poll_ms: int, work: Path, profile: bool) -> Phase:
    phase = Phase(poll_ms)
    directory = work / f"manifests-{poll_ms}ms"
    svcs = write_mesh(directory, s.services)
    await asyncio.sleep(2.1)  # out of the file source's "racily clean" window: one read per file
    cp = ControlProcess(s, directory, poll_ms, work)
    fleet = Fleet(s.clients, f"{LOOPBACK}:{cp.port}")
    expected = s.expected()
    try:
        cp.start_sampling()
        await cp.wait_listening(60.0)
        phase.watch = cp.watch_mode()
        connected = time.monotonic()
        cpu_mine = self_cpu()
        fleet.start()

        def converged() -> bool:
            cp.alive()
            return all(c.complete(expected) for c in fleet.clients)

        await fleet.wait(converged, s.timeout, "initial convergence")
        done_at = max(c.completed_at() for c in fleet.clients)
        phase.initial = done_at - cp.started
        phase.initial_after_connect = done_at - connected
        phase.initial_cpu = cpu_seconds(cp.pid)
        phase.response_mb = (
            sum(st.response_bytes for c in fleet.clients for st in c.states.values()) / 2**20
        )
        print(
            f"  --poll-ms {poll_ms}: initial convergence {phase.initial:.2f} s "
            f"({phase.initial_after_connect:.2f} s after connect), control plane CPU "
            f"{phase.initial_cpu:.1f} s, client CPU {self_cpu() - cpu_mine:.1f} s",
            flush=True,
        )
        await asyncio.sleep(1.0)
        c0, t0 = cpu_seconds(cp.pid), time.monotonic()
        await asyncio.sleep(3.0)
        phase.idle_cpu_pct = 100 * (cpu_seconds(cp.pid) - c0) / (time.monotonic() - t0)
        subsets: dict[str, str] = {}
        for k in range(s.changes):
            svc = svcs[(k * 379 + 17) % len(svcs)]
            subset = "v2" if subsets.get(svc.name, "v1") == "v1" else "v1"
            subsets[svc.name] = subset
            change = await _change(s, cp, fleet, directory, svc, f"p{poll_ms}c{k}", subset)
            phase.changes.append(change)
            print(
                f"  --poll-ms {poll_ms}: change {k + 1}/{s.changes} ({svc.name} → {subset}): "
                f"{change.latency:.3f} s to the last ACK (first {change.first:.3f} s; "
                f"detect {_fmt(change.detect)}, push {_fmt(change.push)}, "
                f"deliver {_fmt(change.deliver)}); control plane CPU {change.cp_cpu:.2f} s, "
                f"clients {change.client_cpu:.2f} s",
                flush=True,
            )
            await asyncio.sleep(0.5 + s.quiet_ms / 1000)  # the next change starts from idle
        phase.rss_steady = status_mb(cp.pid, "VmRSS")
        phase.missed = _median(phase.latencies()) >= TARGET_LATENCY_S or cp.peak() >= TARGET_RSS_MB
        if profile and (s.profile == "1" or (s.profile == "auto" and phase.missed)):
            phase.profile = await _profiled_change(s, cp, fleet, directory, svcs[-1], work)
        phase.rss_peak = cp.peak()
    except (RuntimeError, TimeoutError) as exc:
        phase.errors.append(str(exc))
        phase.rss_peak = cp.peak()
        print(f"  --poll-ms {poll_ms}: FAILED: {exc}", file=sys.stderr, flush=True)
    finally:
        await fleet.close()
        await cp.stop()
    return phase


def _watch(p: Phase) -> str:
    if p.watch == "inotify":
        return f"inotify (poll {p.poll_ms} ms unused)"
    return f"{p.watch} {p.poll_ms} ms"


def _fmt(x: float | None, spec: str = ".3f", unit: str = " s") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    from benchmarks.run import machine as data_plane_machine

    info = data_plane_machine()
    import grpc

    info["grpc"] = grpc.__version__
    return info


def table(phases: list[Phase], s: Settings) -> str:
    head = (
        "| directory watch | initial convergence | change → all ACKed, median | max "
        "| first ACK, median | detect (+ quiet) | push (translate per view) | deliver "
        "| CP CPU s / change "
        "| clients CPU s / change | CP RSS peak | CP RSS after | CP idle CPU | errors |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for p in phases:
        lat = p.latencies()
        rows.append(
            f"| {_watch(p)} | {p.initial:.2f} s ({p.initial_after_connect:.2f} s after "
            f"connect) | {_median(lat):.3f} s | {max(lat, default=float('nan')):.3f} s | "
            f"{_median([c.first for c in p.changes]):.3f} s | "
            f"{_fmt(_opt_median([c.detect for c in p.changes]))} | "
            f"{_fmt(_opt_median([c.push for c in p.changes]))} | "
            f"{_fmt(_opt_median([c.deliver for c in p.changes]))} | "
            f"{_median([c.cp_cpu for c in p.changes]):.2f} | "
            f"{_median([c.client_cpu for c in p.changes]):.2f} | {p.rss_peak:.0f} MiB | "
            f"{p.rss_steady:.0f} MiB | {p.idle_cpu_pct:.1f} % | {len(p.errors)} |"
        )
    return head + "\n" + "\n".join(rows)


def verdict(phases: list[Phase]) -> list[str]:
    out = []
    for p in phases:
        lat = p.latencies()
        ok_lat = bool(lat) and not p.errors and _median(lat) < TARGET_LATENCY_S
        ok_max = bool(lat) and max(lat) < TARGET_LATENCY_S
        ok_rss = p.rss_peak < TARGET_RSS_MB
        out.append(
            f"- {_watch(p)}: end to end < {TARGET_LATENCY_S:.0f} s — "
            f"**{'PASS' if ok_lat else 'FAIL'}** (median {_median(lat):.3f} s; "
            f"max {max(lat, default=float('nan')):.3f} s {'also' if ok_max else 'not'} under); "
            f"RSS < {TARGET_RSS_MB:.0f} MB — **{'PASS' if ok_rss else 'FAIL'}** "
            f"(peak {p.rss_peak:.0f} MiB = {p.rss_peak * 1.048576:.0f} MB)"
            + (f"; errors: {'; '.join(p.errors)}" if p.errors else "")
        )
    return out


def poll_note(phases: list[Phase], s: Settings) -> str:
    parts = []
    for p in phases:
        d = _opt_median([c.detect for c in p.changes])
        parts.append(f"{_watch(p)} → detect median {_fmt(d)}")
    return (
        "Detection's share: with inotify a change is read when the rename lands; with polling "
        "it waits for the next directory scan (uniform in 0…poll). Either way the debounce "
        f"quiet time ({s.quiet_ms} ms) follows before the push starts (*detect*); measured: "
        f"{'; '.join(parts)}. The rest is the push and the delivery."
    )


METHOD = """\
## Control plane: {services:,} services × {clients} ADS clients (`benchmarks/control_plane.py`)

Added by `make bench` after the data-plane case (`BENCH_ONLY=control` runs only this one); this
section is rewritten in place, newest run first. Targets (issue 3): a MetaRouter file change
reaches every client, ACKed, in **< 1 s**; control plane RSS **< 300 MB**.

- **Config.** {services:,} STATIC ServiceEntries (one `tcp-metaprotocol-thrift-server` port each,
  distinct ports and loopback VIPs `127.10.x.y`, two endpoints labelled v1/v2), a
  DestinationRule per service (subsets v1/v2, consistent hash), and a MetaRouter per service
  (`method` exact `echo` → 80/20 v1/v2; catch-all → one subset), one file per service and one
  per MetaRouter (`benchmarks/control_manifests.py`). Every client sees every service: per
  client {lds:,} listeners, {cds:,} clusters, {eds:,} ClusterLoadAssignments, {rds:,} route
  configurations.
- **Control plane.** `aeraki control DIR --quiet-ms {quiet} --max-delay-ms {max_delay}
  --poll-ms P` as its own process, pinned to cpu{cp_cpu}; ADS on 127.0.0.1. The directory is
  watched with inotify (the *directory watch* column says what the process reported);
  `--poll-ms` only matters where inotify is unavailable.
- **Clients.** {clients} minimal SotW ADS clients in the benchmark process (pinned to
  cpu{load_cpu}, grpc.aio, `benchmarks/control_client.py`): own connection and node id each;
  CDS + LDS wildcard, then EDS/RDS by the names the clusters/listeners carry; every response
  ACKed at once. Resources stay packed; names are decoded once per (type, version) — versions
  are content hashes — so the clients' own cost stays small (its CPU is in the table).
- **Initial convergence.** From process start (and from the first client connecting) until
  every client has ACKed all four types with the full resource counts.
- **Change propagation.** One MetaRouter file rewritten atomically (temp file + `os.replace`):
  new route names and the catch-all flipped to the other subset; the time until every client
  has ACKed an RDS response containing it (the new route name in that client's response bytes;
  the route's target cluster decoded and checked). {changes} changes per polling interval,
  one at a time from idle. Split from the control plane's `push:` log line: *detect* = change →
  push start (change noticed + debounce quiet), *push* = config rebuild + translation per node
  view (incremental) + snapshots, *deliver* = push end → last client's ACK (serving {clients}
  RDS responses — only the changed route configuration in each — and the clients' handling).
- **Memory and CPU.** RSS = max(VmHWM, VmRSS sampled every 100 ms) of the control-plane process;
  CPU = utime+stime from `/proc/<pid>/stat` over each change; idle CPU = nothing changing
  (inotify: the 10 s safety rescan; polling: the scans).
"""

BEGIN = "<!-- control-plane:begin -->"
END = "<!-- control-plane:end -->"
RUNS = "<!-- control-plane:runs -->"


def run_text(phases: list[Phase], s: Settings, info: dict[str, str]) -> str:
    lines = [
        f"### {info['date']} — commit {info['commit']}",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}; Python "
        f"{info['python']}, grpcio {info['grpc']}; 1-min loadavg at start {info['loadavg']}. "
        f"{s.services:,} services, {s.clients} clients, {s.changes} changes per polling "
        f"interval, quiet {s.quiet_ms} ms, max delay {s.max_delay_ms} ms.",
        "",
        table(phases, s),
        "",
        *verdict(phases),
        "",
        poll_note(phases, s),
    ]
    for p in phases:
        if p.profile:
            why = "a target was missed" if p.missed else "BENCH_CP_PROFILE=1"
            lines += ["", f"**Profile ({_watch(p)}; {why})**", "", *p.profile]
    return "\n".join(lines) + "\n"


def write_results(path: Path, phases: list[Phase], s: Settings, info: dict[str, str]) -> None:
    """Rewrite the control-plane section of RESULTS.md in place (appended if absent).

    It sits after the data-plane runs: ``benchmarks/run.py`` keeps everything after its
    "## Runs" marker, so the data-plane case never drops this section.
    """
    text = path.read_text() if path.is_file() else ""
    older = ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        section, after = rest.split(END, 1)
        if RUNS in section:
            older = section.split(RUNS, 1)[1].strip("\n")
    else:
        before, after = text.rstrip("\n") + ("\n\n" if text else ""), "\n"
    method = METHOD.format(
        services=s.services,
        clients=s.clients,
        changes=s.changes,
        quiet=s.quiet_ms,
        max_delay=s.max_delay_ms,
        cp_cpu=s.cp_cpu,
        load_cpu=s.load_cpu,
        **{k: v * s.services for k, v in PER_SERVICE.items()},
    )
    body = method + "\n" + RUNS + "\n\n" + run_text(phases, s, info)
    if older:
        body += "\n" + older + "\n"
    path.write_text(before + BEGIN + "\n" + body + END + after)


async def amain(s: Settings) -> list[Phase]:
    phases = []
    with tempfile.TemporaryDirectory(prefix="aeraki-cp-bench-") as tmp:
        for i, poll in enumerate(s.polls_ms):
            print(f"control-plane bench: --poll-ms {poll}", flush=True)
            phases.append(await run_phase(s, poll, Path(tmp), profile=i == 0))
    return phases


def main() -> int:
    s = Settings()
    ncpu = os.cpu_count() or 1
    if max(s.cp_cpu, s.load_cpu) >= ncpu:
        print("bench: needs 2 CPUs (set BENCH_PROXY_CPU/BENCH_LOAD_CPU)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {s.load_cpu})
    info = machine()
    print(
        f"control-plane bench: {s.services} services, {s.clients} clients, polls "
        f"{s.polls_ms} ms, {s.changes} changes each; {info['commit']}",
        flush=True,
    )
    t0 = time.monotonic()
    phases = asyncio.run(amain(s))
    text = run_text(phases, s, info)
    print("\n" + text)
    if os.environ.get("BENCH_NO_WRITE") != "1":
        results = Path(os.environ.get("BENCH_RESULTS", HERE / "RESULTS.md"))
        write_results(results, phases, s, info)
        print(f"wrote the control-plane section of {results}")
    print(f"control-plane bench: done in {time.monotonic() - t0:.0f} s")
    return 1 if any(p.errors for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
