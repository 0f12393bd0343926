"""Process plumbing for the benchmark: CPU pinning, free ports, bounded waits, PID-scoped stop.

Every process the benchmark uses is a child it started; teardown signals exactly that PID
(SIGTERM, then SIGKILL after a grace period) and never looks processes up by name, so a
failed run cannot leave strays behind nor touch anything else on the machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
STOP_GRACE = 5.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the kernel considered free a moment ago on 127.0.0.1."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def spawn(
    argv: Sequence[str], cpu: int | None, log: Path, *, capture_stdout: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``argv`` pinned to ``cpu`` *before* exec, so every thread it creates inherits it.

    Output goes to ``log``; with ``capture_stdout`` stdout is a pipe (for a READY line).
    """

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    with open(log, "wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE if capture_stdout else out,
            stderr=out if capture_stdout else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=pin,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM this PID, wait, SIGKILL if it lingers. Safe on an already exited process."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_GRACE)


def can_connect(port: int) -> bool:
    """True when a TCP connect to 127.0.0.1:port succeeds now."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """True when GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen[bytes]
) -> None:
    """Poll ``check`` (bounded by time and attempts); fail fast if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 10):
        if check():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s")


def log_tail(log: Path, n: int = 2000) -> str:
    """Last ``n`` characters of a process log, for error messages."""
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""
