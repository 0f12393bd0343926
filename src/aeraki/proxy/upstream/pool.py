"""Connection pool of one upstream host (reference §7: "Envoy provides").

Exclusive mode hands each request a connection of its own and takes it back idle after the
response; multiplexed mode shares one connection per key among many requests. A request
that has to wait for a connection registers a :class:`PoolWaiter` and hears back exactly
once: ``on_pool_ready`` or ``on_pool_failure``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Protocol

from aeraki.codec.api import Codec, ErrorType
from aeraki.proxy.upstream.connection import UpstreamConnection

if TYPE_CHECKING:
    from aeraki.proxy.stats import ClusterStats
    from aeraki.proxy.upstream.host import Host

__all__ = ["HostPool", "PoolOverflow", "PoolWaiter"]

log = logging.getLogger(__name__)

#: Envoy's default circuit-breaker limits: connections per host, and requests that may wait
#: for a connection once that limit is reached.
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_PENDING = 1024


class PoolWaiter(Protocol):
    """A request waiting for an upstream connection."""

    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        """A connection is ready for this request."""

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        """No connection could be had."""


class PoolOverflow(Exception):
    """The host's connection limit is reached; the request is refused at once."""


class HostPool:
    """Connections to one host for one codec and mode."""

    def __init__(
        self,
        host: Host,
        codec_cls: type[Codec],
        stats: ClusterStats,
        *,
        multiplexed: bool,
        connect_timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.host = host
        self.codec_cls = codec_cls
        self.stats = stats
        self.is_multiplexed = multiplexed
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.connections: set[UpstreamConnection] = set()
        self.idle: list[UpstreamConnection] = []
        self.waiters: collections.deque[PoolWaiter] = collections.deque()
        self.connecting = 0
        #: multiplexed mode: key -> ready connection / waiters of a pending connect.
        self.shared: dict[object, UpstreamConnection] = {}
        self.shared_waiters: dict[object, list[PoolWaiter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.is_closed = False
        #: the cluster went away: finish what is in flight, keep nothing idle.
        self.is_retired = False

    # -- exclusive mode -----------------------------------------------------------------
    def acquire(self, waiter: PoolWaiter) -> UpstreamConnection | None:
        """An idle connection now, or ``None`` and a callback on ``waiter`` later.

        Raises:
            PoolOverflow: the connection limit is reached.
        """
        idle = self.idle
        while idle:
            connection = idle.pop()
            if not connection.is_closed:
                return connection
        at_limit = len(self.connections) + self.connecting >= self.max_connections
        if at_limit and len(self.waiters) >= self.max_pending:
            self.stats.upstream_cx_overflow += 1
            raise PoolOverflow("too many connections and pending requests")
        self.waiters.append(waiter)
        self.stats.upstream_rq_pending_active += 1
        if not at_limit:
            self._start_connect(None)
        # else: the next connection released goes to this waiter (Envoy's pending queue)
        return None

    def cancel(self, waiter: PoolWaiter) -> None:
        """``waiter`` no longer wants a connection (its connection will go idle)."""
        try:
            self.waiters.remove(waiter)
            self.stats.upstream_rq_pending_active -= 1
        except ValueError:
            for waiters in self.shared_waiters.values():
                if waiter in waiters:
                    waiters.remove(waiter)

    def release(self, connection: UpstreamConnection) -> None:
        """Take back an exclusive connection whose exchange is complete."""
        if connection.is_closed:
            return
        if self.is_closed or (self.is_retired and not self.waiters):
            connection.close()
            return
        if self.waiters:
            self._hand_over(connection)
        else:
            self.idle.append(connection)

    def _hand_over(self, connection: UpstreamConnection) -> None:
        waiter = self.waiters.popleft()
        self.stats.upstream_rq_pending_active -= 1
        waiter.on_pool_ready(connection)

    # -- multiplexed mode ---------------------------------------------------------------
    def acquire_shared(self, waiter: PoolWaiter, key: object) -> UpstreamConnection | None:
        """The shared connection for ``key`` now, or ``None`` and a callback later."""
        connection = self.shared.get(key)
        if connection is not None and not connection.is_closed:
            return connection
        waiters = self.shared_waiters.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return None
        self._check_limit()
        self.shared_waiters[key] = [waiter]
        self._start_connect(key)
        return None

    def drop_shared(self, key: object) -> None:
        """Close the shared connection of ``key`` (its downstream connection is gone)."""
        connection = self.shared.pop(key, None)
        if connection is not None:
            connection.close()

    # -- connecting ---------------------------------------------------------------------
    def _check_limit(self) -> None:
        if len(self.connections) + self.connecting >= self.max_connections:
            self.stats.upstream_cx_overflow += 1
            raise PoolOverflow("too many connections")

    def _start_connect(self, key: object) -> None:
        self.connecting += 1
        task = asyncio.get_running_loop().create_task(self._connect(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, key: object) -> None:
        loop = asyncio.get_running_loop()
        address = self.host.address
        failure = ""
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(
                        self, self.codec_cls, multiplexed=self.is_multiplexed
                    ),
                    address.host,
                    address.port,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            self.stats.upstream_cx_connect_timeout += 1
            failure = f"connection failure '{self.host.key}' due to timeout"
        except OSError as exc:
            self.stats.upstream_cx_connect_fail += 1
            log.info("upstream %s: connect failed: %s", self.host.key, exc)
            failure = f"remote connection failure '{self.host.key}'"
        finally:
            self.connecting -= 1  # before the failure handling below, which reads it
        if failure:
            self._on_connect_failed(key, f"meta protocol upstream request: {failure}")
        else:
            self._on_connected(protocol, key)

    def _on_connected(self, connection: UpstreamConnection, key: object) -> None:
        self.stats.upstream_cx_total += 1
        self.stats.upstream_cx_active += 1
        self.connections.add(connection)
        if self.is_closed:
            connection.close()
            return
        if self.is_multiplexed:
            self.shared[key] = connection
            for waiter in self.shared_waiters.pop(key, []):
                waiter.on_pool_ready(connection)
        elif self.waiters:
            self._hand_over(connection)
        elif self.is_retired:
            connection.close()
        else:
            self.idle.append(connection)

    def _on_connect_failed(self, key: object, message: str) -> None:
        if self.is_multiplexed:
            failed = self.shared_waiters.pop(key, [])
        elif self.waiters:
            # One connect was started per waiter; its failure answers one waiter. Waiters
            # queued at the limit wait for releases, unless nothing is left to release.
            count = 1 if self.connections or self.connecting else len(self.waiters)
            failed = [self.waiters.popleft() for _ in range(count)]
            self.stats.upstream_rq_pending_active -= count
        else:
            failed = []
        for waiter in failed:
            waiter.on_pool_failure(ErrorType.UNSPECIFIED, message)

    def on_connection_closed(self, connection: UpstreamConnection) -> None:
        """Called by a connection once it is closed, whatever closed it."""
        if connection in self.connections:
            self.connections.discard(connection)
            self.stats.upstream_cx_active -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        for key, shared in list(self.shared.items()):
            if shared is connection:
                del self.shared[key]

    def retire(self) -> None:
        """Graceful close: idle connections now, busy ones when their exchange ends."""
        self.is_retired = True
        for connection in list(self.idle):
            connection.close()
        for connection in list(self.shared.values()):
            if not connection.inflight:
                connection.close()

    def close(self) -> None:
        """Close every connection and stop connecting (shutdown); waiters are answered."""
        self.is_closed = True
        for task in list(self._tasks):
            task.cancel()
        waiting = list(self.waiters)
        for waiters in self.shared_waiters.values():
            waiting.extend(waiters)
        self.waiters.clear()
        self.shared_waiters.clear()
        for waiter in waiting:
            waiter.on_pool_failure(
                ErrorType.UNSPECIFIED, f"meta protocol upstream request: '{self.host.key}' closed"
            )
        for connection in list(self.connections):
            connection.close()

    def __repr__(self) -> str:
        return (
            f"<HostPool {self.host.key} connections={len(self.connections)} "
            f"idle={len(self.idle)} connecting={self.connecting} waiters={len(self.waiters)}>"
        )
