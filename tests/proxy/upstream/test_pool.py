"""Host pools over real loopback sockets: circuit breakers, the pending queue, failures,
connections capped at a number of requests."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aeraki.codec.api import ErrorType
from aeraki.proxy.config import CircuitBreakerConfig, SocketAddress
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.connection import UpstreamConnection
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.limits import ClusterLimits
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


def _limits(**thresholds: int) -> ClusterLimits:
    return ClusterLimits(CircuitBreakerConfig(**thresholds), ClusterStats())  # type: ignore[arg-type]


def _pool(
    port: int, limits: ClusterLimits | None = None, *, multiplexed: bool = False, **thresholds: int
) -> HostPool:
    limits = limits or _limits(**thresholds)
    return HostPool(
        Host(SocketAddress("127.0.0.1", port)),
        FakeCodec,
        limits.stats,
        multiplexed=multiplexed,
        connect_timeout=2.0,
        limits=limits,
    )


async def test_requests_beyond_the_connection_limit_wait_for_a_release() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_connections=2)
    try:
        waiters = [Waiter() for _ in range(5)]
        for waiter in waiters:
            assert pool.acquire(waiter) is None
        assert pool.connecting == 2  # only as many connects as the limit allows
        assert pool.stats.upstream_cx_overflow == 3  # Envoy counts each refused connect
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
        assert pool.limits.connections == 2
    finally:
        pool.close()
        upstream.close()


async def test_full_pending_queue_overflows_at_once() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_connections=1, max_pending_requests=1)
    try:
        first, queued = Waiter(), Waiter()
        pool.acquire(first)
        await asyncio.wait_for(first.outcome, 5)
        pool.acquire(queued)  # waits for the one connection
        with pytest.raises(PoolOverflow, match="too many pending requests"):
            pool.acquire(Waiter())
        assert pool.stats.upstream_rq_pending_overflow == 1
        assert pool.stats.upstream_rq_pending_active == 1
    finally:
        pool.close()
        upstream.close()


async def test_max_requests_refuses_while_that_many_are_in_flight() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_requests=2)
    try:
        pool.stats.upstream_rq_active = 2  # what ActiveRequest keeps for requests sent
        with pytest.raises(PoolOverflow, match="too many requests"):
            pool.acquire(Waiter())
        with pytest.raises(PoolOverflow, match="too many requests"):
            pool.acquire_shared(Waiter(), "key")
        assert pool.stats.upstream_rq_pending_overflow == 2
        pool.stats.upstream_rq_active = 1
        waiter = Waiter()
        pool.acquire(waiter)
        assert isinstance(await asyncio.wait_for(waiter.outcome, 5), UpstreamConnection)
    finally:
        pool.close()
        upstream.close()


async def test_connection_limit_is_per_cluster_but_never_starves_a_host() -> None:
    """Two hosts share one breaker of 1 connection: host A holds it; host B's request still
    gets a first connection (Envoy's rule), a second request on B waits for a release."""
    a, b = await FakeUpstream("a").start(), await FakeUpstream("b").start()
    limits = _limits(max_connections=1)
    pool_a, pool_b = _pool(a.port, limits), _pool(b.port, limits)
    try:
        on_a = Waiter()
        pool_a.acquire(on_a)
        await asyncio.wait_for(on_a.outcome, 5)
        assert limits.connections == 1
        on_b, queued_b = Waiter(), Waiter()
        pool_b.acquire(on_b)
        b_connection = await asyncio.wait_for(on_b.outcome, 5)
        pool_b.acquire(queued_b)
        assert pool_b.connecting == 0
        assert not queued_b.outcome.done()
        assert limits.connections == 2
        assert limits.stats.upstream_cx_overflow == 2
        pool_b.release(b_connection)
        assert await asyncio.wait_for(queued_b.outcome, 5) is b_connection
    finally:
        pool_a.close()
        pool_b.close()
        a.close()
        b.close()


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
    assert pool.limits.connections == 0
    pool.close()


async def test_exclusive_connection_closes_after_max_requests_per_connection() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_requests_per_connection=3)
    try:
        waiter = Waiter()
        pool.acquire(waiter)
        connection = await asyncio.wait_for(waiter.outcome, 5)
        for _ in range(2):
            pool.release(connection)
            assert pool.acquire(Waiter()) is connection  # reused while under the cap
        pool.release(connection)  # the third exchange ends: closed, not idle
        assert connection.is_closed
        assert pool.idle == []
        assert pool.stats.upstream_cx_max_requests == 1
        assert pool.limits.connections == 0  # counted out at once
        fresh = Waiter()
        assert pool.acquire(fresh) is None
        assert await asyncio.wait_for(fresh.outcome, 5) is not connection
        assert upstream.connections == 2
    finally:
        pool.close()
        upstream.close()


async def test_capped_connection_hands_its_waiter_to_a_replacement() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, max_connections=1, max_requests_per_connection=1)
    try:
        first, queued = Waiter(), Waiter()
        pool.acquire(first)
        connection = await asyncio.wait_for(first.outcome, 5)
        pool.acquire(queued)  # at the connection limit: waits
        pool.release(connection)  # capped: closed, and a replacement is opened for it
        replacement = await asyncio.wait_for(queued.outcome, 5)
        assert replacement is not connection
        assert pool.stats.upstream_cx_overflow == 1  # only the first, queued acquire
    finally:
        pool.close()
        upstream.close()


async def test_multiplexed_connection_is_replaced_after_max_requests_per_connection() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, multiplexed=True, max_requests_per_connection=2)
    try:
        waiter = Waiter()
        assert pool.acquire_shared(waiter, "client") is None
        shared = await asyncio.wait_for(waiter.outcome, 5)  # request 1
        assert pool.acquire_shared(Waiter(), "client") is shared  # request 2: the cap
        assert pool.stats.upstream_cx_max_requests == 1
        assert shared in pool.draining
        assert "client" not in pool.shared
        fresh = Waiter()
        assert pool.acquire_shared(fresh, "client") is None  # a new connection for the key
        assert shared.is_closed  # it had nothing in flight: closed at that event
        assert await asyncio.wait_for(fresh.outcome, 5) is not shared
    finally:
        pool.close()
        upstream.close()


async def test_shared_waiters_count_as_pending_and_overflow() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, multiplexed=True, max_pending_requests=2)
    try:
        waiters = [Waiter(), Waiter()]
        for waiter in waiters:
            assert pool.acquire_shared(waiter, "client") is None
        assert pool.stats.upstream_rq_pending_active == 2
        with pytest.raises(PoolOverflow, match="too many pending requests"):
            pool.acquire_shared(Waiter(), "client")
        pool.cancel(waiters[1])
        assert pool.stats.upstream_rq_pending_active == 1
        await asyncio.wait_for(waiters[0].outcome, 5)
        assert pool.stats.upstream_rq_pending_active == 0
    finally:
        pool.close()
        upstream.close()


async def test_multiplexed_key_without_a_connection_overflows_at_the_limit() -> None:
    upstream = await FakeUpstream("v1").start()
    pool = _pool(upstream.port, multiplexed=True, max_connections=1)
    try:
        first = Waiter()
        pool.acquire_shared(first, "one")
        await asyncio.wait_for(first.outcome, 5)
        with pytest.raises(PoolOverflow, match="too many connections"):
            pool.acquire_shared(Waiter(), "two")
        assert pool.stats.upstream_cx_overflow == 1
    finally:
        pool.close()
        upstream.close()


async def test_connect_failures_of_a_down_host_are_logged_once_per_interval(
    free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that stays down costs one INFO line per interval, not one per request."""
    caplog.set_level(logging.INFO, logger="aeraki.proxy.upstream.pool")
    pool = _pool(free_port)
    for _ in range(5):
        waiter = Waiter()
        assert pool.acquire(waiter) is None
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiter.outcome, 5)
    lines = [r.getMessage() for r in caplog.records if "connect failed" in r.getMessage()]
    assert len(lines) == 1
    assert f"127.0.0.1:{free_port}" in lines[0]
    assert pool.stats.upstream_cx_connect_fail == 5
    pool.close()
