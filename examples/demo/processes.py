"""Child processes of the demo: spawned by us, watched by us, stopped by us, by PID.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the launcher,
which then stops the children in order (proxy first, so no client sees a backend vanish). On
Linux each child also gets PR_SET_PDEATHSIG=SIGTERM: if the launcher is killed outright
(SIGKILL), the kernel still ends its children.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "Children", "StartError"]

#: Seconds between SIGTERM and SIGKILL when stopping a child.
STOP_GRACE = 5.0
#: Pause between readiness probes (a poll interval, not a wait for an event).
POLL_INTERVAL = 0.05
_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A child exited early or never became ready; the message carries its log tail."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    """One process we started, with its log file (stdout and stderr merged)."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, max_bytes: int = 3000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM this PID, SIGKILL after ``grace`` seconds; reap it; return its exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=grace)
        return self.popen.returncode


def can_connect(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Children:
    """Everything the demo started; :meth:`stop_all` stops exactly those PIDs, newest first."""

    def __init__(self, log_dir: Path, cwd: Path) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.started: list[Child] = []
        #: how many processes were ever spawned (``started`` empties at :meth:`stop_all`)
        self.spawned = 0

    def spawn(self, name: str, argv: Sequence[str], port: int) -> Child:
        """Start ``argv`` (no shell) in its own session, output to ``<log_dir>/<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.cwd),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(name, list(argv), popen, log_path, port)
        self.started.append(child)
        self.spawned += 1
        return child

    def wait_ready(
        self,
        child: Child,
        check: Callable[[], bool],
        *,
        timeout: float,
        what: str,
    ) -> None:
        """Poll ``check`` until True; :class:`StartError` if ``child`` dies or time runs out."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / POLL_INTERVAL) + 10):
            if check():
                return
            if not child.alive():
                raise StartError(
                    f"{child.name} (pid {child.pid}) exited with code {child.popen.returncode} "
                    f"before {what} was ready.\n--- last lines of {child.log_path} ---\n"
                    f"{child.log_tail()}"
                )
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        raise StartError(
            f"{child.name} (pid {child.pid}): {what} not ready after {timeout:.0f} s.\n"
            f"--- last lines of {child.log_path} ---\n{child.log_tail()}"
        )

    def dead(self) -> list[Child]:
        """Children that exited on their own."""
        return [c for c in self.started if not c.alive()]

    def stop_all(self) -> list[tuple[Child, int | None]]:
        """Stop every child we started (newest first); return each with its exit code."""
        stopped = []
        for child in reversed(self.started):
            stopped.append((child, child.stop()))
        self.started.clear()
        return stopped
