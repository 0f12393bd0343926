"""Circuit breaking: one cluster's live resource counts against its thresholds.

Envoy's circuit breakers (cluster ``circuit_breakers.thresholds``, DEFAULT priority) are
cluster-wide, across every host and connection pool of the cluster, so one
:class:`ClusterLimits` is shared by all pools of a cluster. What it bounds:

* ``max_connections`` — connections open or being opened. At the limit a request waits for
  a connection to be released (``upstream_cx_overflow`` counts the refusals to connect), as
  in Envoy; a pool that has no connection at all still opens one, so a host is never
  starved by its siblings (Envoy does the same).
* ``max_pending_requests`` — requests waiting for a connection; beyond it a request is
  refused at once (``upstream_rq_pending_overflow``), answered ``OverLimit``.
* ``max_requests`` — requests in flight (``upstream_rq_active``), checked when a request
  asks for a connection; refused like pending overflows, as Envoy counts them.
* ``max_retries`` or ``retry_budget`` — concurrent retries (:meth:`try_start_retry`).

The gauges the checks read are the cluster's stats, kept by the pools and requests anyway,
so admitting a request costs two attribute reads and a comparison.
"""

from __future__ import annotations

from aeraki.errors import UpstreamError
from aeraki.proxy.config import CircuitBreakerConfig
from aeraki.proxy.stats import ClusterStats

__all__ = ["ClusterLimits", "PoolOverflow"]


class PoolOverflow(UpstreamError):
    """A circuit breaker refused the request; the message names the limit."""


class ClusterLimits:
    """Thresholds of one cluster and the counts only this object keeps (connections,
    retries); pending and active requests are read from the cluster's stats."""

    __slots__ = (
        "budget_percent",
        "connections",
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_requests_per_connection",
        "max_retries",
        "min_retry_concurrency",
        "retries",
        "stats",
    )

    def __init__(self, config: CircuitBreakerConfig, stats: ClusterStats) -> None:
        self.stats = stats
        self.max_connections = config.max_connections
        self.max_pending_requests = config.max_pending_requests
        self.max_requests = config.max_requests
        self.max_retries = config.max_retries
        #: 0 = no cap on the requests one connection serves.
        self.max_requests_per_connection = config.max_requests_per_connection
        budget = config.retry_budget
        #: ``None`` = ``max_retries`` bounds retries; else the budget does.
        self.budget_percent: float | None = budget.budget_percent if budget else None
        self.min_retry_concurrency = budget.min_retry_concurrency if budget else 0
        #: connections open or being opened, across the cluster's pools.
        self.connections = 0
        #: retries in progress.
        self.retries = 0

    # -- requests -----------------------------------------------------------------------
    def admit_request(self) -> None:
        """Refuse a new request when the cluster has ``max_requests`` in flight.

        Raises:
            PoolOverflow: the requests breaker is open.
        """
        stats = self.stats
        if stats.upstream_rq_active >= self.max_requests:
            stats.upstream_rq_pending_overflow += 1
            raise PoolOverflow("too many requests")

    def admit_pending(self) -> None:
        """Refuse to queue one more request for a connection beyond ``max_pending_requests``.

        Raises:
            PoolOverflow: the pending-requests breaker is open.
        """
        stats = self.stats
        if stats.upstream_rq_pending_active >= self.max_pending_requests:
            stats.upstream_rq_pending_overflow += 1
            raise PoolOverflow("too many pending requests")

    # -- connections --------------------------------------------------------------------
    def can_connect(self) -> bool:
        """Whether one more connection may be opened; counts the refusal if not."""
        if self.connections < self.max_connections:
            return True
        self.stats.upstream_cx_overflow += 1
        return False

    # -- retries (for the router's retry logic) ------------------------------------------
    @property
    def retry_limit(self) -> int:
        """Concurrent retries allowed now (the budget depends on the current load)."""
        percent = self.budget_percent
        if percent is None:
            return self.max_retries
        stats = self.stats
        load = stats.upstream_rq_active + stats.upstream_rq_pending_active
        return max(self.min_retry_concurrency, int(load * percent / 100.0))

    def try_start_retry(self) -> bool:
        """Take a retry slot; ``False`` (counted as ``upstream_rq_retry_overflow``) when
        the retry breaker is open. Every ``True`` must be paired with :meth:`end_retry`."""
        if self.retries >= self.retry_limit:
            self.stats.upstream_rq_retry_overflow += 1
            return False
        self.retries += 1
        return True

    def end_retry(self) -> None:
        """Give back a slot taken by :meth:`try_start_retry` (the retry was answered)."""
        if self.retries > 0:
            self.retries -= 1

    def __repr__(self) -> str:
        return (
            f"<ClusterLimits cx={self.connections}/{self.max_connections} "
            f"rq={self.stats.upstream_rq_active}/{self.max_requests} "
            f"pending={self.stats.upstream_rq_pending_active}/{self.max_pending_requests} "
            f"retries={self.retries}/{self.retry_limit}>"
        )
