"""Proxy statistics: every stat declared once, with its kind and help text.

Counters are plain ``int`` slots on one object per listener (``stats.request += 1`` costs
about 40 ns), so the hot path allocates nothing; names follow Aeraki's
``meta_protocol.<application_protocol>.<stat_prefix>.<stat>`` scheme (reference §26) so
dashboards built for Aeraki keep working.
"""

from __future__ import annotations

from aeraki.metrics import MetricSpec as StatSpec

__all__ = [
    "CLUSTER_STATS",
    "LISTENER_STATS",
    "LOCAL_RATE_LIMIT_STATS",
    "RATE_LIMIT_STATS",
    "SUPERVISOR_STATS",
    "ClusterStats",
    "ListenerStats",
    "LocalRateLimitStats",
    "RateLimitStats",
    "StatSpec",
]


LISTENER_STATS: tuple[StatSpec, ...] = (
    StatSpec("request", "counter", "Downstream messages finalized (incl. local-replied, oneway)."),
    StatSpec("request_twoway", "counter", "Two-way requests finalized."),
    StatSpec("request_oneway", "counter", "One-way requests forwarded."),
    StatSpec("request_event", "counter", "Heartbeats answered by the proxy."),
    StatSpec("request_decoding_success", "counter", "Downstream messages decoded."),
    StatSpec("request_decoding_error", "counter", "Downstream connections closed for bad bytes."),
    StatSpec("request_active", "gauge", "Requests waiting for their response."),
    StatSpec("response", "counter", "Upstream responses forwarded downstream."),
    StatSpec("response_success", "counter", "Forwarded responses with status OK."),
    StatSpec("response_error", "counter", "Forwarded responses with status ERROR."),
    StatSpec("response_decoding_error", "counter", "Upstream responses that failed to decode."),
    StatSpec("response_error_caused_connection_close", "counter", "Responses after close."),
    StatSpec("local_response_business_exception", "counter", "Error replies sent by the proxy."),
    StatSpec("request_timeout", "counter", "Requests answered with a timeout by the proxy."),
    StatSpec("route_not_found", "counter", "Requests that matched no route."),
    StatSpec("mirror_sent", "counter", "Mirrored copies of requests sent."),
    StatSpec("delays_injected", "counter", "Requests delayed by a route's fault policy."),
    StatSpec("aborts_injected", "counter", "Requests answered by a route's fault abort."),
    StatSpec("cx_total", "counter", "Downstream connections accepted."),
    StatSpec("cx_active", "gauge", "Downstream connections open."),
    StatSpec("cx_destroy_local_with_active_rq", "counter", "Requests lost to a local close."),
    StatSpec("cx_destroy_remote_with_active_rq", "counter", "Requests lost to a client close."),
    StatSpec("idle_timeout", "counter", "Downstream connections closed for idleness."),
)

CLUSTER_STATS: tuple[StatSpec, ...] = (
    StatSpec("upstream_cx_total", "counter", "Upstream connections opened."),
    StatSpec("upstream_cx_active", "gauge", "Upstream connections open."),
    StatSpec("upstream_cx_connect_fail", "counter", "Upstream connects refused or failed."),
    StatSpec("upstream_cx_connect_timeout", "counter", "Upstream connects that timed out."),
    StatSpec("upstream_cx_overflow", "counter", "Requests refused at the connection limit."),
    StatSpec("upstream_cx_destroy_with_active_rq", "counter", "Upstream closes with requests."),
    StatSpec("upstream_rq_total", "counter", "Requests sent upstream."),
    StatSpec("upstream_rq_active", "gauge", "Requests in flight upstream."),
    StatSpec("upstream_rq_pending_active", "gauge", "Requests waiting for a connection."),
    StatSpec("upstream_rq_timeout", "counter", "Requests that timed out upstream."),
    StatSpec(
        "upstream_rq_pending_overflow",
        "counter",
        "Requests refused by the pending-requests or requests circuit breaker.",
    ),
    StatSpec("upstream_rq_retry_overflow", "counter", "Retries refused by the retry breaker."),
    StatSpec("upstream_cx_max_requests", "counter", "Connections closed at their request cap."),
    StatSpec("outlier_detection_ejections_active", "gauge", "Hosts ejected now."),
    StatSpec("outlier_detection_ejections_enforced_total", "counter", "Ejections carried out."),
    StatSpec(
        "outlier_detection_ejections_enforced_consecutive_5xx",
        "counter",
        "Ejections for consecutive errors.",
    ),
    StatSpec(
        "outlier_detection_ejections_enforced_consecutive_gateway_failure",
        "counter",
        "Ejections for consecutive gateway failures.",
    ),
    StatSpec(
        "outlier_detection_ejections_enforced_consecutive_local_origin_failure",
        "counter",
        "Ejections for consecutive locally originated failures.",
    ),
    StatSpec(
        "outlier_detection_ejections_overflow",
        "counter",
        "Ejections skipped because max_ejection_percent was reached.",
    ),
    StatSpec("health_check_attempt", "counter", "Active health checks run."),
    StatSpec("health_check_success", "counter", "Active health checks passed."),
    StatSpec("health_check_failure", "counter", "Active health checks failed."),
    StatSpec("health_check_healthy", "gauge", "Hosts passing active health checks."),
    StatSpec("upstream_rq_per_try_timeout", "counter", "Attempts that hit the per-try timeout."),
    StatSpec("upstream_rq_retry", "counter", "Retries scheduled (attempts after the first)."),
    StatSpec("upstream_rq_retry_success", "counter", "Requests that succeeded after retrying."),
)


#: The local rate limit filter's, reported as ``<listener prefix>.local_rate_limit.<stat>``
#: (reference §22.2).
LOCAL_RATE_LIMIT_STATS: tuple[StatSpec, ...] = (
    StatSpec("ok", "counter", "Requests the local rate limit let through."),
    StatSpec("rate_limited", "counter", "Requests answered OverLimit by the local rate limit."),
)

#: The global rate limit filter's, reported as ``<listener prefix>.ratelimit.<stat>`` (the
#: names of Envoy's ratelimit filters; the reference filter has none, §22.3).
RATE_LIMIT_STATS: tuple[StatSpec, ...] = (
    StatSpec("ok", "counter", "Requests the rate limit service let through."),
    StatSpec("over_limit", "counter", "Requests answered OverLimit on the service's word."),
    StatSpec("error", "counter", "Calls to the rate limit service that failed or timed out."),
    StatSpec("failure_mode_allowed", "counter", "Requests let through despite an error."),
)

#: The supervisor's own, when the proxy runs several worker processes (``--workers``):
#: reported as ``server.<stat>`` next to the workers' summed stats.
SUPERVISOR_STATS: tuple[StatSpec, ...] = (
    StatSpec("workers", "gauge", "Worker processes running."),
    StatSpec("worker_restarts", "counter", "Worker processes replaced after they exited."),
)


class _Counters:
    """Base of the stats holders: zeroes every declared stat, snapshots them as a dict."""

    __slots__ = ()
    SPECS: tuple[StatSpec, ...] = ()

    def __init__(self) -> None:
        for spec in self.SPECS:
            setattr(self, spec.name, 0)

    def snapshot(self) -> dict[str, int]:
        """Current values by stat name."""
        return {spec.name: getattr(self, spec.name) for spec in self.SPECS}


class ListenerStats(_Counters):
    """Counters of one listener (one attribute per :data:`LISTENER_STATS` entry), plus the
    counters of its filters (:attr:`filter_stats`)."""

    __slots__ = (*(spec.name for spec in LISTENER_STATS), "filter_stats", "full_prefixes")
    SPECS = LISTENER_STATS

    request: int
    request_twoway: int
    request_oneway: int
    request_event: int
    request_decoding_success: int
    request_decoding_error: int
    request_active: int
    response: int
    response_success: int
    response_error: int
    response_decoding_error: int
    response_error_caused_connection_close: int
    local_response_business_exception: int
    request_timeout: int
    route_not_found: int
    mirror_sent: int
    delays_injected: int
    aborts_injected: int
    cx_total: int
    cx_active: int
    cx_destroy_local_with_active_rq: int
    cx_destroy_remote_with_active_rq: int
    idle_timeout: int

    def __init__(self) -> None:
        super().__init__()
        #: counters of this listener's filters by prefix, added by each filter when it is
        #: built and reported as ``<prefix>.<stat>`` (the holder may outlive the listener:
        #: rate limit buckets and their counters survive a listener update).
        self.filter_stats: dict[str, _Counters] = {}
        #: filters whose stats Envoy names outside the listener's scope: prefix -> full
        #: prefix (the local rate limit's ``meta_protocol.<its stat_prefix>.local_rate_limit``,
        #: reference §22.2), so dashboards built for Aeraki find them where they were.
        self.full_prefixes: dict[str, str] = {}

    def add_filter_stats(self, prefix: str, stats: _Counters, full_prefix: str = "") -> None:
        """Report ``stats`` as ``<listener prefix>.<prefix>.<stat>``, or as
        ``<full_prefix>.<stat>`` when given."""
        self.filter_stats[prefix] = stats
        if full_prefix:
            self.full_prefixes[prefix] = full_prefix

    def snapshot(self) -> dict[str, int]:
        """Current values by stat name (under the listener's prefix), the filters' included
        but those named in full (:meth:`full_snapshot`)."""
        out = super().snapshot()
        for prefix, stats in self.filter_stats.items():
            if prefix not in self.full_prefixes:
                for name, value in stats.snapshot().items():
                    out[f"{prefix}.{name}"] = value
        return out

    def full_snapshot(self) -> dict[str, int]:
        """The filters' stats named in full, by full name."""
        out: dict[str, int] = {}
        for prefix, full in self.full_prefixes.items():
            for name, value in self.filter_stats[prefix].snapshot().items():
                out[f"{full}.{name}"] = value
        return out


class ClusterStats(_Counters):
    """Counters of one cluster (one attribute per :data:`CLUSTER_STATS` entry)."""

    __slots__ = tuple(spec.name for spec in CLUSTER_STATS)
    SPECS = CLUSTER_STATS
    upstream_cx_total: int
    upstream_cx_active: int
    upstream_cx_connect_fail: int
    upstream_cx_connect_timeout: int
    upstream_cx_overflow: int
    upstream_cx_destroy_with_active_rq: int
    upstream_rq_total: int
    upstream_rq_active: int
    upstream_rq_pending_active: int
    upstream_rq_timeout: int
    upstream_rq_pending_overflow: int
    upstream_rq_retry_overflow: int
    upstream_cx_max_requests: int
    outlier_detection_ejections_active: int
    outlier_detection_ejections_enforced_total: int
    outlier_detection_ejections_enforced_consecutive_5xx: int
    outlier_detection_ejections_enforced_consecutive_gateway_failure: int
    outlier_detection_ejections_enforced_consecutive_local_origin_failure: int
    outlier_detection_ejections_overflow: int
    health_check_attempt: int
    health_check_success: int
    health_check_failure: int
    health_check_healthy: int
    upstream_rq_per_try_timeout: int
    upstream_rq_retry: int
    upstream_rq_retry_success: int


class LocalRateLimitStats(_Counters):
    """Counters of one local rate limit (:data:`LOCAL_RATE_LIMIT_STATS`)."""

    __slots__ = tuple(spec.name for spec in LOCAL_RATE_LIMIT_STATS)
    SPECS = LOCAL_RATE_LIMIT_STATS
    ok: int
    rate_limited: int


class RateLimitStats(_Counters):
    """Counters of one global rate limit filter (:data:`RATE_LIMIT_STATS`)."""

    __slots__ = tuple(spec.name for spec in RATE_LIMIT_STATS)
    SPECS = RATE_LIMIT_STATS
    ok: int
    over_limit: int
    error: int
    failure_mode_allowed: int
