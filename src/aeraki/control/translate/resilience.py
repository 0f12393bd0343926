"""DestinationRule ``connectionPool`` and ``outlierDetection`` -> Envoy cluster fields.

As Istio builds them (``pilot/pkg/networking/core/cluster_traffic_policy.go``), for our proxy
and for real Envoy alike:

- which settings apply to cluster ``outbound|port|subset|host``: the top-level policy, its
  ``portLevelSettings`` entry for the port replacing both; a subset's own ``connectionPool``
  / ``outlierDetection`` replacing those; the subset's entry for the port replacing both
  (Istio's ``MergeTrafficPolicy``: port-level settings do not inherit);
- ``tcp.maxConnections``, ``http.http1MaxPendingRequests``, ``http.http2MaxRequests`` and
  ``http.maxRetries`` -> the DEFAULT ``circuit_breakers.thresholds`` (0 = unset, as in
  Istio); unset ones keep Envoy's defaults (1024, 3 retries) — Istio would make them
  unlimited, which is no protection at all;
- ``http.maxRequestsPerConnection`` -> ``typed_extension_protocol_options`` HttpProtocolOptions
  (where Istio puts it; the HTTP/1 choice there is required by Envoy, meaningless for TCP);
- ``outlierDetection``: ``consecutive5xxErrors`` / ``consecutiveGatewayErrors`` with their
  enforcement at 100 % when > 0 (0 switches the detector off), the deprecated
  ``consecutiveErrors`` as gateway errors, ``consecutiveLocalOriginFailures`` only with
  ``splitExternalLocalOriginErrors``, ``interval``, ``baseEjectionTime``,
  ``maxEjectionPercent``; success-rate detection explicitly off (Envoy would run it by
  default, our proxy has none). ``minHealthPercent`` becomes the cluster's
  ``healthy_panic_threshold``, default 0 (no panic mode), as Istio sets it.

``connectTimeout`` is applied by :mod:`.clusters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from aeraki.control.model.base import Resource, Severity
from aeraki.control.model.istio import DestinationRuleSpec, TrafficPolicy
from aeraki.control.model.reader import parse_duration
from aeraki.control.translate.catalog import Catalog, problem

__all__ = ["HTTP_PROTOCOL_OPTIONS", "apply_resilience"]

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

#: Istio field -> Envoy threshold.
_THRESHOLDS = (
    ("tcp", "maxConnections", "max_connections"),
    ("http", "http1MaxPendingRequests", "max_pending_requests"),
    ("http", "http2MaxRequests", "max_requests"),
    ("http", "maxRetries", "max_retries"),
)
_NOT_APPLIED = (
    ("tcp", "tcpKeepalive"),
    ("tcp", "maxConnectionDuration"),
    ("tcp", "idleTimeout"),
    ("http", "idleTimeout"),
)
#: A setting as written and its field path in the DestinationRule.
Setting = tuple[Mapping[str, Any], str]


def apply_resilience(
    catalog: Catalog,
    cluster: cluster_pb2.Cluster,
    rule: Resource[DestinationRuleSpec] | None,
    subset: str,
    port: int,
) -> None:
    """Set the cluster's circuit breakers and outlier detection from ``rule``."""
    if rule is None:
        return
    pool, outlier = effective_settings(rule.spec, subset, port)
    if pool is not None:
        _apply_pool(catalog, rule, cluster, pool)
    if outlier is not None:
        _apply_outlier(cluster, outlier)


def _setting(value: Mapping[str, Any] | None, path: str) -> Setting | None:
    return (value, path) if value is not None else None


def _of_policy(
    policy: TrafficPolicy, path: str, port: int
) -> tuple[Setting | None, Setting | None, bool]:
    """(pool, outlier, whether a port-level entry decided) of one traffic policy."""
    for i, entry in enumerate(policy.port_level_settings):
        selector = entry.get("port")
        if isinstance(selector, Mapping) and selector.get("number") == port:
            here = f"{path}.portLevelSettings[{i}]"
            return (
                _setting(entry.get("connectionPool"), f"{here}.connectionPool"),
                _setting(entry.get("outlierDetection"), f"{here}.outlierDetection"),
                True,
            )
    return (
        _setting(policy.connection_pool, f"{path}.connectionPool"),
        _setting(policy.outlier_detection, f"{path}.outlierDetection"),
        False,
    )


def effective_settings(
    spec: DestinationRuleSpec, subset: str, port: int
) -> tuple[Setting | None, Setting | None]:
    """The ``connectionPool`` and ``outlierDetection`` in force for one cluster."""
    pool: Setting | None = None
    outlier: Setting | None = None
    if spec.traffic_policy is not None:
        pool, outlier, _ = _of_policy(spec.traffic_policy, "spec.trafficPolicy", port)
    for i, candidate in enumerate(spec.subsets):
        if candidate.name != subset or candidate.traffic_policy is None:
            continue
        sub_pool, sub_outlier, by_port = _of_policy(
            candidate.traffic_policy, f"spec.subsets[{i}].trafficPolicy", port
        )
        if by_port:
            return sub_pool, sub_outlier
        return sub_pool or pool, sub_outlier or outlier
    return pool, outlier


def _count(section: Any, key: str) -> int:
    value = section.get(key) if isinstance(section, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _apply_pool(
    catalog: Catalog,
    rule: Resource[DestinationRuleSpec],
    cluster: cluster_pb2.Cluster,
    setting: Setting,
) -> None:
    pool, path = setting
    values = {envoy: _count(pool.get(section), key) for section, key, envoy in _THRESHOLDS}
    values = {name: value for name, value in values.items() if value}
    if values:
        thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
            **{name: wrappers_pb2.UInt32Value(value=value) for name, value in values.items()}
        )
        cluster.circuit_breakers.thresholds.append(thresholds)
    per_connection = _count(pool.get("http"), "maxRequestsPerConnection")
    if per_connection:
        options = http_protocol_options_pb2.HttpProtocolOptions(
            common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
                max_requests_per_connection=wrappers_pb2.UInt32Value(value=per_connection)
            ),
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http_protocol_options=protocol_pb2.Http1ProtocolOptions()
            ),
        )
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(options)
    for section, key in _NOT_APPLIED:
        part = pool.get(section)
        if isinstance(part, Mapping) and part.get(key) is not None:
            catalog.problems.append(
                problem(
                    rule,
                    f"{path}.{section}.{key}",
                    "not applied by the standalone data plane",
                    Severity.WARNING,
                )
            )


def _duration(text: Any) -> duration_pb2.Duration | None:
    seconds = parse_duration(text) if isinstance(text, str) else None
    if seconds is None or seconds <= 0:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def _apply_outlier(cluster: cluster_pb2.Cluster, setting: Setting) -> None:
    spec, _ = setting
    out = outlier_detection_pb2.OutlierDetection(
        enforcing_success_rate=wrappers_pb2.UInt32Value(value=0)
    )
    deprecated = _count(spec, "consecutiveErrors")
    if deprecated:
        out.consecutive_gateway_failure.value = deprecated
        out.enforcing_consecutive_gateway_failure.value = 100
        out.enforcing_consecutive_5xx.value = 0
    for key, count, enforcing in (
        ("consecutive5xxErrors", "consecutive_5xx", "enforcing_consecutive_5xx"),
        (
            "consecutiveGatewayErrors",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
        ),
    ):
        value = spec.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            getattr(out, count).value = value
            getattr(out, enforcing).value = 100 if value > 0 else 0
    for key, field in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        duration = _duration(spec.get(key))
        if duration is not None:
            getattr(out, field).CopyFrom(duration)
    percent = _count(spec, "maxEjectionPercent")
    if percent:
        out.max_ejection_percent.value = percent
    if spec.get("splitExternalLocalOriginErrors") is True:
        out.split_external_local_origin_errors = True
        local = _count(spec, "consecutiveLocalOriginFailures")
        if local:
            out.consecutive_local_origin_failure.value = local
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    cluster.outlier_detection.CopyFrom(out)
    # As Istio: with outlier detection the panic threshold is minHealthPercent, whose
    # default 0 turns panic mode off (ejected hosts stay out even when few are left).
    cluster.common_lb_config.healthy_panic_threshold.value = float(
        spec.get("minHealthPercent") or 0
    )
