"""Connection pool of one upstream host (reference §7: "Envoy provides").

Exclusive mode hands each request a connection of its own and takes it back idle after the
response; multiplexed mode shares one connection per key among many requests. A request
that has to wait for a connection registers a :class:`PoolWaiter` and hears back exactly
once: ``on_pool_ready`` or ``on_pool_failure``.

Circuit breakers (:mod:`.limits`) are cluster-wide: every pool of a cluster shares one
:class:`ClusterLimits`. A refused request gets :class:`PoolOverflow` at once, which the
router answers with an ``OverLimit`` local reply.

``max_requests_per_connection``: an exclusive connection is closed when it is released for
the N-th time. A multiplexed one takes no new request after its N-th: the next request of
its key opens a fresh connection, and the old one is closed once it has no request in
flight, noticed at the pool's next event (a request, the key's client leaving, retire).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Protocol

from aeraki.codec.api import Codec, ErrorType
from aeraki.proxy.config import CircuitBreakerConfig
from aeraki.proxy.upstream.connection import UpstreamConnection
from aeraki.proxy.upstream.limits import ClusterLimits, PoolOverflow

if TYPE_CHECKING:
    from aeraki.proxy.stats import ClusterStats
    from aeraki.proxy.upstream.host import Host

__all__ = ["HostPool", "PoolOverflow", "PoolWaiter"]

log = logging.getLogger(__name__)

#: Seconds between two "connect failed" log lines of one host while it stays down.
CONNECT_FAILURE_LOG_INTERVAL = 10.0


class PoolWaiter(Protocol):
    """A request waiting for an upstream connection."""

    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        """A connection is ready for this request."""

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        """No connection could be had."""


class HostPool:
    """Connections to one host for one codec and mode.

    ``limits`` is the cluster's (shared by its pools); a pool made without one gets
    Envoy's default thresholds of its own.
    """

    def __init__(
        self,
        host: Host,
        codec_cls: type[Codec],
        stats: ClusterStats,
        *,
        multiplexed: bool,
        connect_timeout: float,
        limits: ClusterLimits | None = None,
    ) -> None:
        self.host = host
        self.codec_cls = codec_cls
        self.stats = stats
        self.limits = limits if limits is not None else ClusterLimits(CircuitBreakerConfig(), stats)
        #: thresholds read per request, copied (they are fixed for the cluster's lifetime).
        self._max_requests = self.limits.max_requests
        self._per_connection_cap = self.limits.max_requests_per_connection
        self.is_multiplexed = multiplexed
        self.connect_timeout = connect_timeout
        self.connections: set[UpstreamConnection] = set()
        self.idle: list[UpstreamConnection] = []
        self.waiters: collections.deque[PoolWaiter] = collections.deque()
        #: connections released while a hand-over runs (see ``_hand_over``).
        self._handed_back: list[UpstreamConnection] = []
        self._handing_over = False
        self.connecting = 0
        #: multiplexed mode: key -> ready connection / waiters of a pending connect.
        self.shared: dict[object, UpstreamConnection] = {}
        self.shared_waiters: dict[object, list[PoolWaiter]] = {}
        #: max_requests_per_connection: requests given to each connection so far, and
        #: multiplexed connections that reached the cap (closed once idle), by key.
        self.served: dict[UpstreamConnection, int] = {}
        self.draining: dict[UpstreamConnection, object] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.is_closed = False
        #: the cluster went away: finish what is in flight, keep nothing idle.
        self.is_retired = False
        #: connect-failure logging: loop time of the last line, failures not logged since.
        self._failure_logged_at: float | None = None
        self._failures_unlogged = 0

    # -- exclusive mode -----------------------------------------------------------------
    def acquire(self, waiter: PoolWaiter) -> UpstreamConnection | None:
        """An idle connection now, or ``None`` and a callback on ``waiter`` later.

        Raises:
            PoolOverflow: a circuit breaker (requests, pending requests) is open.
        """
        limits = self.limits
        if self.stats.upstream_rq_active >= self._max_requests:
            limits.admit_request()  # raises, counted
        idle = self.idle
        while idle:
            connection = idle.pop()
            if not connection.is_closed:
                return connection
        limits.admit_pending()
        self.waiters.append(waiter)
        self.stats.upstream_rq_pending_active += 1
        if limits.can_connect() or not (self.connections or self.connecting):
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
                    self.stats.upstream_rq_pending_active -= 1

    def release(self, connection: UpstreamConnection) -> None:
        """Take back an exclusive connection whose exchange is complete."""
        if connection.is_closed:
            return
        if self.is_closed or (self.is_retired and not self.waiters):
            connection.close()
            return
        cap = self._per_connection_cap
        if cap and self._count_served(connection) >= cap:
            self.stats.upstream_cx_max_requests += 1
            self._forget(connection)  # counted out now, so a replacement may connect
            connection.close()
            self._connect_for_waiters()
            return
        if self.waiters:
            self._hand_over(connection)
        else:
            self.idle.append(connection)

    def _hand_over(self, connection: UpstreamConnection) -> None:
        """Give ``connection`` to the first waiter.

        A waiter done with it at once (a one-way request, a one-way mirror) releases it from
        inside ``on_pool_ready``; that release arrives here while this hand-over runs and is
        passed on by the loop below instead of a nested call: a burst of one-way requests
        waiting for a connection would otherwise recurse once per request (RecursionError).
        """
        if self._handing_over:
            self._handed_back.append(connection)
            return
        self._handing_over = True
        try:
            waiter = self.waiters.popleft()
            self.stats.upstream_rq_pending_active -= 1
            waiter.on_pool_ready(connection)
            while self._handed_back:
                connection = self._handed_back.pop()
                if connection.is_closed:
                    continue
                if self.waiters:
                    waiter = self.waiters.popleft()
                    self.stats.upstream_rq_pending_active -= 1
                    waiter.on_pool_ready(connection)
                elif self.is_closed or self.is_retired:
                    connection.close()
                else:
                    self.idle.append(connection)
        finally:
            self._handing_over = False

    def _count_served(self, connection: UpstreamConnection) -> int:
        served = self.served.get(connection, 0) + 1
        self.served[connection] = served
        return served

    def _connect_for_waiters(self) -> None:
        """A connection went away while requests wait: open one in its place if allowed."""
        if self.waiters and self.connecting < len(self.waiters) and self.limits.can_connect():
            self._start_connect(None)

    # -- multiplexed mode ---------------------------------------------------------------
    def acquire_shared(self, waiter: PoolWaiter, key: object) -> UpstreamConnection | None:
        """The shared connection for ``key`` now, or ``None`` and a callback later.

        Raises:
            PoolOverflow: a circuit breaker (requests, pending requests, connections) is
                open; a key without a connection cannot wait for someone else's.
        """
        limits = self.limits
        if self.stats.upstream_rq_active >= self._max_requests:
            limits.admit_request()  # raises, counted
        if self.draining:
            self._close_drained()
        connection = self.shared.get(key)
        if connection is not None and not connection.is_closed:
            if self._per_connection_cap:
                self._count_shared(key, connection)
            return connection
        waiters = self.shared_waiters.get(key)
        if waiters is None and not limits.can_connect():
            raise PoolOverflow("too many connections")
        limits.admit_pending()
        self.stats.upstream_rq_pending_active += 1
        if waiters is not None:
            waiters.append(waiter)
            return None
        self.shared_waiters[key] = [waiter]
        self._start_connect(key)
        return None

    def _count_shared(self, key: object, connection: UpstreamConnection) -> None:
        """Count a request given to a shared connection; at the cap, stop sharing it."""
        if self._count_served(connection) >= self.limits.max_requests_per_connection:
            self.stats.upstream_cx_max_requests += 1
            if self.shared.get(key) is connection:
                del self.shared[key]
            self.draining[connection] = key

    def _close_drained(self) -> None:
        for connection in [c for c in self.draining if c.is_idle or c.is_closed]:
            del self.draining[connection]
            connection.close()

    def drop_shared(self, key: object) -> None:
        """Close the shared connection of ``key`` (its downstream connection is gone)."""
        connection = self.shared.pop(key, None)
        if connection is not None:
            connection.close()
        for drained in [c for c, k in self.draining.items() if k == key]:
            del self.draining[drained]
            drained.close()

    # -- connecting ---------------------------------------------------------------------
    def _start_connect(self, key: object) -> None:
        self.connecting += 1
        self.limits.connections += 1
        task = asyncio.get_running_loop().create_task(self._connect(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, key: object) -> None:
        loop = asyncio.get_running_loop()
        address = self.host.address
        failure = ""
        connected = False
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
            connected = True
        except TimeoutError:
            self.stats.upstream_cx_connect_timeout += 1
            failure = f"connection failure '{self.host.key}' due to timeout"
        except OSError as exc:
            self.stats.upstream_cx_connect_fail += 1
            self._log_connect_failure(exc)
            failure = f"remote connection failure '{self.host.key}'"
        finally:
            self.connecting -= 1  # before the failure handling below, which reads it
            if not connected:
                self.limits.connections -= 1
        if failure:
            self._on_connect_failed(key, f"meta protocol upstream request: {failure}")
        else:
            self._on_connected(protocol, key)

    def _log_connect_failure(self, exc: OSError) -> None:
        """One INFO line per host per :data:`CONNECT_FAILURE_LOG_INTERVAL` while it stays
        down (with the count of failures in between), not one per request."""
        now = asyncio.get_running_loop().time()
        last = self._failure_logged_at
        if last is not None and now - last < CONNECT_FAILURE_LOG_INTERVAL:
            self._failures_unlogged += 1
            return
        more = self._failures_unlogged
        suffix = f" ({more} more failures since the last report)" if more else ""
        log.info("upstream %s: connect failed: %s%s", self.host.key, exc, suffix)
        self._failure_logged_at = now
        self._failures_unlogged = 0

    def _on_connected(self, connection: UpstreamConnection, key: object) -> None:
        if connection.is_closed:
            # Reset before this coroutine resumed (an upstream dying as it accepted): its
            # connection_lost already ran, so a request handed this connection would be
            # written nowhere and never answered (found by `make soak`). A connect failure.
            self.limits.connections -= 1
            self.stats.upstream_cx_connect_fail += 1
            message = f"meta protocol upstream request: remote connection failure '{self.host.key}'"
            self._on_connect_failed(key, message)
            return
        self._failure_logged_at = None  # the host is back: its next failure is news
        self.stats.upstream_cx_total += 1
        self.stats.upstream_cx_active += 1
        self.connections.add(connection)
        if self.is_closed:
            connection.close()
            return
        if self.is_multiplexed:
            waiters = self.shared_waiters.pop(key, [])
            self.stats.upstream_rq_pending_active -= len(waiters)
            self.shared[key] = connection
            for waiter in waiters:
                if self.limits.max_requests_per_connection:
                    self._count_shared(key, connection)  # may exceed the cap by the waiters
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
            self.stats.upstream_rq_pending_active -= len(failed)
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
        self._forget(connection)
        self.draining.pop(connection, None)
        if connection in self.idle:
            self.idle.remove(connection)
        for key, shared in list(self.shared.items()):
            if shared is connection:
                del self.shared[key]
        if not self.is_closed:
            self._connect_for_waiters()  # requests queued at the limit must not be stranded

    def _forget(self, connection: UpstreamConnection) -> None:
        """Stop counting ``connection`` (open connections, breaker, requests served)."""
        if connection in self.connections:
            self.connections.discard(connection)
            self.stats.upstream_cx_active -= 1
            self.limits.connections -= 1
        self.served.pop(connection, None)

    def retire(self) -> None:
        """Graceful close: idle connections now, busy ones when their exchange ends."""
        self.is_retired = True
        for connection in list(self.idle):
            connection.close()
        for connection in [*self.shared.values(), *self.draining]:
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
        self.stats.upstream_rq_pending_active -= len(waiting)
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
