"""One request on its way through the proxy: filters, route, upstream, response.

The router logic of reference §20.2 lives here (the router is the terminal step of the
decoder chain). Every outcome ends in exactly one of: the upstream response written
downstream, a local reply in the protocol's own format, or — for one-way requests —
nothing; a request never hangs (per-route timeout, upstream failures answered, §13).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from aeraki.codec.api import (
    ErrorType,
    LocalError,
    MessageType,
    Metadata,
    Mutation,
    ResponseStatus,
)
from aeraki.errors import CodecError
from aeraki.proxy.config import FaultConfig, RetryOn
from aeraki.proxy.filters.api import FilterStatus
from aeraki.proxy.upstream.outcome import Outcome
from aeraki.proxy.upstream.pool import HostPool, PoolOverflow

if TYPE_CHECKING:
    from aeraki.proxy.connection import DownstreamConnection
    from aeraki.proxy.routing import Route
    from aeraki.proxy.stats import ListenerStats
    from aeraki.proxy.upstream.cluster import Cluster
    from aeraki.proxy.upstream.connection import UpstreamConnection
    from aeraki.proxy.upstream.host import Host
    from aeraki.proxy.upstream.limits import ClusterLimits

__all__ = ["ActiveRequest"]

log = logging.getLogger(__name__)
_getrandbits = random.getrandbits
_random = random.random
_monotonic = time.monotonic
# Enum members read per request, bound once (a member lookup costs ~70 ns on CPython 3.11).
_ONEWAY = MessageType.ONEWAY
_OK = ResponseStatus.OK
_CONTINUE = FilterStatus.CONTINUE
_SUCCESS = Outcome.SUCCESS

#: A retry re-asks the load balancer this many times for a host other than the one that
#: just failed (Envoy's ``previous_hosts`` predicate with ``host_selection_retry_max_attempts``).
_RETRY_HOST_PICKS = 3

#: A mirrored copy whose upstream never answers gives its connection up after this long.
MIRROR_TIMEOUT = 10.0


class ActiveRequest:
    """A decoded request from the moment it is decoded until it is answered.

    Life of a request: decoder filters → route match → faults (delay, abort) → attempts. An
    attempt picks a host of the chosen cluster, gets a connection from its pool and sends;
    its outcome is reported to the host (outlier detection) and a failed attempt may be
    retried per the route's retry policy, preferably on another host, after a jittered
    back-off. The route timeout bounds the whole life from the end of the fault delay;
    the per-try timeout bounds one attempt.
    """

    __slots__ = (
        "attempts",
        "cluster_name",
        "delayed",
        "downstream",
        "ended",
        "filter_index",
        "in_flight",
        "is_done",
        "is_oneway",
        "last_host",
        "local_error",
        "metadata",
        "mutation",
        "pool",
        "response",
        "retry_limits",
        "route",
        "started",
        "timer",
        "try_timer",
        "upstream",
        "upstream_id",
    )

    def __init__(self, downstream: DownstreamConnection, metadata: Metadata) -> None:
        self.downstream = downstream
        self.metadata = metadata
        #: monotonic seconds (``time.monotonic``) when decoded and when it ended; observers
        #: (access logs, metrics, tracing) read them.
        self.started = _monotonic()
        self.ended = 0.0
        #: the upstream response forwarded to the client, or the local reply sent instead
        #: (both ``None`` for one-way requests and abandoned ones).
        self.response: Metadata | None = None
        self.local_error: LocalError | None = None
        self.mutation: Mutation = {}
        self.route: Route | None = None
        self.pool: HostPool | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_id: int | None = None
        #: the route timeout (whole request).
        self.timer: asyncio.TimerHandle | None = None
        #: one at a time: the fault delay, a retry back-off, or the per-try timeout.
        self.try_timer: asyncio.TimerHandle | None = None
        self.is_done = False
        #: counted in the pool's and host's in-flight gauges (undone exactly once).
        self.in_flight = False
        self.is_oneway = metadata.message_type is _ONEWAY
        #: the decoder filter to run next (a paused filter resumes after itself).
        self.filter_index = 0
        self.cluster_name = ""
        #: a fault delay held this request back (access logs' ``DI``).
        self.delayed = False
        #: attempts started (1 + retries).
        self.attempts = 0
        self.last_host: Host | None = None
        #: the circuit breaker whose retry slot this request holds (from its first retry).
        self.retry_limits: ClusterLimits | None = None

    # -- decoder chain and router (§20.2) -------------------------------------------------
    def start(self) -> None:
        """Run the decoder filters, then route and send upstream."""
        listener = self.downstream.listener
        decoders = listener.decoder_filters
        while self.filter_index < len(decoders):
            decoder = decoders[self.filter_index]
            self.filter_index += 1
            status = decoder.on_request(self)
            if status is not _CONTINUE or self.is_done:
                return
        self._route()

    def resume_decoding(self) -> None:
        """Continue after a filter that returned ``PAUSE`` (a no-op once answered)."""
        if not self.is_done:
            self.start()

    def _route(self) -> None:
        listener = self.downstream.listener
        md = self.metadata
        table = listener.route_table
        route = table.match(md) if table is not None else None
        if route is None:
            listener.stats.route_not_found += 1
            self.local_reply(
                ErrorType.ROUTE_NOT_FOUND,
                f"meta protocol router: no matched route for request '{md.request_id}'"
                + (f" ({md.operation_name})" if md.operation_name else ""),
            )
            return
        self.route = route
        if route.fault is not None:
            self._inject_faults(route, route.fault)
        else:
            self._dispatch(route)

    # -- fault injection (a MetaRoute extension) --------------------------------------------
    def _inject_faults(self, route: Route, fault: FaultConfig) -> None:
        """Delay, then abort, as Envoy's fault filter orders them."""
        delay = fault.delay
        if delay is not None and _hit(delay.numerator, delay.denominator):
            self.downstream.listener.stats.delays_injected += 1
            self.delayed = True
            loop = asyncio.get_running_loop()
            self.try_timer = loop.call_later(delay.fixed_delay, self._after_fault_delay)
            return
        self._maybe_abort(route, fault)

    def _after_fault_delay(self) -> None:
        self.try_timer = None
        route = self.route
        if self.is_done or route is None or route.fault is None:
            return
        self._maybe_abort(route, route.fault)

    def _maybe_abort(self, route: Route, fault: FaultConfig) -> None:
        abort = fault.abort
        if abort is not None and _hit(abort.numerator, abort.denominator):
            self.downstream.listener.stats.aborts_injected += 1
            self.local_reply(route.abort_type, abort.message)
            return
        self._dispatch(route)

    # -- attempts ---------------------------------------------------------------------------
    def _dispatch(self, route: Route) -> None:
        """Start the route timeout, apply the route's mutation and mirrors, first attempt."""
        if route.timeout is not None and not self.is_oneway:
            self.timer = asyncio.get_running_loop().call_later(route.timeout, self._on_timeout)
        if route.request_mutation:
            self.mutation.update(route.request_mutation)
        rand = _getrandbits(64)
        if route.mirror_policies:
            for mirror_cluster in route.mirror_clusters(rand):
                _Mirror.launch(self, mirror_cluster)
        self.cluster_name = route.cluster_for(rand)
        self._attempt(route)

    def _attempt(self, route: Route) -> None:
        listener = self.downstream.listener
        cluster_name = self.cluster_name
        cluster = listener.clusters.get(cluster_name)
        if cluster is None:
            self.local_reply(
                ErrorType.CLUSTER_NOT_FOUND,
                f"meta protocol router: unknown cluster '{cluster_name}'",
            )
            return
        host = self._choose_host(route, cluster)
        if host is None:
            self.local_reply(
                ErrorType.NO_HEALTHY_UPSTREAM,
                f"meta protocol router: no healthy upstream for '{cluster_name}'",
            )
            return
        self.attempts += 1
        self.last_host = host
        multiplexed = listener.multiplexed
        pool = cluster.pool_for(host, listener.codec_cls, multiplexed=multiplexed)
        self.pool = pool
        policy = route.retry_policy
        if policy is not None and policy.per_try_timeout is not None and not self.is_oneway:
            loop = asyncio.get_running_loop()
            self.try_timer = loop.call_later(policy.per_try_timeout, self._on_try_timeout)
        try:
            if multiplexed:
                connection = pool.acquire_shared(self, listener.shared_key(self.downstream))
            else:
                connection = pool.acquire(self)
        except PoolOverflow as exc:
            self.pool = None
            self._retry_or_fail(
                RetryOn.OVERFLOW,
                ErrorType.OVER_LIMIT,
                f"meta protocol upstream request: {exc}",
                sent=False,
            )
            return
        if connection is not None:
            self.on_pool_ready(connection)

    def _choose_host(self, route: Route, cluster: Cluster) -> Host | None:
        """The LB's pick; a retry avoids the host that just failed whenever another healthy
        host exists (the LB is asked again a few times first, so its policy still rules)."""
        lb = cluster.lb
        if self.attempts == 0:
            return lb.choose(route.hash_key(self.metadata))
        previous = self.last_host
        host = lb.choose(None)
        for _ in range(_RETRY_HOST_PICKS):
            if host is not previous:
                return host
            host = lb.choose(None)
        if host is previous:
            # Random pickers can keep drawing the failed host; any other healthy one will do.
            others = [h for h in lb.hosts if h is not previous and h.healthy]
            if others:
                return others[_getrandbits(32) % len(others)]
        return host

    # -- upstream -----------------------------------------------------------------------
    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        """Encode and write the request on ``connection`` (PoolWaiter)."""
        pool = self.pool
        assert pool is not None
        if self.is_done:  # abandoned while waiting
            if not connection.is_multiplexed:
                pool.release(connection)
            return
        md = self.metadata
        listener = self.downstream.listener
        wire_id: int | None = None
        if connection.is_multiplexed and listener.rewrites_ids and not self.is_oneway:
            wire_id = connection.next_request_id()
        elif connection.is_multiplexed and md.request_id in connection.inflight:
            self.local_reply(
                ErrorType.UNSPECIFIED,
                f"meta protocol router: request id {md.request_id} is already in flight",
            )
            return
        mutation = self.mutation
        if mutation or wire_id is not None:
            try:
                data = self.downstream.codec.encode(md, mutation, request_id=wire_id)
            except CodecError as exc:
                if not connection.is_multiplexed:
                    pool.release(connection)
                self.local_reply(
                    ErrorType.UNSPECIFIED, f"meta protocol router: cannot encode request: {exc}"
                )
                return
        else:
            data = md.origin
        self.upstream = connection
        self.upstream_id = md.request_id if wire_id is None else wire_id
        pool.stats.upstream_rq_total += 1
        if self.is_oneway:
            connection.send(self, data, None)
            listener.stats.request_oneway += 1
            self._finish()
            if not connection.is_multiplexed:
                pool.release(connection)
            return
        pool.stats.upstream_rq_active += 1
        pool.host.active_requests += 1
        self.in_flight = True
        connection.send(self, data, self.upstream_id)

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        """No upstream connection could be had (PoolWaiter)."""
        if self.is_done:
            return
        self._cancel_try_timer()
        if self.pool is not None:
            self.pool.host.report(Outcome.CONNECT_FAILURE)
        self._retry_or_fail(RetryOn.CONNECT_FAILURE, error_type, message, sent=False)

    def on_upstream_response(self, response: Metadata, connection: UpstreamConnection) -> None:
        """The upstream answered (UpstreamRequest)."""
        pool = self.pool
        assert pool is not None
        self._leave_flight()
        if self.is_done:
            if not connection.is_multiplexed:
                pool.release(connection)
            return
        listener = self.downstream.listener
        md = self.metadata
        if (
            not connection.is_multiplexed
            and listener.codec_cls.capabilities.request_ids
            and response.request_id != md.request_id
        ):
            # Checked before forwarding, unlike the reference (§33.11).
            connection.close()
            listener.stats.response_decoding_error += 1
            pool.host.report(Outcome.BAD_RESPONSE)
            self.local_reply(
                ErrorType.BAD_RESPONSE,
                f"meta protocol {listener.application_protocol} response: request ID is not "
                f"equal, {md.request_id}:{response.request_id}",
            )
            return
        if not connection.is_multiplexed:
            pool.release(connection)
        host = pool.host
        if response.response_status is _OK:
            if host.monitor is not None:
                host.report(_SUCCESS)
            if self.attempts > 1:
                pool.stats.upstream_rq_retry_success += 1
        else:
            host.report(Outcome.ERROR_RESPONSE)
            condition = (
                RetryOn.RETRIABLE_ERROR | RetryOn.ERROR_RESPONSE
                if response.response_status is ResponseStatus.RETRIABLE_ERROR
                else RetryOn.ERROR_RESPONSE
            )
            if self._should_retry(condition, sent=True):
                self._cancel_try_timer()
                self._schedule_retry()
                return
        if self.try_timer is not None:
            self._cancel_try_timer()
        self.response = response
        self.downstream.send_response(self, response, connection)

    def on_upstream_failure(self, error_type: ErrorType, message: str) -> None:
        """The upstream connection failed before the response (UpstreamRequest)."""
        self._leave_flight()
        if self.is_done:
            return
        self._cancel_try_timer()
        host = self.pool.host if self.pool is not None else None
        if error_type is ErrorType.BAD_RESPONSE:
            self.downstream.listener.stats.response_decoding_error += 1
            if host is not None:
                host.report(Outcome.BAD_RESPONSE)
            self._fail(error_type, message)
            return
        if host is not None:
            host.report(Outcome.RESET)
        self._retry_or_fail(RetryOn.RESET, error_type, message, sent=True)

    def _on_try_timeout(self) -> None:
        self.try_timer = None
        if self.is_done:
            return
        pool = self.pool
        if pool is not None:
            pool.stats.upstream_rq_per_try_timeout += 1
            pool.host.report(Outcome.TIMEOUT)
        self.abandon_upstream()
        route = self.route
        policy = route.retry_policy if route is not None else None
        per_try = policy.per_try_timeout if policy is not None else None
        self._retry_or_fail(
            RetryOn.TIMEOUT,
            ErrorType.TIMEOUT,
            f"meta protocol router: attempt {self.attempts} timed out after {per_try}s",
            sent=True,
        )

    # -- retries ----------------------------------------------------------------------------
    def _retry_or_fail(
        self, condition: RetryOn, error_type: ErrorType, message: str, *, sent: bool
    ) -> None:
        if self._should_retry(condition, sent=sent):
            self._schedule_retry()
        else:
            self._fail(error_type, message)

    def _should_retry(self, condition: RetryOn, *, sent: bool) -> bool:
        """Whether the failed attempt may be retried under the route's policy.

        A request that may have reached the upstream (``sent``) is retried only when it is
        idempotent — by the route and by the codec — or the policy says
        ``retry_non_idempotent``; a one-way request that was sent is never retried.
        """
        route = self.route
        policy = route.retry_policy if route is not None else None
        if policy is None or route is None or self.is_done:
            return False
        if not condition & policy.retry_on or self.attempts > policy.num_retries:
            return False
        if sent:
            if self.is_oneway:
                return False
            idempotent = route.idempotent and self.metadata.idempotent
            if not idempotent and not policy.retry_non_idempotent:
                return False
        return self._hold_retry_slot()

    def _hold_retry_slot(self) -> bool:
        """Take the cluster's retry slot (``max_retries`` or the retry budget), once per
        request: retries cannot multiply the load on a cluster that is failing."""
        cluster = self.downstream.listener.clusters.get(self.cluster_name)
        if cluster is None:
            return False
        limits = cluster.limits
        if self.retry_limits is limits:
            return True
        self._release_retry_slot()
        if not limits.try_start_retry():
            return False
        self.retry_limits = limits
        return True

    def _release_retry_slot(self) -> None:
        if self.retry_limits is not None:
            self.retry_limits.end_retry()
            self.retry_limits = None

    def _schedule_retry(self) -> None:
        """Forget the failed attempt and start the next one after a jittered back-off."""
        route = self.route
        assert route is not None and route.retry_policy is not None
        policy = route.retry_policy
        pool = self.pool
        if pool is not None:
            pool.stats.upstream_rq_retry += 1
        self.upstream = None
        self.upstream_id = None
        self.pool = None
        cap = min(policy.max_interval, policy.base_interval * (1 << (self.attempts - 1)))
        loop = asyncio.get_running_loop()
        self.try_timer = loop.call_later(_random() * cap, self._retry_now)

    def _retry_now(self) -> None:
        self.try_timer = None
        if not self.is_done and self.route is not None:
            self._attempt(self.route)

    def _cancel_try_timer(self) -> None:
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None

    # -- endings ------------------------------------------------------------------------
    def _on_timeout(self) -> None:
        self.timer = None
        if self.is_done:
            return
        listener = self.downstream.listener
        listener.stats.request_timeout += 1
        if self.pool is not None:
            self.pool.stats.upstream_rq_timeout += 1
            if self.upstream is not None:
                self.pool.host.report(Outcome.TIMEOUT)
        route = self.route
        timeout = route.timeout if route is not None else None
        self.abandon_upstream()
        self.local_reply(
            ErrorType.TIMEOUT, f"meta protocol router: request timed out after {timeout}s"
        )

    def _fail(self, error_type: ErrorType, message: str) -> None:
        if self.is_oneway:
            self._finish()
        else:
            self.local_reply(error_type, message)

    def local_reply(self, error_type: ErrorType, message: str) -> None:
        """Answer the client with an error in its protocol and end the request."""
        if self.is_done:
            return
        if not self.is_oneway:
            self.local_error = LocalError(error_type, message)
        self._finish()
        if self.local_error is not None:
            self.downstream.send_local_reply(self.metadata, self.local_error)

    def _leave_flight(self) -> None:
        if self.in_flight:
            self.in_flight = False
            pool = self.pool
            assert pool is not None
            pool.stats.upstream_rq_active -= 1
            pool.host.active_requests -= 1

    def abandon_upstream(self) -> None:
        """Give up on the upstream side: stop waiting for a connection or a response."""
        if self.upstream is not None:
            self._leave_flight()
            self.upstream.abandon(self, self.upstream_id)
        elif self.pool is not None:
            self.pool.cancel(self)

    def abandon(self) -> None:
        """The client is gone: release everything without answering."""
        if self.is_done:
            return
        self.abandon_upstream()
        self._finish()

    def complete(self) -> None:
        """The response has been written downstream."""
        self._finish()

    def _finish(self) -> None:
        self.is_done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.retry_limits is not None:
            self._release_retry_slot()
        self.ended = _monotonic()
        self.downstream.on_request_done(self)
        observers = self.downstream.listener.observers
        if observers:
            for observer in observers:
                observer.on_request_done(self)


def _hit(numerator: int, denominator: int) -> bool:
    """A draw that succeeds ``numerator/denominator`` of the time."""
    return numerator >= denominator or (
        numerator > 0 and _getrandbits(32) % denominator < numerator
    )


class _Mirror:
    """A fire-and-forget copy of a request to a mirror cluster (§20.4).

    Its response is read and dropped; failures are silent; the client's reply never
    depends on it. It uses exclusive connections so a slow mirror never blocks others.
    """

    __slots__ = ("data", "expects_reply", "pool", "stats", "timer", "upstream")

    @classmethod
    def launch(cls, request: ActiveRequest, cluster_name: str) -> None:
        listener = request.downstream.listener
        cluster = listener.clusters.get(cluster_name)
        host = cluster.lb.choose(None) if cluster is not None else None
        if cluster is None or host is None:
            return
        mutation = request.mutation
        md = request.metadata
        try:
            data = request.downstream.codec.encode(md, mutation) if mutation else md.origin
        except CodecError:
            return  # the main request reports the problem; a mirror stays silent
        pool = cluster.pool_for(host, listener.codec_cls, multiplexed=False)
        mirror = cls(pool, data, listener.stats, expects_reply=not request.is_oneway)
        try:
            connection = pool.acquire(mirror)
        except PoolOverflow:
            return
        if connection is not None:
            mirror.on_pool_ready(connection)

    def __init__(
        self, pool: HostPool, data: bytes, stats: ListenerStats, *, expects_reply: bool
    ) -> None:
        self.pool = pool
        self.data = data
        #: ``mirror_sent`` counts copies written, not copies the pool refused or failed.
        self.stats = stats
        self.expects_reply = expects_reply
        self.upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None

    def on_pool_ready(self, connection: UpstreamConnection) -> None:
        self.stats.mirror_sent += 1
        if not self.expects_reply:
            connection.send(self, self.data, None)
            self.pool.release(connection)
            return
        self.upstream = connection
        connection.send(self, self.data, 0)
        self.timer = asyncio.get_running_loop().call_later(MIRROR_TIMEOUT, self._give_up)

    def on_pool_failure(self, error_type: ErrorType, message: str) -> None:
        log.debug("mirror to %s failed: %s", self.pool.host.key, message)

    def on_upstream_response(self, response: Metadata, connection: UpstreamConnection) -> None:
        self._stop_timer()
        self.pool.release(connection)

    def on_upstream_failure(self, error_type: ErrorType, message: str) -> None:
        self._stop_timer()

    def _give_up(self) -> None:
        self.timer = None
        if self.upstream is not None:
            self.upstream.abandon(self, None)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
