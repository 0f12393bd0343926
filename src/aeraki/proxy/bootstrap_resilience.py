"""Cluster resilience settings from protos: circuit breakers, outlier detection, health checks.

Envoy ``Cluster`` fields -> :class:`~aeraki.proxy.config.CircuitBreakerConfig`,
:class:`~aeraki.proxy.config.OutlierConfig` and :class:`~aeraki.proxy.config.HealthCheckConfig`,
every value checked here once (bootstrap and CDS alike), so the proxy only reads plain
numbers. Which fields are accepted at all is :mod:`aeraki.proxy.bootstrap_strict`'s job;
this module checks the values and the few settings whose *value* we cannot honour.

``max_requests_per_connection`` is read from the cluster's deprecated field or from
``typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
.common_http_protocol_options`` (where Istio puts it; the upstream HTTP version chosen there
means nothing to a MetaProtocol upstream and is ignored).
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from aeraki.proxy.bootstrap_problems import Problems, duration_seconds, join
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import (
    CircuitBreakerConfig,
    HealthCheckConfig,
    OutlierConfig,
    RetryBudgetConfig,
)

__all__ = ["HTTP_PROTOCOL_OPTIONS", "convert_resilience"]

#: The one ``typed_extension_protocol_options`` key the proxy reads.
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_PERCENT_FIELDS = (
    "max_ejection_percent",
    "enforcing_consecutive_5xx",
    "enforcing_consecutive_gateway_failure",
    "enforcing_consecutive_local_origin_failure",
)
_COUNT_FIELDS = (
    "consecutive_5xx",
    "consecutive_gateway_failure",
    "consecutive_local_origin_failure",
)
#: Detectors not implemented: accepted only switched off (Istio sends enforcing_success_rate 0).
_OFF_ONLY = (
    "enforcing_success_rate",
    "enforcing_local_origin_success_rate",
    "enforcing_failure_percentage",
    "enforcing_failure_percentage_local_origin",
)
_DURATIONS = ("interval", "base_ejection_time", "max_ejection_time")


def convert_resilience(cluster: Any, path: str, problems: Problems) -> dict[str, Any]:
    """``ClusterConfig`` keyword arguments for the cluster's resilience settings."""
    out: dict[str, Any] = {}
    per_connection = _max_requests_per_connection(cluster, path, problems)
    breakers = _circuit_breakers(cluster, path, problems)
    if per_connection or breakers is not None:
        out["circuit_breakers"] = CircuitBreakerConfig(
            **(_fields(breakers) if breakers is not None else {}),
            max_requests_per_connection=per_connection,
        )
    if cluster.HasField("outlier_detection"):
        out["outlier_detection"] = _outlier(
            cluster.outlier_detection, join(path, "outlier_detection"), problems
        )
    if cluster.health_checks:
        out["health_check"] = _health_check(cluster, path, problems)
    return out


def _fields(config: CircuitBreakerConfig) -> dict[str, Any]:
    return {
        "max_connections": config.max_connections,
        "max_pending_requests": config.max_pending_requests,
        "max_requests": config.max_requests,
        "max_retries": config.max_retries,
        "retry_budget": config.retry_budget,
    }


# --- circuit breakers -------------------------------------------------------------------


def _circuit_breakers(cluster: Any, path: str, problems: Problems) -> CircuitBreakerConfig | None:
    """The DEFAULT-priority thresholds. HIGH-priority ones are accepted and never apply:
    MetaProtocol routes have no priority, so every request is DEFAULT, as in Envoy."""
    if not cluster.HasField("circuit_breakers"):
        return None
    found: CircuitBreakerConfig | None = None
    for i, thresholds in enumerate(cluster.circuit_breakers.thresholds):
        t_path = join(path, f"circuit_breakers.thresholds[{i}]")
        if thresholds.priority != 0:
            continue
        if found is not None:
            problems.add(join(t_path, "priority"), "DEFAULT thresholds are given twice")
            continue
        found = _thresholds(thresholds, t_path, problems)
    return found


def _thresholds(thresholds: Any, path: str, problems: Problems) -> CircuitBreakerConfig:
    defaults = CircuitBreakerConfig()
    values: dict[str, Any] = {}
    for name in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
        values[name] = (
            getattr(thresholds, name).value
            if thresholds.HasField(name)
            else getattr(defaults, name)
        )
    if thresholds.HasField("retry_budget"):
        budget = thresholds.retry_budget
        b_path = join(path, "retry_budget")
        percent = budget.budget_percent.value if budget.HasField("budget_percent") else 20.0
        if not 0.0 <= percent <= 100.0:
            problems.add(join(b_path, "budget_percent"), f"must be in 0..100, got {percent}")
        minimum = (
            budget.min_retry_concurrency.value if budget.HasField("min_retry_concurrency") else 3
        )
        values["retry_budget"] = RetryBudgetConfig(
            budget_percent=percent, min_retry_concurrency=minimum
        )
    return CircuitBreakerConfig(**values)


def _max_requests_per_connection(cluster: Any, path: str, problems: Problems) -> int:
    value = 0
    if cluster.HasField("max_requests_per_connection"):
        value = cluster.max_requests_per_connection.value
    for key, packed in cluster.typed_extension_protocol_options.items():
        o_path = join(path, f"typed_extension_protocol_options[{key!r}]")
        if key != HTTP_PROTOCOL_OPTIONS:
            problems.add(o_path, f"not supported yet (only {HTTP_PROTOCOL_OPTIONS})")
            continue
        options = http_protocol_options_pb2.HttpProtocolOptions()
        if not packed.Unpack(options):
            problems.add(o_path, f"expected {HTTP_PROTOCOL_OPTIONS}, got {packed.type_url}")
            continue
        check_supported(options, o_path, problems)
        common = options.common_http_protocol_options
        if common.HasField("max_requests_per_connection"):
            if value:
                problems.add(
                    join(o_path, "common_http_protocol_options.max_requests_per_connection"),
                    "also set by the cluster's max_requests_per_connection; set it once",
                )
            value = common.max_requests_per_connection.value
    return value


# --- outlier detection ------------------------------------------------------------------


def _outlier(proto: Any, path: str, problems: Problems) -> OutlierConfig:
    """Consecutive-error detection; the local-origin counter only acts with the split."""
    values: dict[str, Any] = {}
    for name in (*_COUNT_FIELDS, *_PERCENT_FIELDS):
        if proto.HasField(name):
            values[name] = getattr(proto, name).value
    for name in _PERCENT_FIELDS:
        if values.get(name, 0) > 100:
            problems.add(join(path, name), f"must be a percentage (0..100), got {values[name]}")
    for name in _OFF_ONLY:
        if proto.HasField(name) and getattr(proto, name).value != 0:
            problems.add(
                join(path, name),
                "success-rate and failure-percentage detection are not "
                "supported yet; only 0 (off) is accepted",
            )
    for name in _DURATIONS:
        if proto.HasField(name):
            seconds = duration_seconds(getattr(proto, name))
            if seconds <= 0:
                problems.add(join(path, name), f"must be greater than 0, got {seconds}s")
            values[name] = seconds
    values["split_external_local_origin_errors"] = proto.split_external_local_origin_errors
    if proto.HasField("successful_active_health_check_uneject_host"):
        values["successful_active_health_check_uneject_host"] = (
            proto.successful_active_health_check_uneject_host.value
        )
    return OutlierConfig(**values)


# --- health checks ----------------------------------------------------------------------


def _health_check(cluster: Any, path: str, problems: Problems) -> HealthCheckConfig | None:
    if len(cluster.health_checks) > 1:
        problems.add(join(path, "health_checks[1]"), "only one health check per cluster")
    check = cluster.health_checks[0]
    h_path = join(path, "health_checks[0]")
    if not check.HasField("tcp_health_check"):
        problems.add(h_path, "only tcp_health_check is supported")
        return None
    seconds: dict[str, float] = {}
    for name in ("timeout", "interval"):
        if not check.HasField(name):
            problems.add(join(h_path, name), "required")
            seconds[name] = 1.0
            continue
        seconds[name] = duration_seconds(getattr(check, name))
        if seconds[name] <= 0:
            problems.add(join(h_path, name), f"must be greater than 0, got {seconds[name]}s")
    thresholds: dict[str, int] = {}
    for name in ("unhealthy_threshold", "healthy_threshold"):
        if not check.HasField(name):
            problems.add(join(h_path, name), "required")
        thresholds[name] = max(1, getattr(check, name).value)
    tcp = check.tcp_health_check
    t_path = join(h_path, "tcp_health_check")
    send = _payload(tcp.send, join(t_path, "send"), problems) if tcp.HasField("send") else b""
    receive = tuple(
        _payload(p, join(t_path, f"receive[{i}]"), problems) for i, p in enumerate(tcp.receive)
    )
    return HealthCheckConfig(
        timeout=seconds["timeout"],
        interval=seconds["interval"],
        unhealthy_threshold=thresholds["unhealthy_threshold"],
        healthy_threshold=thresholds["healthy_threshold"],
        send=send,
        receive=receive,
    )


def _payload(payload: Any, path: str, problems: Problems) -> bytes:
    """``Payload.text`` is hex (Envoy's rule), ``binary`` raw bytes; empty is refused."""
    kind = payload.WhichOneof("payload")
    if kind == "binary" and payload.binary:
        return bytes(payload.binary)
    if kind == "text" and payload.text:
        try:
            return bytes.fromhex(payload.text)
        except ValueError:
            problems.add(join(path, "text"), f"must be hex-encoded bytes, got {payload.text!r}")
            return b""
    problems.add(path, "empty payload")
    return b""
