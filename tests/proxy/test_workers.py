"""The supervisor of ``aeraki proxy --workers N`` with real child processes.

The workers here are small Python scripts speaking the supervisor's channel protocol (one
JSON line, then the open socket), so each lifecycle case — dies at start, dies after start,
ignores SIGTERM — is one real process doing exactly that. The real worker (``serve_worker``
around a ``ProxyServer``) is run in-process for the orphan case; whole ``aeraki proxy
--workers`` runs with real peers are in ``tests/integration/test_proxy_workers.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aeraki.errors import ConfigError
from aeraki.proxy import workers
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.config import ProxyConfig
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.workers import Supervisor, WorkerStartError, check_shareable, serve_worker

#: A stand-in worker: behaves as ``MODE`` says, reporting on ``--worker-channel``.
FAKE_WORKER = """
import json, os, signal, socket, sys, time
args = sys.argv[1:]
channel = socket.socket(fileno=int(args[args.index("--worker-channel") + 1]))
mode, marker = args[0], args[1]
index = args[args.index("--worker-index") + 1]
if mode == "exit-at-start" or (mode == "exit-at-start-if-1" and index == "1"):
    sys.exit(3)
open(marker + "." + index + ".pid", "w").write(str(os.getpid()))
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
channel.sendall(json.dumps({"admin_port": None, "pid": os.getpid()}).encode() + b"\\n")
if mode == "exit-once" and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(4)
channel.recv(1)  # until the supervisor goes (or a signal ends us)
"""


def _config(port: int = 0, admin: bool = False) -> ProxyConfig:
    listener = {
        "name": "l1",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "aeraki.meta_protocol_proxy",
                        "typed_config": {
                            "@type": "type.googleapis.com/"
                            "aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy",
                            "stat_prefix": "l1",
                            "protocol": {
                                "name": "thrift",
                                "codec": {"name": "aeraki.meta_protocol.codec.thrift"},
                            },
                            "route_config": {"name": "r", "routes": []},
                        },
                    }
                ]
            }
        ],
    }
    raw: dict[str, object] = {"static_resources": {"listeners": [listener], "clusters": []}}
    if admin:
        raw["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    return bootstrap_from_dict(raw)


def test_port_zero_cannot_be_shared() -> None:
    with pytest.raises(ConfigError, match="listener l1: port 0 cannot be shared"):
        check_shareable(_config(0))
    check_shareable(_config(15000))


@pytest.fixture
def fake_argv(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    return [sys.executable, str(script)]


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "RESTART_DELAY", 0.01)
    monkeypatch.setattr(workers, "KILL_GRACE", 0.5)


def _supervisor(argv: list[str], mode: str, tmp_path: Path, count: int = 2) -> Supervisor:
    return Supervisor(
        _config(15000),
        [*argv, mode, str(tmp_path / "marker")],
        count,
        drain_timeout=0.5,
    )


@pytest.fixture
async def stopper() -> AsyncIterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        await supervisor.stop()


async def test_a_worker_dying_at_start_fails_the_start(
    fake_argv: list[str], tmp_path: Path, stopper: list[Supervisor]
) -> None:
    supervisor = _supervisor(fake_argv, "exit-at-start", tmp_path)
    stopper.append(supervisor)
    with pytest.raises(WorkerStartError, match=r"worker [01] exited with status 3 before"):
        await supervisor.start()
    assert supervisor.stopping
    assert supervisor.store_path is not None
    assert not supervisor.store_path.exists()


async def test_the_workers_that_started_are_stopped_when_another_cannot(
    fake_argv: list[str], tmp_path: Path, stopper: list[Supervisor]
) -> None:
    supervisor = _supervisor(fake_argv, "exit-at-start-if-1", tmp_path)
    stopper.append(supervisor)
    with pytest.raises(WorkerStartError, match=r"worker 1 exited with status 3 before"):
        await supervisor.start()
    started = int((tmp_path / "marker.0.pid").read_text())
    assert _gone(started)  # stopped and reaped by the supervisor, not left serving


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a worker this test's supervisor started (and should have reaped)
    except ProcessLookupError:
        return True
    return False


async def test_a_worker_dying_later_is_replaced(
    fake_argv: list[str], tmp_path: Path, stopper: list[Supervisor]
) -> None:
    supervisor = _supervisor(fake_argv, "exit-once", tmp_path, count=1)
    stopper.append(supervisor)
    # the first worker reports, then exits: start() sees it started, the watcher replaces it
    await supervisor.start()
    first = supervisor.workers[0].pid

    # the first worker's watcher ends once it has adopted the replacement
    await asyncio.wait_for(asyncio.gather(*list(supervisor.watchers)), 20)
    assert supervisor.workers[0].pid != first
    assert supervisor.restarts_total == 1
    assert supervisor.workers[0].restarts == 1  # died young: counts towards the back-off
    assert supervisor.workers[0].process.returncode is None


async def test_a_dead_worker_leaves_the_admin_view_until_replaced(
    fake_argv: list[str],
    tmp_path: Path,
    stopper: list[Supervisor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "RESTART_DELAY", 60.0)  # the replacement waits: stop() ends it
    supervisor = _supervisor(fake_argv, "exit-once", tmp_path, count=1)
    stopper.append(supervisor)
    await supervisor.start()
    await asyncio.wait_for(supervisor.workers[0].process.wait(), 20)
    for _ in range(100):  # the watcher runs on a later loop turn than this wait's return
        if not supervisor.workers:
            break
        await asyncio.sleep(0)
    assert supervisor.workers == {}  # pages now answer for the workers alive: none
    assert await supervisor.stop() is True
    assert supervisor.restarts_total == 0  # stopped during the back-off: nothing spawned


async def test_stop_ends_every_worker_and_removes_the_store(
    fake_argv: list[str], tmp_path: Path, stopper: list[Supervisor]
) -> None:
    supervisor = _supervisor(fake_argv, "serve", tmp_path)
    stopper.append(supervisor)
    await supervisor.start()
    assert supervisor.store_path is not None
    assert supervisor.store_path.exists()
    processes = [w.process for w in supervisor.workers.values()]
    assert len({p.pid for p in processes}) == 2
    assert await supervisor.stop() is True
    assert all(p.returncode is not None for p in processes)
    assert not supervisor.store_path.exists()
    assert supervisor.restarts_total == 0  # stopping is not a crash


async def test_a_worker_ignoring_sigterm_is_killed_after_the_drain(
    fake_argv: list[str], tmp_path: Path, stopper: list[Supervisor]
) -> None:
    supervisor = _supervisor(fake_argv, "ignore-term", tmp_path, count=1)
    stopper.append(supervisor)
    await supervisor.start()
    process = supervisor.workers[0].process
    assert await supervisor.stop() is False
    assert process.returncode == -9


async def test_serve_worker_reports_then_leaves_when_the_supervisor_goes() -> None:
    server = ProxyServer(_config(0, admin=True), drain_timeout=0.5)
    ours, theirs = socket.socketpair()
    task = asyncio.get_running_loop().create_task(serve_worker(server, theirs.detach(), 3))
    reader, writer = await asyncio.open_connection(sock=ours)
    report = json.loads(await asyncio.wait_for(reader.readline(), 20))
    assert server.admin is not None
    assert report["admin_port"] == server.admin.port
    assert server.listeners[0].server is not None  # serving
    writer.close()  # the supervisor is gone
    await asyncio.wait_for(task, 20)
    assert server.is_draining
