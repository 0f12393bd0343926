"""DownstreamConnection's idle clock, on a clock the test turns by hand.

Only a connection with an idle timeout reads the loop's clock per read (the plain request
path does not pay for it); its reads must keep it open, its silence must close it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from aeraki.codec.api import MessageType
from aeraki.proxy.connection import DownstreamConnection
from aeraki.proxy.listener import ListenerRuntime
from aeraki.proxy.upstream.cluster import ClusterManager
from aeraki.testing.fake_codec import build_frame
from tests.proxy.harness import cluster, listener, route


class _Clock:
    """The loop as the connection sees it: a hand-turned clock and timers fired by hand;
    ``call_soon`` (write coalescing) is the real loop's."""

    def __init__(self, *, readable: bool = True) -> None:
        self.now = 100.0
        self.readable = readable
        self.timers: list[tuple[float, Callable[[], object]]] = []
        self._loop = asyncio.get_running_loop()

    def time(self) -> float:
        assert self.readable, "the connection read the clock"
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        self.timers.append((self.now + delay, callback))
        return self._loop.call_later(3600, lambda: None)  # a real handle, never due

    def call_soon(self, callback: Callable[[], object]) -> asyncio.Handle:
        return self._loop.call_soon(callback)

    def advance_to(self, moment: float) -> None:
        """Set the clock and run the timers due by then."""
        self.now = moment
        due = [t for t in self.timers if t[0] <= moment]
        self.timers = [t for t in self.timers if t[0] > moment]
        for _, callback in due:
            callback()


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: bytes) -> None:
        """Writes are not looked at here."""

    def abort(self) -> None:
        self.aborted = True


def _connection(clock: _Clock, idle_timeout: float | None) -> tuple[DownstreamConnection, Any]:
    config = listener(route("c1"), clusters=[cluster("c1", 1)], idle_timeout=idle_timeout)
    runtime = ListenerRuntime(config.listeners[0], ClusterManager(config.clusters))
    connection = DownstreamConnection(runtime)
    connection._loop = cast(asyncio.AbstractEventLoop, clock)
    transport = _Transport()
    connection.connection_made(cast(asyncio.Transport, transport))
    return connection, transport


#: The first bytes of a request: a read that completes no message.
_PARTIAL = build_frame(MessageType.REQUEST, 1, {"a": "b"})[:3]


async def test_reads_keep_an_idle_timeout_connection_open() -> None:
    clock = _Clock()
    connection, transport = _connection(clock, idle_timeout=10.0)
    clock.advance_to(108.0)
    connection.data_received(_PARTIAL)
    clock.advance_to(110.0)  # the first check: 8 s since the read, not idle yet
    assert not transport.aborted
    clock.advance_to(117.9)
    assert not transport.aborted
    clock.advance_to(118.0)  # 10 s of silence
    assert transport.aborted
    assert connection.listener.stats.idle_timeout == 1


async def test_silence_closes_an_idle_timeout_connection() -> None:
    clock = _Clock()
    connection, transport = _connection(clock, idle_timeout=10.0)
    clock.advance_to(110.0)
    assert transport.aborted
    assert connection.listener.stats.idle_timeout == 1


async def test_without_idle_timeout_reads_do_not_read_the_clock() -> None:
    clock = _Clock(readable=False)
    connection, transport = _connection(clock, idle_timeout=None)
    connection.data_received(_PARTIAL)
    assert clock.timers == []
    assert not transport.aborted
