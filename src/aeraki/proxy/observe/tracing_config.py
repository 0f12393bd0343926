"""The MetaProtocolProxy ``tracing`` message -> :class:`~aeraki.proxy.config.TracingConfig`.

Kept apart from :mod:`aeraki.proxy.observe.tracing` so that loading a bootstrap never imports
the OpenTelemetry SDK: only a listener that really traces pays for it.

Sampling fractions follow reference §24: ``client_sampling`` keeps the integer part of the
percent out of 100; ``random_sampling`` and ``overall_sampling`` are rounded to hundredths of
a percent (out of 10,000). Absent fields mean 100 %. The provider must be Envoy's
``envoy.tracers.opentelemetry`` with an ``envoy_grpc`` service naming a cluster (the cluster
is checked like a route's); anything else in it is rejected by the strict whitelist.
"""

from __future__ import annotations

from typing import Any

# Imported for its descriptor: a bootstrap in JSON/YAML names this type in an ``Any``.
from envoy.config.trace.v3 import opentelemetry_pb2

from aeraki.proxy.bootstrap_problems import Problems, join
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import OtlpProviderConfig, TracingConfig

__all__ = ["OTEL_CONFIG_TYPE", "OTEL_PROVIDER", "convert_provider", "convert_tracing"]

#: The provider name Envoy registers its OpenTelemetry tracer under.
OTEL_PROVIDER = "envoy.tracers.opentelemetry"
OTEL_CONFIG_TYPE = "envoy.config.trace.v3.OpenTelemetryConfig"
#: Envoy's default ``max_cache_size`` (spans held before a flush).
DEFAULT_CACHE_SIZE = 1024


def _percent(tracing: Any, field: str, path: str, problems: Problems) -> float:
    """The field's percent value (100 when absent), checked to lie in [0, 100]."""
    if not tracing.HasField(field):
        return 100.0
    value = float(getattr(tracing, field).value)
    if not 0.0 <= value <= 100.0:
        problems.add(join(path, f"{field}.value"), f"must be within [0, 100], got {value}")
    return min(max(value, 0.0), 100.0)


def convert_tracing(
    tracing: Any, path: str, problems: Problems, refs: list[tuple[str, str]]
) -> TracingConfig:
    """The runtime tracing config; problems are recorded with their path, never raised."""
    max_tag = 256
    if tracing.HasField("max_tag_length"):
        max_tag = tracing.max_tag_length.value
        if max_tag < 1:
            problems.add(join(path, "max_tag_length"), "must be at least 1")
    provider = None
    if tracing.HasField("provider"):
        provider = convert_provider(tracing.provider, join(path, "provider"), problems, refs)
    return TracingConfig(
        client_sampling=int(_percent(tracing, "client_sampling", path, problems)),
        random_sampling=round(_percent(tracing, "random_sampling", path, problems) * 100),
        overall_sampling=round(_percent(tracing, "overall_sampling", path, problems) * 100),
        max_tag_length=max(max_tag, 1),
        provider=provider,
    )


def convert_provider(
    http: Any, path: str, problems: Problems, refs: list[tuple[str, str]]
) -> OtlpProviderConfig | None:
    """An ``envoy.config.trace.v3.Tracing.Http`` (the MetaProtocolProxy's ``provider`` or
    the bootstrap's ``tracing.http``), or ``None`` with its problems recorded."""
    if http.name != OTEL_PROVIDER:
        problems.add(join(path, "name"), f"only {OTEL_PROVIDER!r} is supported, got {http.name!r}")
        return None
    tc_path = join(path, "typed_config")
    got = http.typed_config.type_url.rsplit("/", 1)[-1]
    if got != OTEL_CONFIG_TYPE:
        problems.add(tc_path, f"expected type.googleapis.com/{OTEL_CONFIG_TYPE}, got {got!r}")
        return None
    config = opentelemetry_pb2.OpenTelemetryConfig()
    http.typed_config.Unpack(config)
    check_supported(config, tc_path, problems)
    cluster_path = join(tc_path, "grpc_service.envoy_grpc.cluster_name")
    cluster = config.grpc_service.envoy_grpc.cluster_name
    if not cluster:
        problems.add(cluster_path, "required (spans are exported over OTLP/gRPC to a cluster)")
        return None
    refs.append((cluster_path, cluster))
    cache = DEFAULT_CACHE_SIZE
    if config.HasField("max_cache_size"):
        cache = config.max_cache_size.value
        if cache < 1:
            problems.add(join(tc_path, "max_cache_size"), "must be at least 1")
    return OtlpProviderConfig(
        cluster=cluster, service_name=config.service_name, max_cache_size=max(cache, 1)
    )
