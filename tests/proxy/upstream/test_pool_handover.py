"""A burst of waiters that give their connection back at once (one-way requests, one-way
mirrors) is served by a loop, not by one nested call per waiter.

Found by the 5,000-call mirror test (tests/integration/test_load_balancing.py): 1,500 one-way
mirrors queued behind a connecting pool recursed through ``release`` -> ``on_pool_ready``
until ``RecursionError``.
"""

from __future__ import annotations

import asyncio
import sys

from aeraki.codec.api import ErrorType
from aeraki.proxy.config import CircuitBreakerConfig, SocketAddress
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.connection import UpstreamConnection
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.limits import ClusterLimits
from aeraki.proxy.upstream.pool import HostPool
from aeraki.testing.fake_codec import FakeCodec
from tests.proxy.harness import FakeUpstream


class OneWay:
    """Takes the connection and gives it straight back, like a one-way request."""

    def __init__(
        self, pool: HostPool, served: list[UpstreamConnection], done: asyncio.Event, count: int
    ) -> None:
        self.pool = pool
        self.served = served
        self.done = done
        self.count = count

    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        self.served.append(connection)
        if len(self.served) == self.count:
            self.done.set()
        self.pool.release(connection)

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        raise AssertionError(message)


async def test_more_waiters_than_the_stack_is_deep_are_all_served() -> None:
    upstream = await FakeUpstream("v1").start()
    stats = ClusterStats()
    limits = ClusterLimits(
        CircuitBreakerConfig(max_connections=1, max_pending_requests=100_000), stats
    )
    pool = HostPool(
        Host(SocketAddress("127.0.0.1", upstream.port)),
        FakeCodec,
        stats,
        multiplexed=False,
        connect_timeout=2.0,
        limits=limits,
    )
    count = 2 * sys.getrecursionlimit()
    served: list[UpstreamConnection] = []
    done = asyncio.Event()
    try:
        for _ in range(count):
            waiter = OneWay(pool, served, done, count)
            assert pool.acquire(waiter) is None  # all wait for the one connect
        await asyncio.wait_for(done.wait(), 5)
        assert len(served) == count
        assert len(set(served)) == 1  # one connection, handed from waiter to waiter
        assert pool.idle == served[:1]  # and idle at the end
        assert stats.upstream_rq_pending_active == 0
    finally:
        pool.close()
        upstream.close()
