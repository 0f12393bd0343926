"""A connection lost before the pool's connect coroutine resumes (found by ``make soak``).

When an upstream is killed, a connect can complete just before the dying process resets it:
the transport's ``connection_lost`` then runs before ``HostPool._connect`` resumes after its
``await``. The pool must not hand that dead connection to a waiting request — the request
would be written nowhere and never answered (a hung client) — nor count it as open.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aeraki.codec.api import ErrorType
from aeraki.proxy.upstream.connection import UpstreamConnection
from tests.proxy.harness import FakeUpstream
from tests.proxy.upstream.test_pool import _pool


class Waiter:
    def __init__(self) -> None:
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        self.outcome.set_result("ready, closed" if connection.is_closed else "ready")

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        self.outcome.set_result(f"failure: {message}")


@pytest.mark.parametrize("multiplexed", [False, True])
async def test_a_connection_reset_before_the_connect_resumes_fails_the_waiter(
    monkeypatch: pytest.MonkeyPatch, multiplexed: bool
) -> None:
    upstream = await FakeUpstream("v1").start()
    loop = asyncio.get_running_loop()
    real_create_connection = loop.create_connection
    lost = asyncio.Event()

    async def connect_then_reset(*args: Any, **kwargs: Any) -> Any:
        transport, protocol = await real_create_connection(*args, **kwargs)
        original_lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            original_lost(exc)
            lost.set()

        protocol.connection_lost = connection_lost
        transport.abort()  # what the dying upstream's RST does
        await lost.wait()  # connection_lost has run: only now does the connect "return"
        return transport, protocol

    monkeypatch.setattr(loop, "create_connection", connect_then_reset)
    pool = _pool(upstream.port, multiplexed=multiplexed)
    try:
        waiter = Waiter()
        if multiplexed:
            assert pool.acquire_shared(waiter, "client-1") is None
        else:
            assert pool.acquire(waiter) is None
        outcome = await asyncio.wait_for(waiter.outcome, 5)
        assert outcome.startswith("failure: "), outcome
        assert pool.connections == set()
        assert pool.shared == {}
        assert pool.idle == []
        assert (pool.stats.upstream_cx_active, pool.limits.connections) == (0, 0)
        assert pool.stats.upstream_rq_pending_active == 0
        assert pool.stats.upstream_cx_connect_fail == 1
    finally:
        pool.close()
        upstream.close()
