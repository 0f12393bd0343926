"""Process plumbing for test peers: free ports, bounded readiness polls, PID-scoped teardown.

Every peer runs as a real child process that *we* started. Teardown signals exactly that PID
(SIGTERM, then SIGKILL after a bounded grace period) and never looks processes up by name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[3]
TOOLS_DIR = REPO_ROOT / ".tools"

#: How long a peer may take to accept connections after spawn (JVM and Envoy are the slow ones).
DEFAULT_READY_TIMEOUT = 30.0
#: Pause between readiness probes. A poll interval, not a wait for an event.
POLL_INTERVAL = 0.02
#: Grace period between SIGTERM and SIGKILL at teardown.
STOP_GRACE = 5.0


class PeerStartError(RuntimeError):
    """A peer process exited early or never became ready; the message carries its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free on ``host`` a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """Return ``n`` distinct free ports (all sockets are held open until every port is picked)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def can_connect(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def poll_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval: float = POLL_INTERVAL,
) -> None:
    """Call ``check`` until it returns True, bounded by ``timeout`` seconds and an attempt count.

    ``alive`` (optional) is consulted between attempts so a crashed peer fails fast.
    Raises :class:`TimeoutError` (or :class:`PeerStartError` when ``alive`` turns False).
    """
    deadline = time.monotonic() + timeout
    max_attempts = int(timeout / interval) + 10
    for _ in range(max_attempts):
        if check():
            return
        if alive is not None and not alive():
            raise PeerStartError(f"{what}: process exited before becoming ready")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    raise TimeoutError(f"{what}: not ready after {timeout:.1f}s")


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float = DEFAULT_READY_TIMEOUT,
    alive: Callable[[], bool] | None = None,
    what: str = "peer",
) -> None:
    """Poll a TCP connect to ``host:port`` until it succeeds (bounded)."""
    poll_until(
        lambda: can_connect(host, port),
        timeout=timeout,
        what=f"{what} on {host}:{port}",
        alive=alive,
    )


@dataclass
class PeerProcess:
    """A child process we spawned, with its log file (stdout+stderr merged)."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    host: str = LOOPBACK
    port: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM this PID, SIGKILL after ``grace`` seconds; return the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=grace)
        return self.popen.returncode


class ProcessGroup:
    """Owns the peers started through it; :meth:`stop_all` stops exactly those PIDs."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[PeerProcess] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> PeerProcess:
        """Start ``argv`` (no shell) with stdout/stderr in a log file under ``log_dir``."""
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=str(cwd) if cwd else None,
            )
        proc = PeerProcess(name, list(argv), popen, log_path, host, port)
        self.procs.append(proc)
        return proc

    def spawn_listening(
        self,
        name: str,
        make_argv: Callable[[int], Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        attempts: int = 3,
        ready: Callable[[PeerProcess], Callable[[], bool]] | None = None,
    ) -> PeerProcess:
        """Spawn a server on a fresh free port and wait until it accepts connections.

        Retries on a new port (at most ``attempts`` times) when the process dies early, which
        covers the small race between picking a free port and the child binding it.
        ``ready`` may supply a custom readiness check (default: TCP connect to the port).
        """
        last: Exception | None = None
        for _ in range(attempts):
            port = free_port()
            proc = self.spawn(name, make_argv(port), env=env, cwd=cwd, port=port)
            check = ready(proc) if ready else functools.partial(can_connect, LOOPBACK, port)
            try:
                poll_until(
                    check,
                    timeout=ready_timeout,
                    what=f"{name} on {LOOPBACK}:{port}",
                    alive=proc.alive,
                )
                return proc
            except (PeerStartError, TimeoutError) as exc:
                proc.stop()
                last = PeerStartError(f"{exc}\n--- {proc.log_path} ---\n{proc.log_tail()}")
                if isinstance(exc, TimeoutError):
                    break
        assert last is not None
        raise last

    def stop(self, proc: PeerProcess) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        # Reverse start order: proxies (started last) go first, backends last.
        while self.procs:
            self.procs.pop().stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@contextlib.contextmanager
def process_group(log_dir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(log_dir)
    try:
        yield group
    finally:
        group.stop_all()
