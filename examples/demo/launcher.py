"""``make demo``: two Thrift and two Dubbo backends, our proxy, and a live client, on 127.0.0.1.

    python -m examples.demo            # what scripts/demo.sh runs

Environment:
    DEMO_SECONDS  how long the client runs (default 20; Ctrl-C ends it earlier)
    DEMO_RATE     calls per second on each listener (default 100)
    DEMO_PORTS    "fixed" (default: the ports in examples/demo/bootstrap.yaml, checked free
                  first) or "auto" (free ports, through a copy of the bootstrap)

Exit code 0 when the run completed (or was ended with Ctrl-C) and every process stopped;
1 when something failed to start or died, 2 for a bad setting; 143 after SIGTERM.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

import yaml

from examples.demo.client import ClientReport, DemoTargets, run_client, summary_lines
from examples.demo.layout import (
    BOOTSTRAP,
    DemoLayout,
    LayoutError,
    PortInUseError,
    check_ports_free,
    describe_routes,
    expected_behaviour,
    load_layout,
    pick_free_ports,
    remap_ports,
)
from examples.demo.processes import Child, Children, StartError, can_connect

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
DEFAULT_SECONDS = 20.0
MAX_SECONDS = 3600.0
DEFAULT_RATE = 100.0
MAX_RATE = 2000.0
JAVA_READY_TIMEOUT = 60.0
THRIFT_READY_TIMEOUT = 30.0
PROXY_READY_TIMEOUT = 30.0
#: Seconds the proxy may drain after SIGTERM (the client has closed its connections by then).
PROXY_DRAIN = "2"
#: Proxy stats printed at the end, per listener and per cluster.
LISTENER_STATS = ("request", "response_success", "response_error", "route_not_found", "cx_total")
CLUSTER_STATS = ("upstream_rq_total", "upstream_cx_total", "upstream_cx_connect_fail")


class SettingError(ValueError):
    """A DEMO_* environment variable has an unusable value."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C, but exit 143."""


def _env_float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingError(f"{name}={raw} is outside {low:g}..{high:g}")
    return value


def _prepare_bootstrap(layout: DemoLayout, work: Path, ports_mode: str) -> tuple[DemoLayout, Path]:
    """The layout and bootstrap file to run: the shipped one, or a free-port copy."""
    if ports_mode == "fixed":
        check_ports_free(layout.ports())
        return layout, BOOTSTRAP
    old = sorted(layout.ports())
    mapping = dict(zip(old, pick_free_ports(len(old)), strict=True))
    config = remap_ports(layout.config, mapping)
    path = work / "bootstrap.yaml"
    path.write_text(
        f"# {BOOTSTRAP} with free ports (DEMO_PORTS=auto)\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return load_layout(path), path


def _java_argv(port: int, label: str) -> list[str]:
    """The provider command line the integration fixtures use."""
    from tests.integration.peers.dubbo import HESSIAN_JAR, JAVA_OPTS, java_classes_dir

    if shutil.which("java") is None:
        raise StartError("`java` is not on PATH; run `make setup`")
    try:
        classes = java_classes_dir()
    except (RuntimeError, OSError) as exc:
        raise StartError(f"cannot build the Java Dubbo provider: {exc}") from exc
    cp = f"{classes}{os.pathsep}{HESSIAN_JAR}"
    return ["java", *JAVA_OPTS, "-cp", cp, "DubboProvider", str(port), label]


def _thrift_argv(port: int, label: str) -> list[str]:
    module = "tests.integration.peers.thrift_server"
    opts = ["--impl", "thriftpy2", "--transport", "framed", "--protocol", "binary"]
    return [sys.executable, "-m", module, *opts, "--port", str(port), "--label", label]


def _admin_get(port: int, path: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _ready(admin_port: int) -> bool:
    try:
        return _admin_get(admin_port, "/ready", timeout=1.0).strip() != b""
    except OSError:
        return False


def _start_all(children: Children, layout: DemoLayout, bootstrap: Path) -> Child:
    """Backends first (all at once, then wait for each), then the proxy; return the proxy."""
    backends = []
    for b in layout.backends:
        argv = _java_argv(b.port, b.label) if b.kind == "dubbo" else _thrift_argv(b.port, b.label)
        backends.append((b, children.spawn(b.cluster, argv, b.port)))
    for b, child in backends:
        timeout = JAVA_READY_TIMEOUT if b.kind == "dubbo" else THRIFT_READY_TIMEOUT
        what = f"{b.kind} server {b.label} on {LOOPBACK}:{b.port}"
        children.wait_ready(
            child, functools.partial(can_connect, b.port), timeout=timeout, what=what
        )
    argv = [sys.executable, "-m", "aeraki.cli", "--log-level", "warning", "proxy"]
    argv += ["-c", str(bootstrap), "--drain-timeout", PROXY_DRAIN]
    proxy = children.spawn("aeraki-proxy", argv, layout.admin_port)
    children.wait_ready(
        proxy,
        lambda: _ready(layout.admin_port),
        timeout=PROXY_READY_TIMEOUT,
        what=f"proxy admin http://{LOOPBACK}:{layout.admin_port}/ready",
    )
    return proxy


def _banner(
    out: TextIO, children: Children, layout: DemoLayout, bootstrap: Path, log_dir: Path
) -> None:
    shown = bootstrap.relative_to(REPO_ROOT) if bootstrap.is_relative_to(REPO_ROOT) else bootstrap
    lines = [f"Running on {LOOPBACK}:"]
    for child in children.started:
        if child.name == "aeraki-proxy":
            where = f":{layout.thrift_port} thrift, :{layout.dubbo_port} dubbo"
            what = f"aeraki proxy -c {shown}"
        else:
            where = f"{LOOPBACK}:{child.port}"
            kind = "Java Dubbo provider" if child.argv[0] == "java" else "thriftpy2 Echo server"
            what = f"{kind}, answers {child.name.rsplit('-', 1)[-1]}"
        lines.append(f"  {child.name:<13} pid {child.pid:<7} {where:<28} {what}")
    admin = f"http://{LOOPBACK}:{layout.admin_port}"
    lines.append(f"  {'admin':<13} {admin}/stats  (also /stats?format=json, /clusters, /ready)")
    lines.append("Routes:")
    lines += [f"  {line}" for line in describe_routes(layout)]
    lines.append(f"Logs: {log_dir}")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _proxy_stats(layout: DemoLayout) -> list[str]:
    """A few proxy counters from admin /stats?format=json (empty if the proxy is gone)."""
    try:
        stats: dict[str, int] = json.loads(_admin_get(layout.admin_port, "/stats?format=json"))
    except (OSError, ValueError) as exc:
        return [f"  (admin /stats unavailable: {exc})"]
    lines = []
    for name in sorted(stats):
        if name.startswith("meta_protocol.") and name.endswith(".cx_total"):
            prefix = name.removesuffix(".cx_total")
            values = " ".join(f"{s}={stats.get(f'{prefix}.{s}', 0)}" for s in LISTENER_STATS)
            lines.append(f"  listener {prefix.rsplit('.', 1)[-1]:<12} {values}")
    for name in sorted(stats):
        if name.startswith("cluster.") and name.endswith(".upstream_rq_total"):
            prefix = name.removesuffix(".upstream_rq_total")
            values = " ".join(f"{s}={stats.get(f'{prefix}.{s}', 0)}" for s in CLUSTER_STATS)
            lines.append(f"  cluster  {prefix.removeprefix('cluster.'):<12} {values}")
    return lines


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM/SIGHUP raise :class:`Terminated` in the main thread while inside."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop_everything(out: TextIO, children: Children) -> bool:
    """Stop every child by PID with Ctrl-C/SIGTERM ignored meanwhile; True if all stopped."""
    ignored = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stopped = children.stop_all()
    finally:
        for s, h in ignored.items():
            signal.signal(s, h)
    if stopped:
        pids = ", ".join(f"{c.name} {c.pid}" for c, _ in stopped)
        out.write(f"Stopped {len(stopped)} processes (pids: {pids}).\n")
    return all(not c.alive() for c, _ in stopped)


def _verdict(report: ClientReport, targets: DemoTargets) -> str | None:
    """Why the run failed, or None."""
    if report.ended_by.startswith("failure"):
        return report.ended_by.removeprefix("failure: ")
    if report.ended_by == "time":
        for route in targets.routes():
            if not report.answers(route.key):
                return f"no successful answer on {route.title}"
    return None


@dataclass(frozen=True)
class Settings:
    seconds: float
    rate: float
    ports_mode: str


def _settings() -> Settings:
    ports_mode = os.environ.get("DEMO_PORTS", "fixed").strip() or "fixed"
    if ports_mode not in ("fixed", "auto"):
        raise SettingError(f"DEMO_PORTS={ports_mode!r}: use 'fixed' or 'auto'")
    return Settings(
        seconds=_env_float("DEMO_SECONDS", DEFAULT_SECONDS, 1.0, MAX_SECONDS),
        rate=_env_float("DEMO_RATE", DEFAULT_RATE, 1.0, MAX_RATE),
        ports_mode=ports_mode,
    )


def _demo(out: TextIO, children: Children, settings: Settings, layout: DemoLayout) -> int:
    """Start everything, run the client, print the results; the exit code (children running)."""
    weights, methods = expected_behaviour(layout)
    layout, bootstrap = _prepare_bootstrap(layout, children.log_dir, settings.ports_mode)
    out.write("Starting 2 Thrift servers, 2 Dubbo providers and the proxy...\n")
    out.flush()
    _start_all(children, layout, bootstrap)
    _banner(out, children, layout, bootstrap, children.log_dir)
    targets = DemoTargets(layout.thrift_port, layout.dubbo_port, weights, methods)
    out.write(
        f"Client: {settings.rate:g} calls/s per listener for {settings.seconds:g} s "
        "(DEMO_SECONDS / DEMO_RATE to change; Ctrl-C to stop early)\n"
    )
    out.flush()

    def watchdog() -> str | None:
        for c in children.dead():
            return f"{c.name} (pid {c.pid}) exited with code {c.popen.returncode}; see {c.log_path}"
        return None

    report = run_client(
        targets, seconds=settings.seconds, rate=settings.rate, out=out, watchdog=watchdog
    )
    if report.interrupt is not None:
        out.write("\n")  # past the ^C the terminal echoed
    out.write("\n".join(summary_lines(targets, report)) + "\n")
    out.write("Proxy stats (admin /stats?format=json):\n")
    out.write("\n".join(_proxy_stats(layout)) + "\n")
    failure = _verdict(report, targets)
    if failure is not None:
        raise StartError(failure)
    if isinstance(report.interrupt, Terminated):
        out.write(f"Stopped early by {report.interrupt}.\n")
        return 143
    if report.interrupt is not None:
        out.write("Stopped early by Ctrl-C.\n")
    return 0


def run(out: TextIO) -> int:
    """The whole demo; returns the exit code. Every child is stopped before it returns."""
    try:
        settings = _settings()
        layout = load_layout(BOOTSTRAP)
    except (SettingError, LayoutError) as exc:
        out.write(f"demo: {exc}\n")
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="aeraki-demo-"))
    children = Children(log_dir, REPO_ROOT)
    failure: str | None = None
    code = 1
    try:
        with _signals_as_interrupts():
            code = _demo(out, children, settings, layout)
    except LayoutError as exc:
        out.write(f"demo: {exc}\n")
        code = 2
    except (PortInUseError, StartError) as exc:
        failure = str(exc)
    except Terminated as exc:
        out.write(f"\nGot {exc}; stopping.\n")
        code = 143
    except KeyboardInterrupt:
        out.write("\nCtrl-C: stopping.\n")
        code = 0
    finally:
        if not _stop_everything(out, children):
            failure = failure or "some processes did not stop"
    if failure is not None:
        out.write(f"demo FAILED: {failure}\n")
        if children.spawned:
            out.write(f"Logs kept in {log_dir}\n")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    if code == 0:
        out.write("Demo finished.\n")
    return code


def main() -> int:
    return run(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
