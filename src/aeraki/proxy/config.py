"""The proxy's runtime configuration: plain frozen values, built once from protos.

Protobuf messages (bootstrap, xDS resources) become these objects at one boundary
(:mod:`aeraki.proxy.bootstrap`); the rest of the proxy never touches protos. Every object is
immutable, so a new configuration is swapped in atomically and in-flight requests keep the
one they started with.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AccessLogConfig",
    "AdminConfig",
    "AdsConfig",
    "CircuitBreakerConfig",
    "ClusterConfig",
    "DiscoveryType",
    "EndpointConfig",
    "FaultAbortConfig",
    "FaultConfig",
    "FaultDelayConfig",
    "FilterConfig",
    "HeaderMatch",
    "HealthCheckConfig",
    "LbPolicy",
    "ListenerConfig",
    "Locality",
    "MatchKind",
    "MetaProtocolConfig",
    "MirrorPolicy",
    "NO_LOCALITY",
    "OutlierConfig",
    "OtlpProviderConfig",
    "ProxyConfig",
    "RetryBudgetConfig",
    "RetryOn",
    "RetryPolicyConfig",
    "RouteConfig",
    "RouteTableConfig",
    "SocketAddress",
    "TracingConfig",
    "WeightedCluster",
]


@dataclass(frozen=True, slots=True)
class SocketAddress:
    """A TCP address; ``host`` is an IP literal or (STRICT_DNS) a name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Locality:
    """Where an endpoint (or this proxy) runs: Envoy's ``core.v3.Locality``.

    Empty fields mean "unknown"; two localities are the same only if all three fields are.
    """

    region: str = ""
    zone: str = ""
    sub_zone: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.region, self.zone, self.sub_zone) if p) or "-"


#: The locality of an endpoint or proxy that did not say where it runs.
NO_LOCALITY = Locality()


class MatchKind(enum.Enum):
    """The specifier of an Envoy HeaderMatcher (or of its StringMatcher)."""

    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    CONTAINS = "contains"
    REGEX = "regex"  # RE2 full match (Python ``re.fullmatch`` on the compiled pattern)
    PRESENT = "present"
    RANGE = "range"  # integer in [start, end)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMatch:
    """One metadata matcher with Envoy HeaderMatcher semantics (reference §20.1).

    ``present`` is the value of ``present_match`` (only for ``PRESENT``); ``value`` is the
    expected string (or regex pattern); ``range_start``/``range_end`` for ``RANGE``.
    """

    name: str
    kind: MatchKind
    value: str = ""
    present: bool = True
    range_start: int = 0
    range_end: int = 0
    ignore_case: bool = False
    invert: bool = False
    treat_missing_as_empty: bool = False


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    """One entry of ``weighted_clusters``."""

    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    """Mirror a fraction ``numerator/denominator`` of matching requests to ``cluster``."""

    cluster: str
    numerator: int = 100
    denominator: int = 100


class RetryOn(enum.Flag):
    """Conditions a retry policy retries on (``retry_on`` names in parentheses)."""

    NONE = 0
    #: no connection could be made; the request never left the proxy (connect-failure).
    CONNECT_FAILURE = enum.auto()
    #: the upstream connection closed or reset with the request outstanding (reset).
    RESET = enum.auto()
    #: the attempt hit its per-try timeout (timeout).
    TIMEOUT = enum.auto()
    #: a response the codec declares retriable, e.g. Dubbo "thread pool exhausted"
    #: (retriable-error).
    RETRIABLE_ERROR = enum.auto()
    #: any response with an error status (error-response).
    ERROR_RESPONSE = enum.auto()
    #: the pool or a circuit breaker refused the attempt (overflow).
    OVERFLOW = enum.auto()


#: ``retry_on`` names as configured -> flags.
RETRY_ON_NAMES: Mapping[str, RetryOn] = {
    "connect-failure": RetryOn.CONNECT_FAILURE,
    "reset": RetryOn.RESET,
    "timeout": RetryOn.TIMEOUT,
    "retriable-error": RetryOn.RETRIABLE_ERROR,
    "error-response": RetryOn.ERROR_RESPONSE,
    "overflow": RetryOn.OVERFLOW,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicyConfig:
    """Retries of one route (a project extension of MetaRoute; see docs/traffic-policy.md).

    Back-off before retry ``n`` (1-based) is drawn uniformly from
    ``[0, min(max_interval, base_interval * 2**(n-1)))`` ("full jitter"), as Envoy does.
    """

    num_retries: int = 1
    per_try_timeout: float | None = None
    retry_on: RetryOn = RetryOn.CONNECT_FAILURE | RetryOn.RESET
    base_interval: float = 0.025
    max_interval: float = 0.25
    retry_non_idempotent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultDelayConfig:
    """Delay ``numerator/denominator`` of a route's requests by ``fixed_delay`` seconds."""

    fixed_delay: float
    numerator: int = 100
    denominator: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultAbortConfig:
    """Answer ``numerator/denominator`` of a route's requests with a local error reply.

    ``error_type`` is a :class:`~aeraki.codec.api.ErrorType` name (checked when loaded).
    """

    error_type: str = "UNSPECIFIED"
    message: str = "fault injected"
    numerator: int = 100
    denominator: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    """Faults applied after a route matched and before an upstream is chosen."""

    delay: FaultDelayConfig | None = None
    abort: FaultAbortConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteConfig:
    """One route: matchers (AND), a destination, and per-route actions."""

    name: str = ""
    match: tuple[HeaderMatch, ...] = ()
    cluster: str = ""
    weighted_clusters: tuple[WeightedCluster, ...] = ()
    hash_policy: tuple[str, ...] = ()
    mirror_policies: tuple[MirrorPolicy, ...] = ()
    request_mutation: tuple[tuple[str, str], ...] = ()
    response_mutation: tuple[tuple[str, str], ...] = ()
    #: seconds, retries included; ``None`` waits as long as the upstream takes (Aeraki's
    #: behaviour).
    timeout: float | None = None
    retry_policy: RetryPolicyConfig | None = None
    fault: FaultConfig | None = None
    #: ``False`` marks the route's requests non-idempotent; ``None`` leaves it to the codec.
    idempotent: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTableConfig:
    """A MetaProtocol RouteConfiguration: routes in order, first match wins."""

    name: str = ""
    routes: tuple[RouteConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterConfig:
    """A ``meta_protocol_filters`` entry: the filter name and its unpacked config message."""

    name: str
    config: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessLogConfig:
    """One ``access_log`` entry (Envoy's file/stdout/stderr loggers, reference §25).

    ``path`` is a file, ``/dev/stdout`` or ``/dev/stderr``; the line format is either text
    (``text_format``; ``None`` = the default format) or JSON (``json_format``: key -> command
    operator string, or a nested mapping). Formats were checked when the config was loaded.
    """

    path: str
    text_format: str | None = None
    json_format: Mapping[str, Any] | None = None
    omit_empty_values: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OtlpProviderConfig:
    """Envoy's ``envoy.tracers.opentelemetry`` provider: OTLP/gRPC export to a cluster.

    ``max_cache_size`` is how many ended spans wait before a batch is sent (Envoy's meaning);
    a batch also leaves on the exporter's flush interval.
    """

    cluster: str
    service_name: str = ""
    max_cache_size: int = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingConfig:
    """The MetaProtocolProxy ``tracing`` message (reference §24), sampling as fractions.

    ``client_sampling`` is out of 100 (the integer part of the percent, as Envoy packs it);
    ``random_sampling`` and ``overall_sampling`` are out of 10,000. ``provider`` ``None`` is
    the null tracer: tracing configured, no spans.
    """

    client_sampling: int = 100
    random_sampling: int = 10_000
    overall_sampling: int = 10_000
    max_tag_length: int = 256
    provider: OtlpProviderConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaProtocolConfig:
    """The ``MetaProtocolProxy`` network filter of one listener.

    ``route_table`` is set for a static ``route_config``; ``rds_name`` for ``rds`` (routes
    then arrive over xDS; until they do, every request gets RouteNotFound).
    """

    stat_prefix: str
    application_protocol: str
    codec: str
    multiplexing: bool = False
    route_table: RouteTableConfig | None = None
    rds_name: str = ""
    filters: tuple[FilterConfig, ...] = ()
    idle_timeout: float | None = None
    access_logs: tuple[AccessLogConfig, ...] = ()
    #: ``tracing``: present enables tracing (reference §24).
    tracing: TracingConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    """A listener: where to accept, and the MetaProtocol filter that handles connections."""

    name: str
    address: SocketAddress
    proxy: MetaProtocolConfig
    #: ``traffic_direction``: ``INBOUND`` (a sidecar's server side), ``OUTBOUND`` (its
    #: client side) or ``UNSPECIFIED``; the Istio telemetry filters act by it (§22.4-22.5).
    traffic_direction: str = "UNSPECIFIED"


class DiscoveryType(enum.Enum):
    """How a cluster's endpoints are found."""

    STATIC = "STATIC"
    STRICT_DNS = "STRICT_DNS"
    EDS = "EDS"


class LbPolicy(enum.Enum):
    """Load-balancing policies (Envoy names)."""

    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    RING_HASH = "RING_HASH"
    MAGLEV = "MAGLEV"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointConfig:
    """One endpoint of a cluster; ``metadata`` is ``filter_metadata`` as plain dicts.

    ``locality``, ``priority`` and ``locality_weight`` come from the endpoint's
    ``LocalityLbEndpoints`` group (its ``load_balancing_weight``; 0 = not given).
    """

    address: SocketAddress
    weight: int = 1
    metadata: Mapping[str, Any] = field(default_factory=dict)
    locality: Locality = NO_LOCALITY
    priority: int = 0
    locality_weight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetConfig:
    """Envoy's ``retry_budget``: concurrent retries may be ``budget_percent`` % of the
    cluster's active plus pending requests, but never fewer than ``min_retry_concurrency``."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig:
    """Envoy's ``circuit_breakers.thresholds`` (DEFAULT priority), with Envoy's defaults.

    Every limit is per cluster, across its hosts. ``retry_budget``, when set, replaces
    ``max_retries``. ``max_requests_per_connection`` (0 = unlimited) is a cluster field in
    Envoy, kept here with the other limits.
    """

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    retry_budget: RetryBudgetConfig | None = None
    max_requests_per_connection: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierConfig:
    """Envoy's cluster ``outlier_detection`` (consecutive-error detectors), Envoy's defaults.

    Times are seconds; ``enforcing_*`` are percentages (the chance a detected outlier is
    really ejected). Success-rate and failure-percentage detectors are not implemented.
    """

    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    consecutive_local_origin_failure: int = 5
    enforcing_consecutive_5xx: int = 100
    enforcing_consecutive_gateway_failure: int = 0
    enforcing_consecutive_local_origin_failure: int = 100
    split_external_local_origin_errors: bool = False
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10
    successful_active_health_check_uneject_host: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckConfig:
    """An active TCP health check (Envoy ``health_checks[0]`` with ``tcp_health_check``).

    Empty ``send`` and ``receive`` = connect only. Otherwise ``send`` is written after the
    connect and every ``receive`` payload must then be found in the reply, in order.
    """

    timeout: float
    interval: float
    unhealthy_threshold: int
    healthy_threshold: int
    send: bytes = b""
    receive: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """An upstream cluster."""

    name: str
    discovery: DiscoveryType = DiscoveryType.STATIC
    lb_policy: LbPolicy = LbPolicy.ROUND_ROBIN
    connect_timeout: float = 5.0
    endpoints: tuple[EndpointConfig, ...] = ()
    #: RING_HASH ring bounds (Envoy defaults) and MAGLEV table size (a prime).
    ring_min_size: int = 1024
    ring_max_size: int = 8 * 1024 * 1024
    maglev_table_size: int = 65537
    #: LEAST_REQUEST: how many random hosts are compared (power of two choices).
    choice_count: int = 2
    #: ``common_lb_config.locality_weighted_lb_config``: within a priority, pick a locality
    #: by its (health-adjusted) weight first (aeraki.proxy.upstream.lb.priority).
    locality_weighted: bool = False
    #: ``common_lb_config.healthy_panic_threshold`` in percent: below this share of healthy
    #: hosts the cluster (or priority level) balances over all of them. 0 turns panic off.
    panic_threshold: float = 50.0
    #: STRICT_DNS re-resolution period in seconds.
    dns_refresh_rate: float = 5.0
    #: EDS: the ClusterLoadAssignment name to subscribe to ("" = the cluster name).
    eds_service_name: str = ""
    circuit_breakers: CircuitBreakerConfig = CircuitBreakerConfig()
    #: consecutive-error outlier detection; ``None`` = off.
    outlier_detection: OutlierConfig | None = None
    #: active TCP health checking; ``None`` = off (every host is taken as healthy).
    health_check: HealthCheckConfig | None = None

    @property
    def eds_name(self) -> str:
        """The EDS resource name this cluster's endpoints arrive under."""
        return self.eds_service_name or self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """The admin HTTP endpoint."""

    address: SocketAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class AdsConfig:
    """``dynamic_resources``: where the ADS server is and what it supplies.

    ``cluster`` names a static cluster holding the server's address; ``delta`` selects the
    incremental protocol (``api_type: DELTA_GRPC``); ``lds``/``cds`` say whether listeners and
    clusters come over ADS (``lds_config``/``cds_config`` with ``ads: {}``) in addition to the
    endpoints and routes that ADS always carries for EDS clusters and ``rds`` listeners.
    """

    cluster: str
    delta: bool = False
    lds: bool = False
    cds: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """Everything the proxy runs with."""

    listeners: tuple[ListenerConfig, ...] = ()
    clusters: tuple[ClusterConfig, ...] = ()
    admin: AdminConfig | None = None
    node_id: str = ""
    node_cluster: str = ""
    #: ``node.metadata`` as plain data; sent to the control plane, which may scope what
    #: this proxy gets by it (e.g. NAMESPACE, SERVICES, BIND_ADDRESS).
    node_metadata: Mapping[str, Any] = field(default_factory=dict)
    #: ``node.locality``: sent to the control plane, which ranks endpoints by it.
    node_locality: Locality = NO_LOCALITY
    ads: AdsConfig | None = None
    #: bootstrap ``tracing.http``: the provider of listeners whose ``tracing`` names none
    #: (reference §24); ``None`` leaves those on the null tracer.
    tracing_provider: OtlpProviderConfig | None = None
