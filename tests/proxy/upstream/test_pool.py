"""Host pools over real loopback sockets: limits, the pending queue, failures."""

from __future__ import annotations

import asyncio

import pytest

from aeraki.codec.api import ErrorType
from aeraki.proxy.config import SocketAddress
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.connection import UpstreamConnection
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.pool import HostPool, PoolOverflow
from aeraki.testing.fake_codec import FakeCodec
from tests.proxy.harness import FakeUpstream


class Waiter:
    """Records how the pool answered."""

    def __init__(self) -> None:
        self.outcome: asyncio.Future[UpstreamConnection] = (
            asyncio.get_running_loop().create_future()
        )

    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        self.outcome.set_result(connection)

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        self.outcome.set_exception(ConnectionError(f"{error_type.name}: {message}"))


def _pool(port: int, *, max_connections: int, max_pending: int = 1024) -> HostPool:
    return HostPool(
        Host(SocketAddress("127.0.0.1", port)),
        FakeCodec,
        ClusterStats(),
        multiplexed=False,
        connect_timeout=2.0,
        max_connections=max_connections,
        max_pending=max_pending,
    )


async def test_requests_beyond_the_connection_limit_wait_for_a_release() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_connections=2)
    try:
        waiters = [Waiter() for _ in range(5)]
        for waiter in waiters:
            assert pool.acquire(waiter) is None
        assert pool.connecting == 2  # only as many connects as the limit allows
        first = await asyncio.wait_for(waiters[0].outcome, 5)
        second = await asyncio.wait_for(waiters[1].outcome, 5)
        assert not waiters[2].outcome.done()
        pool.release(first)
        assert await asyncio.wait_for(waiters[2].outcome, 5) is first
        pool.release(second)
        pool.release(first)
        assert {await waiters[3].outcome, await waiters[4].outcome} == {first, second}
        assert len(pool.connections) == 2
        assert pool.stats.upstream_rq_pending_active == 0
    finally:
        pool.close()
        upstream.close()


async def test_full_pending_queue_overflows() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_connections=1, max_pending=1)
    try:
        first, queued = Waiter(), Waiter()
        pool.acquire(first)
        await asyncio.wait_for(first.outcome, 5)
        pool.acquire(queued)  # waits for the one connection
        with pytest.raises(PoolOverflow):
            pool.acquire(Waiter())
        assert pool.stats.upstream_cx_overflow == 1
    finally:
        pool.close()
        upstream.close()


async def test_connect_failure_answers_every_waiter_when_nothing_can_serve_them(
    free_port: int,
) -> None:
    pool = _pool(free_port, max_connections=1)
    waiters = [Waiter() for _ in range(3)]
    for waiter in waiters:
        pool.acquire(waiter)
    for waiter in waiters:
        with pytest.raises(ConnectionError, match="remote connection failure"):
            await asyncio.wait_for(waiter.outcome, 5)
    assert pool.stats.upstream_cx_connect_fail == 1
    assert pool.stats.upstream_rq_pending_active == 0
    pool.close()
