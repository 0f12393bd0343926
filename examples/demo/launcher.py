"""``make demo``: two Thrift and two Dubbo backends, ``aeraki run`` (control plane + proxy), and
a live client, on 127.0.0.1, while the demo edits a MetaRouter: all to v1 → 20/80 → all to v2.

    python -m examples.demo            # what scripts/demo.sh runs

Environment:
    DEMO_SECONDS  how long the client runs (default 30, at least 6; Ctrl-C ends it earlier);
                  the routes change at 1/3 and 2/3 of it
    DEMO_RATE     calls per second on each listener (default 100)
    DEMO_PORTS    "fixed" (default: the ports in examples/demo/manifests, checked free first)
                  or "auto" (free ports, through the demo's copy of the manifests)

Exit code 0 when the run completed (or was ended with Ctrl-C) with no failed call and every
process stopped; 1 when a call failed, something failed to start or died, or the proxy did not
pick up a change; 2 for a bad setting; 143 after SIGTERM.
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
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from examples.demo.client import Traffic
from examples.demo.layout import (
    MANIFESTS,
    DemoLayout,
    LayoutError,
    Phase,
    PortInUseError,
    check_ports_free,
    copy_manifests,
    load_layout,
    load_phases,
    pick_free_ports,
)
from examples.demo.processes import Child, Children, StartError, can_connect
from examples.demo.runstatus import RunLogFollower
from examples.demo.scenario import Scenario

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
DEFAULT_SECONDS = 30.0
MIN_SECONDS = 6.0
MAX_SECONDS = 3600.0
DEFAULT_RATE = 100.0
MAX_RATE = 2000.0
JAVA_READY_TIMEOUT = 60.0
THRIFT_READY_TIMEOUT = 30.0
#: Until ``aeraki run`` shows the proxy in sync with the phase-1 routes.
MESH_READY_TIMEOUT = 30.0
#: MetaRouters of the demo, ``namespace/name`` as the status view names them.
ROUTERS = ("meta-thrift/thrift-sample-server", "meta-dubbo/dubbo-demoservice")
#: Proxy stats printed at the end, per listener and per cluster.
LISTENER_STATS = ("request", "response_success", "response_error", "cx_total")
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


def _prepare_manifests(work: Path, ports_mode: str) -> tuple[DemoLayout, Path]:
    """The demo's manifest directory (a copy: the demo rewrites routes.yaml) and its layout."""
    layout = load_layout(MANIFESTS)
    directory = work / "manifests"
    if ports_mode == "fixed":
        check_ports_free(layout.ports())
        copy_manifests(directory)
        return layout, directory
    old = sorted(layout.ports())
    mapping = dict(zip(old, pick_free_ports(len(old)), strict=True))
    copy_manifests(directory, mapping)
    return load_layout(directory, admin_port=mapping[layout.admin_port]), directory


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
        return _admin_get(admin_port, "/ready", timeout=1.0).strip() == b"LIVE"
    except OSError:
        return False


def _start_backends(children: Children, layout: DemoLayout) -> None:
    """Every backend at once, then wait for each to accept connections."""
    started = []
    for b in layout.backends:
        argv = _java_argv(b.port, b.label) if b.kind == "dubbo" else _thrift_argv(b.port, b.label)
        started.append((b, children.spawn(b.name, argv, b.port)))
    for b, child in started:
        timeout = JAVA_READY_TIMEOUT if b.kind == "dubbo" else THRIFT_READY_TIMEOUT
        what = f"{b.kind} server {b.label} on {LOOPBACK}:{b.port}"
        children.wait_ready(
            child, functools.partial(can_connect, b.port), timeout=timeout, what=what
        )


def _start_mesh(
    children: Children,
    layout: DemoLayout,
    directory: Path,
    first: Phase,
    follower: RunLogFollower,
) -> Child:
    """``aeraki run DIR``; returns once its proxy is ready and ACKed the phase-1 routes."""
    argv = [sys.executable, "-m", "aeraki.cli", "--log-level", "info", "run", str(directory)]
    argv += ["--admin-port", str(layout.admin_port)]
    child = children.spawn("aeraki-run", argv, layout.admin_port)
    follower.path = child.log_path
    follower.start()

    def in_force() -> bool:
        status = follower.latest
        return (
            status is not None and status.applies(first.name, ROUTERS) and _ready(layout.admin_port)
        )

    children.wait_ready(
        child,
        in_force,
        timeout=MESH_READY_TIMEOUT,
        what=f"the proxy in sync with the {first.name} routes (and admin /ready)",
    )
    return child


def _banner(out: TextIO, children: Children, layout: DemoLayout, directory: Path) -> None:
    lines = [f"Running on {LOOPBACK}:"]
    for child in children.started:
        if child.name == "aeraki-run":
            where = ", ".join(f":{s.port} {s.kind}" for s in layout.services)
            what = f"aeraki run {directory} (control plane + proxy)"
        else:
            where = f"{LOOPBACK}:{child.port}"
            kind = "Java Dubbo provider" if child.argv[0] == "java" else "thriftpy2 Echo server"
            what = f"{kind}, answers {child.name.rsplit('-', 1)[-1]}"
        lines.append(f"  {child.name:<13} pid {child.pid:<7} {where:<26} {what}")
    admin = f"http://{LOOPBACK}:{layout.admin_port}"
    lines.append(f"  {'admin':<13} {admin}/stats  (also /stats?format=json, /clusters, /ready)")
    run_log = children.log_dir / "aeraki-run.log"
    lines.append(f"  {'status view':<13} tail -f {run_log}  (aeraki run's live status, in its log)")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _plan(out: TextIO, phases: list[Phase], seconds: float, directory: Path) -> None:
    lines = [f"Scenario ({seconds:g} s; DEMO_SECONDS to change), both MetaRouters at once:"]
    for i, phase in enumerate(phases):
        at = seconds * i / len(phases)
        how = "in force from the start" if i == 0 else f"written over {directory}/routes.yaml"
        lines.append(
            f"  at {at:4.1f} s  phase {phase.number} {phase.name:<12} {phase.describe():<18} "
            f"({how}; {phase.path.relative_to(REPO_ROOT)})"
        )
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
            lines.append(f"  listener {prefix.removeprefix('meta_protocol.')}: {values}")
    for name in sorted(stats):
        if name.startswith("cluster.outbound|") and name.endswith(".upstream_rq_total"):
            if not stats[name]:
                continue
            prefix = name.removesuffix(".upstream_rq_total")
            values = " ".join(f"{s}={stats.get(f'{prefix}.{s}', 0)}" for s in CLUSTER_STATS)
            lines.append(f"  cluster  {prefix.removeprefix('cluster.')}: {values}")
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
        seconds=_env_float("DEMO_SECONDS", DEFAULT_SECONDS, MIN_SECONDS, MAX_SECONDS),
        rate=_env_float("DEMO_RATE", DEFAULT_RATE, 1.0, MAX_RATE),
        ports_mode=ports_mode,
    )


class DemoFailed(RuntimeError):
    """The run went through but did not show what it should (a failed call, no ACK, …)."""


def _demo(out: TextIO, children: Children, settings: Settings) -> int:
    """Start everything, run the scenario, print the results; the exit code (children running)."""
    layout, directory = _prepare_manifests(children.log_dir, settings.ports_mode)
    phases = load_phases(layout)
    ports = {s.kind: s.port for s in layout.services}
    traffic = Traffic(ports, settings.rate, settings.seconds * 2 + 60)
    scenario = Scenario(phases, directory, ROUTERS, traffic, seconds=settings.seconds, out=out)
    follower = RunLogFollower(children.log_dir / "aeraki-run.log", scenario.on_status)
    try:
        out.write("Starting 2 Thrift servers, 2 Dubbo providers, then aeraki run...\n")
        out.flush()
        _start_backends(children, layout)
        _start_mesh(children, layout, directory, phases[0], follower)
        _banner(out, children, layout, directory)
        _plan(out, phases, settings.seconds, directory)
        out.write(
            f"Client: {settings.rate:g} calls/s on one Thrift and one Dubbo connection, held "
            "open throughout (DEMO_RATE to change; Ctrl-C to stop early)\n"
        )
        out.flush()

        def watchdog() -> str | None:
            for c in children.dead():
                code = c.popen.returncode
                return f"{c.name} (pid {c.pid}) exited with code {code}; see {c.log_path}"
            return None

        start = time.monotonic()
        interrupt: KeyboardInterrupt | None = None
        failure: str | None = None
        try:
            failure = scenario.run(watchdog)
        except KeyboardInterrupt as exc:
            interrupt = exc
            out.write("\n")  # past the ^C the terminal echoed
        elapsed = time.monotonic() - start
    finally:
        follower.stop()
    out.write("\n".join(scenario.summary(elapsed)) + "\n")
    out.write("Proxy stats (admin /stats?format=json):\n")
    out.write("\n".join(_proxy_stats(layout)) + "\n")
    snap = scenario.snapshot()
    if snap.failed:
        failure = failure or (
            f"{snap.failed} call(s) failed out of {snap.total() + snap.failed} "
            f"(last: {snap.last_error})"
        )
    if failure is not None:
        raise DemoFailed(failure)
    if isinstance(interrupt, Terminated):
        out.write(f"Stopped early by {interrupt}.\n")
        return 143
    if interrupt is not None:
        out.write("Stopped early by Ctrl-C.\n")
        return 0
    out.write(
        f"Zero failed calls: {snap.total()} calls on connections held open across "
        f"{len(scenario.changes)} route changes.\n"
    )
    return 0


def run(out: TextIO) -> int:
    """The whole demo; returns the exit code. Every child is stopped before it returns."""
    try:
        settings = _settings()
    except SettingError as exc:
        out.write(f"demo: {exc}\n")
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="aeraki-demo-"))
    children = Children(log_dir, REPO_ROOT)
    failure: str | None = None
    code = 1
    try:
        with _signals_as_interrupts():
            code = _demo(out, children, settings)
    except LayoutError as exc:
        out.write(f"demo: {exc}\n")
        code = 2
    except (PortInUseError, StartError, DemoFailed) as exc:
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
