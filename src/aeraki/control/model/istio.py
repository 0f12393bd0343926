"""ServiceEntry and DestinationRule (``networking.istio.io`` v1alpha3/v1beta1/v1), §3.2 and §3.4.

The three API versions share one schema. Fields Aeraki reads are typed; the rest of Istio's
schema is accepted (valid Istio YAML must load) and either kept raw for the translation to
decide (``connectionPool``, ``outlierDetection``, ``tls``, …) or ignored. Unknown fields are
errors (see :mod:`aeraki.control.model.reader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aeraki.control.model.base import child_path
from aeraki.control.model.locality import LocalityLbSetting, parse_locality_lb_setting
from aeraki.control.model.reader import Reader, describe

__all__ = [
    "ConsistentHash",
    "DestinationRuleSpec",
    "LoadBalancer",
    "ServiceEntrySpec",
    "ServicePort",
    "Subset",
    "TrafficPolicy",
    "WorkloadEntry",
    "parse_destination_rule",
    "parse_service_entry",
]

PORT_MAX = 65535

# Istio proto enum names; the first of each is the proto3 zero value (the default).
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")
RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN")
SIMPLE_LB = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    """``ports[]``: the ``name`` selects the protocol (§4); ``target_port`` 0 = same as number."""

    number: int
    name: str = ""
    protocol: str = ""
    target_port: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadEntry:
    """``endpoints[]`` of a STATIC/DNS ServiceEntry; ``ports`` maps a port *name* to a number."""

    address: str
    ports: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 0
    network: str = ""
    locality: str = ""
    service_account: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntrySpec:
    """``ServiceEntry.spec``. Aeraki uses ``hosts[0]`` as the service identity (§3.2)."""

    hosts: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    location: str = "MESH_EXTERNAL"
    resolution: str = "NONE"
    endpoints: tuple[WorkloadEntry, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistentHash:
    """``loadBalancer.consistentHash``: exactly one hash key; Aeraki reads ``http_header_name``
    (§3.4), which our MetaProtocol data plane hashes as a metadata key (§6.8)."""

    http_header_name: str = ""
    http_cookie: Mapping[str, Any] | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str = ""
    minimum_ring_size: int | None = None
    ring_hash: Mapping[str, Any] | None = None
    maglev: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancer:
    """``simple`` and ``consistent_hash`` are a oneof; both ``None`` = Istio's default."""

    simple: str | None = None
    consistent_hash: ConsistentHash | None = None
    locality_lb_setting: LocalityLbSetting | None = None
    warmup_duration_secs: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficPolicy:
    """Typed load balancer; the other policies are kept as written for translation to use."""

    load_balancer: LoadBalancer | None = None
    connection_pool: Mapping[str, Any] | None = None
    outlier_detection: Mapping[str, Any] | None = None
    tls: Mapping[str, Any] | None = None
    port_level_settings: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Subset:
    """A named subset; ``labels`` select endpoints for cluster ``outbound|port|name|host``."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationRuleSpec:
    """``DestinationRule.spec`` (§3.4); a short ``host`` is expanded with the DR's namespace."""

    host: str = ""
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None


# --- conversion -------------------------------------------------------------------------------


def _raw(r: Reader, value: Any, path: str) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        r.error(path, f"expected a mapping, got {describe(value)}")
        return None
    return value


def _port(r: Reader, value: Any, path: str) -> ServicePort | None:
    data = r.obj(value, path, ("number", "name", "protocol", "targetPort"))
    if data is None:
        return None
    number = r.integer(data, "number", path, high=PORT_MAX, required="required field is missing")
    if number is None:
        return None
    return ServicePort(
        number=number,
        name=r.string(data, "name", path),
        protocol=r.string(data, "protocol", path),
        target_port=r.integer(data, "targetPort", path, high=PORT_MAX) or 0,
    )


def _port_map(r: Reader, data: Mapping[str, Any], path: str) -> dict[str, int]:
    ports = r.child(data, "ports", path, lambda v, p: _raw(r, v, p)) or {}
    out: dict[str, int] = {}
    for name in ports:
        number = r.integer(ports, name, child_path(path, "ports"), high=PORT_MAX)
        if number is not None:
            out[str(name)] = number
    return out


_ENDPOINT_FIELDS = (
    "address",
    "ports",
    "labels",
    "weight",
    "network",
    "locality",
    "serviceAccount",
)


def _endpoint(r: Reader, value: Any, path: str) -> WorkloadEntry | None:
    data = r.obj(value, path, _ENDPOINT_FIELDS)
    if data is None:
        return None
    address = r.string(data, "address", path, required="required field is missing")
    if not address:
        return None
    return WorkloadEntry(
        address=address,
        ports=_port_map(r, data, path),
        labels=r.string_map(data, "labels", path),
        weight=r.integer(data, "weight", path) or 0,
        network=r.string(data, "network", path),
        locality=r.string(data, "locality", path),
        service_account=r.string(data, "serviceAccount", path),
    )


def _selector(r: Reader, value: Any, path: str) -> dict[str, str] | None:
    data = r.obj(value, path, ("labels", "matchLabels"))
    if data is None:
        return None
    key = "matchLabels" if "matchLabels" in data else "labels"  # DR uses matchLabels
    return r.string_map(data, key, path)


_SE_FIELDS = (
    "hosts",
    "addresses",
    "ports",
    "location",
    "resolution",
    "endpoints",
    "workloadSelector",
    "exportTo",
    "subjectAltNames",
)


def parse_service_entry(r: Reader, value: Any, path: str) -> ServiceEntrySpec | None:
    data = r.obj(value, path, _SE_FIELDS)
    if data is None:
        return None
    return ServiceEntrySpec(
        hosts=r.strings(data, "hosts", path),
        addresses=r.strings(data, "addresses", path),
        ports=r.items(data, "ports", path, lambda v, p: _port(r, v, p)),
        location=r.enum(data, "location", path, LOCATIONS) or LOCATIONS[0],
        resolution=r.enum(data, "resolution", path, RESOLUTIONS) or RESOLUTIONS[0],
        endpoints=r.items(data, "endpoints", path, lambda v, p: _endpoint(r, v, p)),
        workload_selector=r.child(data, "workloadSelector", path, lambda v, p: _selector(r, v, p)),
        export_to=r.strings(data, "exportTo", path),
        subject_alt_names=r.strings(data, "subjectAltNames", path),
    )


_HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")


def _consistent_hash(r: Reader, value: Any, path: str) -> ConsistentHash | None:
    data = r.obj(value, path, (*_HASH_KEYS, "minimumRingSize", "ringHash", "maglev"))
    if data is None:
        return None
    keys = [k for k in _HASH_KEYS if data.get(k) not in (None, False, "")]
    if len(keys) > 1:
        r.error(path, f"only one hash key may be set (found {', '.join(keys)})")
    return ConsistentHash(
        http_header_name=r.string(data, "httpHeaderName", path),
        http_cookie=r.child(data, "httpCookie", path, lambda v, p: _raw(r, v, p)),
        use_source_ip=r.boolean(data, "useSourceIp", path),
        http_query_parameter_name=r.string(data, "httpQueryParameterName", path),
        minimum_ring_size=r.integer(data, "minimumRingSize", path, high=2**63 - 1),
        ring_hash=r.child(data, "ringHash", path, lambda v, p: _raw(r, v, p)),
        maglev=r.child(data, "maglev", path, lambda v, p: _raw(r, v, p)),
    )


def _load_balancer(r: Reader, value: Any, path: str) -> LoadBalancer | None:
    data = r.obj(
        value, path, ("simple", "consistentHash", "localityLbSetting", "warmupDurationSecs")
    )
    if data is None:
        return None
    if data.get("simple") is not None and data.get("consistentHash") is not None:
        r.error(path, "only one of simple, consistentHash may be set")
    return LoadBalancer(
        simple=r.enum(data, "simple", path, SIMPLE_LB),
        consistent_hash=r.child(
            data, "consistentHash", path, lambda v, p: _consistent_hash(r, v, p)
        ),
        locality_lb_setting=r.child(
            data, "localityLbSetting", path, lambda v, p: parse_locality_lb_setting(r, v, p)
        ),
        warmup_duration_secs=r.duration(data, "warmupDurationSecs", path),
    )


_POLICY_FIELDS = ("loadBalancer", "connectionPool", "outlierDetection", "tls", "portLevelSettings")

_TCP_FIELDS = ("maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration")
_HTTP_FIELDS = (
    "http1MaxPendingRequests",
    "http2MaxRequests",
    "maxRequestsPerConnection",
    "maxRetries",
    "idleTimeout",
    "h2UpgradePolicy",
    "useClientProtocol",
    "maxConcurrentStreams",
)
_OUTLIER_COUNTS = (
    "consecutiveErrors",
    "consecutive5xxErrors",
    "consecutiveGatewayErrors",
    "consecutiveLocalOriginFailures",
)
_OUTLIER_FIELDS = (
    *_OUTLIER_COUNTS,
    "splitExternalLocalOriginErrors",
    "interval",
    "baseEjectionTime",
    "maxEjectionPercent",
    "minHealthPercent",
)
INT32_MAX = 2**31 - 1


def _positive_duration(r: Reader, data: Mapping[str, Any], key: str, path: str) -> None:
    value = r.duration(data, key, path)
    if value is not None and value < timedelta(milliseconds=1):
        r.error(child_path(path, key), "must be at least 1ms")


def _connection_pool(r: Reader, value: Any, path: str) -> Mapping[str, Any] | None:
    """``connectionPool``, checked as Istio's validation does; kept as written."""
    data = r.obj(value, path, ("tcp", "http"))
    if data is None:
        return None
    tcp = r.child(data, "tcp", path, lambda v, p: r.obj(v, p, _TCP_FIELDS, ("idleTimeout",)))
    if tcp is not None:
        tcp_path = child_path(path, "tcp")
        r.integer(tcp, "maxConnections", tcp_path, high=INT32_MAX)
        _positive_duration(r, tcp, "connectTimeout", tcp_path)
        r.duration(tcp, "maxConnectionDuration", tcp_path)
    http = r.child(data, "http", path, lambda v, p: r.obj(v, p, _HTTP_FIELDS))
    if http is not None:
        http_path = child_path(path, "http")
        for key in ("http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection"):
            r.integer(http, key, http_path, high=INT32_MAX)
        r.integer(http, "maxRetries", http_path, high=INT32_MAX)
        r.integer(http, "maxConcurrentStreams", http_path, high=INT32_MAX)
        r.duration(http, "idleTimeout", http_path)
    return data


def _outlier_detection(r: Reader, value: Any, path: str) -> Mapping[str, Any] | None:
    """``outlierDetection``, checked as Istio's validation does; kept as written."""
    data = r.obj(value, path, _OUTLIER_FIELDS)
    if data is None:
        return None
    for key in _OUTLIER_COUNTS:
        r.integer(data, key, path, high=INT32_MAX)
    if data.get("consecutiveErrors") is not None:
        r.warning(
            child_path(path, "consecutiveErrors"),
            "deprecated: use consecutiveGatewayErrors (what it means) or consecutive5xxErrors",
        )
    r.boolean(data, "splitExternalLocalOriginErrors", path)
    _positive_duration(r, data, "interval", path)
    _positive_duration(r, data, "baseEjectionTime", path)
    r.integer(data, "maxEjectionPercent", path, high=100)
    r.integer(data, "minHealthPercent", path, high=100)
    return data


def _port_level(r: Reader, value: Any, path: str) -> Mapping[str, Any] | None:
    """A ``portLevelSettings`` item: its pool and outlier settings are checked too."""
    known = ("port", "loadBalancer", "connectionPool", "outlierDetection", "tls")
    data = r.obj(value, path, known)
    if data is None:
        return None
    r.child(data, "connectionPool", path, lambda v, p: _connection_pool(r, v, p))
    r.child(data, "outlierDetection", path, lambda v, p: _outlier_detection(r, v, p))
    return data


def _traffic_policy(r: Reader, value: Any, path: str) -> TrafficPolicy | None:
    data = r.obj(value, path, _POLICY_FIELDS, ignored=("tunnel", "proxyProtocol"))
    if data is None:
        return None
    load_balancer = r.child(data, "loadBalancer", path, lambda v, p: _load_balancer(r, v, p))
    locality = load_balancer.locality_lb_setting if load_balancer else None
    if locality is not None and locality.wants_failover and data.get("outlierDetection") is None:
        r.warning(
            child_path(child_path(path, "loadBalancer"), "localityLbSetting"),
            "failover needs outlierDetection in the same traffic policy: without it no host "
            "is ever found unhealthy, so traffic never fails over (as in Istio)",
        )
    return TrafficPolicy(
        load_balancer=load_balancer,
        connection_pool=r.child(
            data, "connectionPool", path, lambda v, p: _connection_pool(r, v, p)
        ),
        outlier_detection=r.child(
            data, "outlierDetection", path, lambda v, p: _outlier_detection(r, v, p)
        ),
        tls=r.child(data, "tls", path, lambda v, p: _raw(r, v, p)),
        port_level_settings=r.items(
            data, "portLevelSettings", path, lambda v, p: _port_level(r, v, p)
        ),
    )


def _subset(r: Reader, value: Any, path: str) -> Subset | None:
    data = r.obj(value, path, ("name", "labels", "trafficPolicy"))
    if data is None:
        return None
    name = r.string(data, "name", path, required="required field is missing")
    if not name:
        return None
    return Subset(
        name=name,
        labels=r.string_map(data, "labels", path),
        traffic_policy=r.child(data, "trafficPolicy", path, lambda v, p: _traffic_policy(r, v, p)),
    )


def parse_destination_rule(r: Reader, value: Any, path: str) -> DestinationRuleSpec | None:
    known = ("host", "trafficPolicy", "subsets", "exportTo", "workloadSelector")
    data = r.obj(value, path, known)
    if data is None:
        return None
    return DestinationRuleSpec(
        host=r.string(data, "host", path, required="required field is missing"),
        traffic_policy=r.child(data, "trafficPolicy", path, lambda v, p: _traffic_policy(r, v, p)),
        subsets=r.items(data, "subsets", path, lambda v, p: _subset(r, v, p)),
        export_to=r.strings(data, "exportTo", path),
        workload_selector=r.child(data, "workloadSelector", path, lambda v, p: _selector(r, v, p)),
    )
