"""``make bench``: Thrift and Dubbo echo through direct / HAProxy / Envoy / Aeraki, side by side.

For each protocol it starts one cheap upstream echo server (:mod:`benchmarks.echo_server`),
checks once that a real client library accepts its answers, measures the load generator's own
ceiling, then, one target at a time, starts the proxy pinned to the proxy core, runs the
closed-loop generator (:mod:`benchmarks.loadgen`) pinned to the load core next to the echo
server, and stops the proxy by PID. It prints a table and rewrites ``benchmarks/RESULTS.md``
(method, machine, commit, the new table first, earlier runs kept below).

Knobs (environment): BENCH_SECONDS (measured window, 10), BENCH_WARMUP (3),
BENCH_CONNECTIONS (50), BENCH_ROUNDS (3; medians over rounds interleaved across targets, so
drift and other load on a shared machine hit every target alike; 3 x 13 s x 10 targets keeps
``make bench`` under ~9 minutes),
BENCH_TARGETS (comma-separated substrings to keep, default all), BENCH_PROXY_CPU (0),
BENCH_LOAD_CPU (1), BENCH_RESULTS (path of the results file), BENCH_NO_WRITE=1 (print only).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import wire
from benchmarks.procs import (
    can_connect,
    free_ports,
    http_ok,
    log_tail,
    spawn,
    stop,
    wait_until,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = HERE / "configs"
PY = sys.executable
AERAKI = str(Path(sys.executable).parent / "aeraki")
ENVOY_PATH_FILE = ROOT / ".tools" / "envoy-path"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    """What one run measures and where it pins things."""

    seconds: float = field(default_factory=lambda: _env_float("BENCH_SECONDS", 10.0))
    warmup: float = field(default_factory=lambda: _env_float("BENCH_WARMUP", 3.0))
    connections: int = field(default_factory=lambda: _env_int("BENCH_CONNECTIONS", 50))
    rounds: int = field(default_factory=lambda: _env_int("BENCH_ROUNDS", 3))
    proxy_cpu: int = field(default_factory=lambda: _env_int("BENCH_PROXY_CPU", 0))
    load_cpu: int = field(default_factory=lambda: _env_int("BENCH_LOAD_CPU", 1))
    targets: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            t for t in os.environ.get("BENCH_TARGETS", "").split(",") if t.strip()
        )
    )


# ------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """One row of the table: a protocol through one proxy (or none)."""

    name: str
    kind: str  # "thrift" | "dubbo"
    proxy: str  # "direct" | "haproxy" | "envoy" | "aeraki"
    config: str = ""  # file in benchmarks/configs
    note: str = ""


TARGETS: tuple[Target, ...] = (
    Target("direct (no proxy)", "thrift", "direct"),
    Target("HAProxy tcp (nbthread 1)", "thrift", "haproxy", "haproxy.cfg"),
    Target("Envoy thrift_proxy (--concurrency 1)", "thrift", "envoy", "envoy-thrift.yaml"),
    Target("Aeraki py (1 worker, uvloop)", "thrift", "aeraki", "aeraki-thrift.yaml"),
    Target("direct (no proxy)", "dubbo", "direct"),
    Target("HAProxy tcp (nbthread 1)", "dubbo", "haproxy", "haproxy.cfg"),
    Target("Envoy dubbo_proxy (--concurrency 1)", "dubbo", "envoy", "envoy-dubbo.yaml"),
    Target(
        "Envoy generic_proxy dubbo codec (--concurrency 1)",
        "dubbo",
        "envoy",
        "envoy-generic-dubbo.yaml",
    ),
    Target("Aeraki py (1 worker, uvloop)", "dubbo", "aeraki", "aeraki-dubbo.yaml"),
    Target("Aeraki py multiplexed (1 worker, uvloop)", "dubbo", "aeraki", "aeraki-dubbo-mux.yaml"),
)


def envoy_binary() -> str | None:
    """The Envoy that ``make setup`` installed (.tools/envoy-path), if any."""
    env = os.environ.get("AERAKI_ENVOY_BINARY")
    cands = [env] if env else []
    if ENVOY_PATH_FILE.is_file():
        cands.append(ENVOY_PATH_FILE.read_text().strip())
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    return None


def unavailable(t: Target) -> str | None:
    """Why ``t`` cannot run on this machine, or None."""
    if t.proxy == "haproxy" and shutil.which("haproxy") is None:
        return "haproxy not installed"
    if t.proxy == "envoy" and envoy_binary() is None:
        return "Envoy binary not installed (make setup)"
    if t.proxy == "aeraki" and not os.access(AERAKI, os.X_OK):
        return f"{AERAKI} missing"
    if t.kind == "dubbo" and t.proxy == "aeraki":
        probe = subprocess.run(
            [PY, "-c", "import aeraki.codec.dubbo.codec"], capture_output=True, check=False
        )
        if probe.returncode != 0:
            return "aeraki.codec.dubbo not importable yet"
    return None


class Running:
    """A started proxy: its process, the port clients use, and its log."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, port: int, log: Path | None):
        self.proc = proc
        self.port = port
        self.log = log


def render(config: str, **ports: int) -> str:
    """Config text with ``{name}`` placeholders replaced by ports (YAML braces left alone)."""
    text = (CONFIGS / config).read_text()
    for name, value in ports.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def start_target(t: Target, upstream: int, work: Path, cpu: int) -> Running:
    """Start the proxy of ``t`` pinned to ``cpu`` and wait until it is ready."""
    if t.proxy == "direct":
        return Running(None, upstream, None)
    listen, admin = free_ports(2)
    cfg = work / f"{t.kind}-{t.config}"
    cfg.write_text(render(t.config, listen_port=listen, upstream_port=upstream, admin_port=admin))
    log = work / f"{t.kind}-{t.config}.log"
    ready: Callable[[], bool]
    if t.proxy == "haproxy":
        argv = ["haproxy", "-db", "-f", str(cfg)]
        ready = lambda: can_connect(listen)  # noqa: E731
    elif t.proxy == "envoy":
        binary = envoy_binary()
        assert binary is not None
        argv = [binary, "-c", str(cfg), "--concurrency", "1", "-l", "error"]
        argv += ["--disable-hot-restart"]
        ready = lambda: http_ok(f"http://127.0.0.1:{admin}/ready") and can_connect(listen)  # noqa: E731
    else:
        argv = [AERAKI, "--log-level", "warning", "proxy", "-c", str(cfg), "--loop", "uvloop"]
        ready = lambda: http_ok(f"http://127.0.0.1:{admin}/ready") and can_connect(listen)  # noqa: E731
    proc = spawn(argv, cpu, log)
    try:
        wait_until(ready, timeout=30.0, what=t.name, proc=proc)
    except RuntimeError as exc:
        stop(proc)
        raise RuntimeError(f"{exc}\n{log_tail(log)}") from exc
    return Running(proc, listen, log)


# --------------------------------------------------------------------------- validation


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed before a full response")
        data += chunk
    return data


def raw_roundtrip(kind: str, port: int) -> str | None:
    """Send the generator's exact request once; None if the answer is a success, else why."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        if kind == "thrift":
            s.sendall(wire.thrift_echo_call(7))
            size = int.from_bytes(_recv_exact(s, 4), "big")
            body = _recv_exact(s, size)
            ok = body[3] == wire.THRIFT_REPLY and body[8 + len(wire.THRIFT_METHOD) :][:4] == (
                7
            ).to_bytes(4, "big")
        else:
            s.sendall(wire.dubbo_echo_request(7))
            head = _recv_exact(s, 16)
            _recv_exact(s, int.from_bytes(head[12:16], "big"))
            ok = head[3] == wire.DUBBO_STATUS_OK and head[4:12] == (7).to_bytes(8, "big")
    return None if ok else "unexpected response bytes"


def thriftpy2_call(port: int) -> str:
    """One ``echo`` with the thriftpy2 client library (framed, binary): a real client check."""
    import thriftpy2
    from thriftpy2.protocol import TBinaryProtocolFactory
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TFramedTransportFactory

    mod = thriftpy2.load(str(HERE / "echo.thrift"), module_name="bench_echo_thrift")
    client = make_client(
        mod.Echo,
        "127.0.0.1",
        port,
        proto_factory=TBinaryProtocolFactory(),
        trans_factory=TFramedTransportFactory(),
        timeout=5000,
    )
    try:
        result: str = client.echo("hello")
    finally:
        client.close()
    return result


DUBBO_CHECK = """
import sys, warnings
warnings.simplefilter("ignore")
import logging; logging.disable(logging.CRITICAL)
from dubbo_ssl.client import DubboClient
c = DubboClient(%r, group=None, version=%r, dubbo_version=%r, host="127.0.0.1:%d")
print(repr(c.call(%r, ["hello"], timeout=5)), flush=True)
"""


def dubbo_client_call(port: int) -> str:
    """One ``echo`` with dubbo-ssl-python (a real Hessian2 Dubbo client), in a child process
    because that library leaves reader/heartbeat threads behind."""
    code = DUBBO_CHECK % (
        wire.DUBBO_INTERFACE,
        wire.DUBBO_SERVICE_VERSION,
        wire.DUBBO_VERSION,
        port,
        wire.DUBBO_METHOD,
    )
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return f"failed: {proc.stderr.strip().splitlines()[-1:]}"
    return proc.stdout.strip()


def validate_echo(kind: str, port: int) -> str:
    """Check with a real client library that the echo server's bytes are real protocol."""
    try:
        if kind == "thrift":
            got = thriftpy2_call(port)
            want = "hello"
            lib = "thriftpy2"
        else:
            got = dubbo_client_call(port)
            want = repr(wire.PAYLOAD)
            lib = "dubbo-ssl-python"
    except Exception as exc:  # noqa: BLE001 - any client failure is reported, not fatal
        return f"{kind}: client error {type(exc).__name__}: {exc}"
    verdict = "OK" if got == want else f"UNEXPECTED ({got[:60]!r})"
    return f"{kind}: {lib} client call `echo` through the echo server directly → {verdict}"


# ------------------------------------------------------------------------------ measure


def run_loadgen(
    s: Settings, kind: str, port: int, watch: dict[str, int], cpu: int
) -> dict[str, Any]:
    """One warm-up + measured window of the generator (its own process, pinned to ``cpu``)."""
    argv = [PY, "-m", "benchmarks.loadgen", kind, "--port", str(port)]
    argv += ["--connections", str(s.connections), "--warmup", str(s.warmup)]
    argv += ["--seconds", str(s.seconds), "--cpu", str(cpu)]
    for name, pid in watch.items():
        argv += ["--watch", f"{name}={pid}"]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=s.warmup + s.seconds + 60,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": f"generator exit {proc.returncode}: {proc.stderr[-500:]}"}
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def start_echo(kind: str, cpu: int, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start an echo server pinned to ``cpu``; returns it once it printed READY."""
    (port,) = free_ports(1)
    log = work / f"echo-{kind}-{cpu}.log"
    argv = [PY, "-m", "benchmarks.echo_server", kind, "--port", str(port), "--cpu", str(cpu)]
    proc = spawn(argv, cpu, log, capture_stdout=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15.0)
    line = proc.stdout.readline() if ready else b""
    if not line.startswith(b"READY"):
        stop(proc)
        raise RuntimeError(f"echo server {kind} did not start: {log_tail(log)}")
    return proc, port


@dataclass
class Row:
    """Medians of one target's rounds (or why it did not run)."""

    target: Target
    results: list[dict[str, Any]] = field(default_factory=list)
    na: str | None = None

    def med(self, get: Callable[[dict[str, Any]], float]) -> float:
        vals = [get(r) for r in self.results if "error" not in r]
        return statistics.median(vals) if vals else float("nan")

    @property
    def ok(self) -> bool:
        return self.na is None and any("error" not in r for r in self.results)

    def rps(self) -> float:
        return self.med(lambda r: float(r["rps"]))

    def cpu_us(self, name: str) -> float:
        return self.med(lambda r: r["cpu_s"].get(name, float("nan")) / r["requests"] * 1e6)

    def gen_us(self) -> float:
        return self.med(lambda r: r["generator_cpu_s"] / r["requests"] * 1e6)


def measure_ceiling(s: Settings, work: Path, kind: str) -> dict[str, Any]:
    """The generator alone on its core, against an echo server on the *other* core."""
    echo, port = start_echo(kind, s.proxy_cpu, work)
    try:
        return run_loadgen(s, kind, port, {"echo": echo.pid}, s.load_cpu)
    finally:
        stop(echo)


def measure(s: Settings, work: Path) -> tuple[list[Row], dict[str, Any], list[str]]:
    """Every target, ``s.rounds`` interleaved rounds; the generator ceilings; validations."""
    rows = [
        Row(t)
        for t in TARGETS
        if not s.targets or any(k in t.name or k == t.kind for k in s.targets)
    ]
    kinds = sorted({r.target.kind for r in rows}, key=["thrift", "dubbo"].index)
    checks: list[str] = []
    ceilings: dict[str, Any] = {}
    echoes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for kind in kinds:
            echoes[kind] = start_echo(kind, s.load_cpu, work)
            checks.append(validate_echo(kind, echoes[kind][1]))
            print(checks[-1], flush=True)
        for row in rows:
            row.na = unavailable(row.target)
        ceiling_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for rnd in range(s.rounds):
            for kind in kinds:
                print(f"[{kind}] round {rnd + 1}: generator ceiling …", flush=True)
                ceiling_runs[kind].append(measure_ceiling(s, work, kind))
                print(f"  {_brief(ceiling_runs[kind][-1])}", flush=True)
                ceilings[kind] = _median_run(ceiling_runs[kind])
            for row in rows:
                if row.na:
                    continue
                t = row.target
                echo, upstream = echoes[t.kind]
                print(f"[{t.kind}] round {rnd + 1}: {t.name} …", flush=True)
                try:
                    running = start_target(t, upstream, work, s.proxy_cpu)
                except RuntimeError as exc:
                    row.na = f"did not start: {str(exc).splitlines()[0]}"
                    print(f"  n/a: {exc}", flush=True)
                    continue
                try:
                    bad = raw_roundtrip(t.kind, running.port)
                    if bad is None and t.kind == "thrift" and t.proxy != "direct":
                        got = thriftpy2_call(running.port)
                        bad = None if got == "hello" else f"thriftpy2 got {got!r}"
                    if bad is not None:
                        row.na = f"bad response through proxy: {bad}"
                        print(f"  n/a: {row.na}", flush=True)
                        continue
                    watch = {"echo": echo.pid}
                    if running.proc is not None:
                        watch["proxy"] = running.proc.pid
                    result = run_loadgen(s, t.kind, running.port, watch, s.load_cpu)
                    if "error" in result and running.log is not None:
                        result["error"] += " | " + log_tail(running.log, 400)
                    row.results.append(result)
                    print(f"  {_brief(result)}", flush=True)
                finally:
                    if running.proc is not None:
                        stop(running.proc)
    finally:
        for proc, _ in echoes.values():
            stop(proc)
    return rows, ceilings, checks


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (a whole run, so its numbers stay consistent)."""
    good = sorted((r for r in runs if "error" not in r), key=lambda r: float(r["rps"]))
    return good[len(good) // 2] if good else runs[-1]


def _brief(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ERROR {r['error']}"
    cpu = ", ".join(f"{k} {v / r['requests'] * 1e6:.1f} µs/req" for k, v in r["cpu_s"].items())
    busy = " ".join(f"cpu{c} {v * 100:.0f}%" for c, v in r["core_busy"].items())
    return (
        f"{r['rps']:,.0f} req/s p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms; {cpu}; "
        f"generator {r['generator_cpu_s'] / r['requests'] * 1e6:.1f} µs/req; busy {busy}; "
        f"other load {foreign(r) * 100:.0f}%; errors {r['errors']}"
    )


# ------------------------------------------------------------------------------ report


def foreign(r: dict[str, Any]) -> float:
    """CPU (in cores) used on the two benchmark cores by anything but the benchmark's own
    processes during the window: the noise indicator of a shared machine."""
    ours = float(sum(r["cpu_s"].values())) + float(r["generator_cpu_s"])
    return max(0.0, float(sum(r["core_busy"].values())) - ours / float(r["seconds"]))


def _fmt(v: float, spec: str) -> str:
    return "–" if v != v else format(v, spec)  # NaN check without math import


def table(rows: list[Row], s: Settings) -> str:
    """Markdown table per protocol with ratios against direct and Envoy."""
    out: list[str] = []
    for kind in ("thrift", "dubbo"):
        krows = [r for r in rows if r.target.kind == kind]
        if not krows:
            continue
        direct = next((r for r in krows if r.target.proxy == "direct" and r.ok), None)
        envoy = next((r for r in krows if r.target.proxy == "envoy" and r.ok), None)
        envoy_label = envoy.target.name.split(" (")[0] if envoy else "Envoy"
        title = "Thrift echo (framed binary)" if kind == "thrift" else "Dubbo echo (Hessian2)"
        out.append(
            f"\n**{title}** — {s.connections} connections, closed loop, "
            f"{s.warmup:g} s warm-up + {s.seconds:g} s measured"
            + (f", median of {s.rounds} rounds" if s.rounds > 1 else "")
            + f"; ratios against direct and against {envoy_label}.\n"
        )
        out.append(
            "| target | req/s | ×direct | ×Envoy | p50 ms | p99 ms | proxy CPU µs/req "
            "| CPU ×Envoy | proxy RSS MiB | echo µs/req | gen µs/req | core0/core1 busy "
            "| other load | errors |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in krows:
            if not r.ok:
                reason = r.na or "; ".join(str(x.get("error", ""))[:120] for x in r.results)
                out.append(f"| {r.target.name} | n/a ({reason}) |" + " |" * 12)
                continue
            rps = r.rps()
            cpu = r.cpu_us("proxy")
            rss = r.med(lambda x: x["rss_kib"].get("proxy", float("nan")) / 1024)
            busy = "/".join(
                _fmt(r.med(lambda x, c=c: x["core_busy"].get(c, float("nan")) * 100), ".0f")  # type: ignore[misc]
                for c in (str(s.proxy_cpu), str(s.load_cpu))
            )
            errors = int(sum(x.get("errors", 0) for x in r.results if "error" not in x))
            out.append(
                "| "
                + " | ".join(
                    [
                        r.target.name,
                        f"{rps:,.0f}",
                        _fmt(rps / direct.rps(), ".2f") if direct else "–",
                        _fmt(rps / envoy.rps(), ".2f") if envoy else "–",
                        _fmt(r.med(lambda x: x["p50_ms"]), ".3f"),
                        _fmt(r.med(lambda x: x["p99_ms"]), ".3f"),
                        _fmt(cpu, ".1f"),
                        _fmt(cpu / envoy.cpu_us("proxy"), ".2f") if envoy else "–",
                        _fmt(rss, ".1f"),
                        _fmt(r.cpu_us("echo"), ".1f"),
                        _fmt(r.gen_us(), ".1f"),
                        busy + " %",
                        _fmt(r.med(foreign) * 100, ".0f") + " %",
                        str(errors),
                    ]
                )
                + " |"
            )
    return "\n".join(out)


def ceiling_text(ceilings: dict[str, Any], s: Settings) -> str:
    lines = [
        "\n**Load generator ceiling** (the generator must not be the bottleneck: measured alone, "
        f"generator on cpu{s.load_cpu}, echo server moved to cpu{s.proxy_cpu}, no proxy; the "
        "run with the median req/s of the rounds; *CPU-bound ceiling* = 1 s / generator CPU per "
        "request, what it could drive with its core to itself):\n"
    ]
    for kind, r in ceilings.items():
        if "error" in r:
            lines.append(f"- {kind}: error {r['error']}")
            continue
        gen = r["generator_cpu_s"] / r["requests"] * 1e6
        busy = r["core_busy"].get(str(s.load_cpu), float("nan")) * 100
        lines.append(
            f"- {kind}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms; "
            f"generator {gen:.1f} µs CPU/req (CPU-bound ceiling {1e6 / gen:,.0f} req/s), "
            f"cpu{s.load_cpu} {busy:.0f}% busy, "
            f"other load {foreign(r) * 100:.0f}% of a core"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """Where and on what the numbers were taken."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def cmd(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            return "n/a"
        return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else "n/a"

    commit = cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = cmd(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"])
    envoy = envoy_binary()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (" (+ uncommitted changes in src/)" if dirty not in ("", "n/a") else ""),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": importlib.metadata.version("uvloop"),
        "envoy": cmd([envoy, "--version"]).split("version:")[-1].strip() if envoy else "n/a",
        "haproxy": cmd(["haproxy", "-v"]) if shutil.which("haproxy") else "n/a",
        "loadavg": Path("/proc/loadavg").read_text().split(" ")[0],
    }


METHOD = """\
## Method

- **What runs.** `make bench` → `scripts/bench.sh` → `python -m benchmarks.run`. One upstream echo
  server per protocol (`benchmarks/echo_server.py`: raw uvloop, parses only length prefix, message
  type/seqid or Dubbo header, one write per read), then for each target one proxy at a time:
  direct (no proxy), HAProxy `mode tcp` `nbthread 1`, real Envoy 1.40.0 `--concurrency 1` with
  `thrift_proxy` (Thrift) and `dubbo_proxy` / `generic_proxy` + Dubbo codec (Dubbo), and Aeraki in
  Python (`aeraki proxy`, one worker, `--loop uvloop`; Dubbo also with `multiplexing: true`).
  Configs are in `benchmarks/configs/`; every proxy does comparable routing work (Thrift: match
  method `echo`; Dubbo: match interface + method). Everything listens on 127.0.0.1, free ports.
- **Load.** `benchmarks/loadgen.py`: closed loop, 50 connections, one request in flight each,
  uvloop, in its own process. Default 3 s warm-up + 10 s measured per target, 3 rounds
  interleaved across targets, medians reported (each round starts the proxy afresh).
  Requests are pre-encoded once with the real wire format (`benchmarks/wire.py`): Thrift
  framed strict-binary CALL `echo(string)` with a 100-byte argument and an incrementing seqid
  spliced in; Dubbo 2 Hessian2 request
  `org.apache.dubbo.samples.EchoService.echo(Ljava/lang/String;)` with a 100-char argument and 5
  attachments, incrementing request id. Responses are cut by length prefix; each is checked by
  its REPLY type / status 20 and the id it answers (mismatches count as errors).
  Bounded in time (warm-up + window) and count, aborts after 5 s without a response.
- **Real bytes.** At start a real client library calls the echo server directly: thriftpy2
  (Thrift) and dubbo-ssl-python (Dubbo). Before each proxy's run the generator's exact request
  is sent once through it; for Thrift also a thriftpy2 call through the proxy.
- **CPU pinning (2-core box).** Proxy (HAProxy/Envoy/Aeraki, all threads) on **cpu0**; load
  generator and echo server on **cpu1** (`sched_setaffinity` before exec). "direct" therefore
  runs generator and server on one core. The *generator ceiling* run moves the echo server to
  cpu0 so the generator has cpu1 to itself.
- **Metrics.** req/s and p50/p99 from the generator over the measured window. *Proxy CPU µs/req*
  = utime+stime of the proxy process (all threads, children included) from `/proc/<pid>/stat`,
  sampled by the generator exactly at the window edges, divided by requests completed in the
  window; the same for the echo server and the generator itself (`getrusage`). It is less
  noise-prone than req/s. RSS = VmRSS at the end of the window. *core0/core1 busy* = non-idle
  share of each core during the window from `/proc/stat`: ~100% on cpu1 means the load side, not
  the proxy, limited the rate (then compare CPU µs/req, not req/s); busy beyond the benchmark's
  own processes means something else was running on the machine: *other load* is that excess,
  in % of one core (rows with high other load are the least trustworthy).
- **Caveats.** A 2-vCPU VM: syscalls and wakeups are expensive here (each request costs ≥ 4
  syscalls per hop), absolute numbers are low and vary between runs by 10–30%; the machine may be
  shared with other work (see loadavg). Closed loop with 50 connections measures each proxy at
  saturation of *its own* core or of the load core, whichever comes first.
"""


def write_results(
    path: Path,
    rows: list[Row],
    ceilings: dict[str, Any],
    checks: list[str],
    s: Settings,
    info: dict[str, str],
) -> None:
    """Rewrite RESULTS.md: header + method, then this run, then earlier runs (newest first)."""
    marker = "## Runs (newest first)"
    older = ""
    if path.is_file():
        text = path.read_text()
        if marker in text:
            older = text.split(marker, 1)[1].strip("\n")
    run = [
        f"### {info['date']} — commit {info['commit']}\n",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}; "
        f"Python {info['python']}, uvloop {info['uvloop']}, Envoy {info['envoy']}, "
        f"{info['haproxy']}; 1-min loadavg at start {info['loadavg']}.\n",
        "Client-library checks:\n",
        *[f"- {c}" for c in checks],
        table(rows, s),
        ceiling_text(ceilings, s),
        "",
    ]
    header = (
        "# Benchmark results: Aeraki in Python vs Envoy, HAProxy and direct\n\n"
        "Rewritten by `make bench` (`benchmarks/run.py`): the method below, then one section per "
        "run, newest first.\n\n"
    )
    path.write_text(
        header
        + METHOD
        + "\n"
        + marker
        + "\n\n"
        + "\n".join(run)
        + ("\n" + older + "\n" if older else "")
    )


def main() -> int:
    s = Settings()
    if os.cpu_count() is not None and max(s.proxy_cpu, s.load_cpu) >= (os.cpu_count() or 1):
        print("bench: needs at least 2 CPUs (set BENCH_PROXY_CPU/BENCH_LOAD_CPU)", file=sys.stderr)
        return 2
    info = machine()
    print(f"bench: {info}", flush=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aeraki-bench-") as tmp:
        rows, ceilings, checks = measure(s, Path(tmp))
    print(table(rows, s))
    print(ceiling_text(ceilings, s))
    subprocess.run([PY, "-m", "benchmarks.metrics_cost"], check=False)  # µs/request of metrics
    subprocess.run([PY, "-m", "benchmarks.tracing_cost"], check=False)  # µs/request of tracing
    results = Path(os.environ.get("BENCH_RESULTS", HERE / "RESULTS.md"))
    if os.environ.get("BENCH_NO_WRITE") != "1":
        write_results(results, rows, ceilings, checks, s, info)
        raw = results.with_name("results.json")
        raw.write_text(
            json.dumps(
                {
                    "machine": info,
                    "ceilings": ceilings,
                    "rows": [
                        {
                            "target": r.target.name,
                            "kind": r.target.kind,
                            "na": r.na,
                            "results": r.results,
                        }
                        for r in rows
                    ],
                },
                indent=1,
            )
        )
        print(f"\nwrote {results} and {raw}")
    print(f"bench: done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
