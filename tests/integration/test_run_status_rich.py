# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""``aeraki run`` on a terminal: a real subprocess on a pseudo-terminal draws the rich status
tables, and real thriftpy2 calls through its proxy update the cluster's request counter."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aeraki.control.cli import RUN_NODE_ID
from tests.control.test_runtime import router_yaml, service_yaml, to_subset
from tests.integration.peers.procs import free_ports
from tests.integration.peers.thrift_peer import ThriftServer
from tests.integration.test_control_e2e import (
    THRIFT,
    THRIFT_PORT_NAME,
    thrift_pair,  # noqa: F401  (fixture)
)
from tests.integration.test_run_status import thrift_calls

DEADLINE = 20.0
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")


class Terminal:
    """What a process wrote to the pseudo-terminal, ANSI codes stripped, read by a thread
    so waits are bounded and wake on each new chunk."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""
        self.closed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        raw = b""
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the slave side closed (EIO on Linux)
                chunk = b""
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    return
                raw += chunk
                self.text = ANSI.sub("", raw.decode("utf-8", "replace"))
                self.cond.notify_all()

    def wait_for(self, pattern: str, *, after: int = 0) -> int:
        """The end offset of the first match of ``pattern`` at or after ``after`` (bounded)."""
        regex = re.compile(pattern)
        found: list[int] = []

        def match() -> bool:
            m = regex.search(self.text, after)
            if m:
                found.append(m.end())
            return bool(m) or self.closed

        with self.cond:
            self.cond.wait_for(match, DEADLINE)
            if not found:
                tail = self.text[-3000:]
                raise AssertionError(f"no {pattern!r} on the terminal; last output:\n{tail}")
        return found[0]


def cells(*values: str) -> str:
    """A table row holding ``values`` in adjacent cells."""
    return r"\s*│\s*".join(re.escape(v) for v in values)


@pytest.fixture
def run_on_pty(tmp_path: Path) -> Iterator[tuple[Terminal, subprocess.Popen[bytes]]]:
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="220", LINES="200", TERM="xterm-256color")
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aeraki.control.cli", "run", str(tmp_path), "--poll-ms", "50"],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        yield terminal, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(DEADLINE)
        terminal.thread.join(DEADLINE)
        os.close(master)


def test_rich_table_updates_after_calls(
    tmp_path: Path,
    thrift_pair: tuple[ThriftServer, ThriftServer],
    run_on_pty: tuple[Terminal, subprocess.Popen[bytes]],
) -> None:
    terminal, proc = run_on_pty
    listen_port, dead_port = free_ports(2)
    v1, _ = thrift_pair
    (tmp_path / "thrift.yaml").write_text(
        service_yaml(
            "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, listen_port, v1.port, dead_port
        )
    )
    (tmp_path / "route.yaml").write_text(
        router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v1"))
    )
    v1_cluster = f"outbound|{listen_port}|v1|{THRIFT}"
    endpoint = f"127.0.0.1:{v1.port}"
    # the tables are drawn: cluster with zero counters, our proxy in sync
    terminal.wait_for(r"Clusters \(3\)")  # v1, v2 and the whole service
    terminal.wait_for(cells(RUN_NODE_ID, "sotw", "in sync"))
    mark = terminal.wait_for(cells(v1_cluster, endpoint, "0", "0", "0"))
    assert "Services (1)" in terminal.text
    assert "Clusters (3):" not in terminal.text  # not the plain view
    assert thrift_calls(listen_port, 5) == ["v1"] * 5
    terminal.wait_for(cells(v1_cluster, endpoint, "5", "0", "0"), after=mark)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(DEADLINE) == 0
