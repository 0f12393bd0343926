"""Active TCP health checks against real loopback servers; thresholds with scripted results."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from aeraki.proxy.config import HealthCheckConfig, OutlierConfig, SocketAddress
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.health_check import TcpHealthChecker, check_tcp
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.outcome import Outcome
from aeraki.proxy.upstream.outlier import OutlierDetector
from tests.proxy.upstream.test_outlier import FakeClock

WAIT = 5.0


def _config(**values: object) -> HealthCheckConfig:
    base: dict[str, object] = {
        "timeout": 1.0,
        "interval": 0.02,
        "unhealthy_threshold": 2,
        "healthy_threshold": 2,
    }
    return HealthCheckConfig(**(base | values))  # type: ignore[arg-type]


class Server:
    """A loopback server answering every read with ``reply`` (``None``: accept, stay mute);
    ``close`` also closes the connections it accepted."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> Server:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while await reader.read(100):
                if self.reply is not None:
                    writer.write(self.reply)
        finally:
            self.writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.writers):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    server = await Server(b"xxPONGyyOKzz").start()
    yield server
    await server.close()


async def test_connect_only_passes_on_a_listener_and_fails_on_a_closed_port(
    echo_server: Server, free_port: int
) -> None:
    assert await check_tcp("127.0.0.1", echo_server.port, _config())
    assert not await check_tcp("127.0.0.1", free_port, _config())


async def test_payloads_must_come_back_in_order(echo_server: Server) -> None:
    port = echo_server.port
    assert await check_tcp("127.0.0.1", port, _config(send=b"PING", receive=(b"PONG", b"OK")))
    assert not await check_tcp(
        "127.0.0.1", port, _config(send=b"PING", receive=(b"OK", b"PONG"), timeout=0.2)
    )


async def test_a_mute_server_times_out() -> None:
    mute = await Server(None).start()
    try:
        config = _config(send=b"PING", receive=(b"PONG",), timeout=0.1)
        assert not await check_tcp("127.0.0.1", mute.port, config)
    finally:
        await mute.close()


def _checker(**values: object) -> tuple[TcpHealthChecker, Host, list[int]]:
    changes: list[int] = []
    checker = TcpHealthChecker(_config(**values), ClusterStats(), lambda: changes.append(1))
    host = Host(SocketAddress("127.0.0.1", 1))
    checker.set_hosts([host])
    return checker, host, changes


def test_new_host_waits_for_its_first_check_which_alone_decides() -> None:
    checker, host, changes = _checker(healthy_threshold=3)
    assert host.failed_active_hc
    assert not host.healthy
    checker.record(host, True)
    assert host.healthy
    assert changes == [1]
    assert checker.stats.health_check_healthy == 1


def test_thresholds_flip_the_flag() -> None:
    checker, host, changes = _checker(unhealthy_threshold=2, healthy_threshold=3)
    checker.record(host, True)
    checker.record(host, False)
    checker.record(host, True)  # the failure streak restarts
    checker.record(host, False)
    assert host.healthy
    checker.record(host, False)
    assert not host.healthy
    assert host.health_flags == "/failed_active_hc"
    checker.record(host, True)
    checker.record(host, True)
    assert not host.healthy
    checker.record(host, True)
    assert host.healthy
    assert len(changes) == 3
    stats = checker.stats
    assert (stats.health_check_attempt, stats.health_check_failure) == (8, 3)


def test_a_passed_check_readmits_an_ejected_host() -> None:
    stats = ClusterStats()
    config = OutlierConfig(consecutive_5xx=1, max_ejection_percent=100)
    detector = OutlierDetector(config, stats, lambda: None, scheduler=FakeClock())
    host = Host(SocketAddress("127.0.0.1", 1))
    detector.set_hosts([host])
    checker = TcpHealthChecker(_config(), stats, lambda: None, on_success=detector.uneject)
    checker.set_hosts([host])
    checker.record(host, True)
    host.report(Outcome.ERROR_RESPONSE)
    assert host.failed_outlier_check
    assert not host.healthy
    checker.record(host, True)
    assert host.healthy
    assert not host.failed_outlier_check


async def test_running_checker_follows_a_server_going_down_and_up() -> None:
    server = await Server(None).start()
    port = server.port
    flipped = asyncio.Event()
    checker = TcpHealthChecker(_config(), ClusterStats(), flipped.set)
    host = Host(SocketAddress("127.0.0.1", port))
    checker.set_hosts([host])
    checker.start()
    try:
        await asyncio.wait_for(flipped.wait(), WAIT)
        assert host.healthy
        flipped.clear()
        await server.close()
        await asyncio.wait_for(flipped.wait(), WAIT)
        assert not host.healthy
        assert checker.checks[host].failures >= 2
        flipped.clear()
        server = await Server(None).start(port)
        await asyncio.wait_for(flipped.wait(), WAIT)
        assert host.healthy
    finally:
        checker.stop()
        await server.close()
    assert checker.checks == {}
