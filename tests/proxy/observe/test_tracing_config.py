"""The MetaProtocolProxy ``tracing`` message as the bootstrap (and so xDS) loads it."""

from __future__ import annotations

from typing import Any

import pytest

from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.bootstrap_problems import ConfigErrors
from aeraki.proxy.config import OtlpProviderConfig, TracingConfig
from tests.proxy.test_bootstrap import TC, base, tc

OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"


def provider(**otel: Any) -> dict[str, Any]:
    config = {"@type": OTEL, "grpc_service": {"envoy_grpc": {"cluster_name": "c"}}, **otel}
    return {"name": "envoy.tracers.opentelemetry", "typed_config": config}


def load(tracing: dict[str, Any]) -> TracingConfig | None:
    d = base()
    tc(d)["tracing"] = tracing
    return bootstrap_from_dict(d).listeners[0].proxy.tracing


def problems(tracing: dict[str, Any]) -> dict[str, str]:
    d = base()
    tc(d)["tracing"] = tracing
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(d)
    return {p.path: p.message for p in info.value.problems}


def test_absent_tracing_is_off_and_empty_tracing_is_the_null_tracer() -> None:
    assert bootstrap_from_dict(base()).listeners[0].proxy.tracing is None
    assert load({}) == TracingConfig()


def test_sampling_fractions_follow_the_reference() -> None:
    config = load(
        {
            "client_sampling": {"value": 25.9},
            "random_sampling": {"value": 0.015},
            "overall_sampling": {"value": 50.5},
            "max_tag_length": 64,
            "provider": provider(service_name="edge", max_cache_size=16),
        }
    )
    assert config == TracingConfig(
        client_sampling=25,  # integer part, out of 100
        random_sampling=2,  # round(0.015 * 100) = 2, out of 10,000
        overall_sampling=5050,
        max_tag_length=64,
        provider=OtlpProviderConfig(cluster="c", service_name="edge", max_cache_size=16),
    )


@pytest.mark.parametrize(
    ("tracing", "path", "text"),
    [
        ({"random_sampling": {"value": 101}}, ".random_sampling.value", "within [0, 100]"),
        ({"verbose": True}, ".verbose", "not supported yet"),
        (
            {"provider": {"name": "envoy.tracers.zipkin"}},
            ".provider.name",
            "only 'envoy.tracers.opentelemetry'",
        ),
        (
            {"provider": provider(grpc_service={"envoy_grpc": {"cluster_name": "nope"}})},
            ".provider.typed_config.grpc_service.envoy_grpc.cluster_name",
            "nope",
        ),
        (
            {"provider": provider(grpc_service={})},
            ".provider.typed_config.grpc_service.envoy_grpc.cluster_name",
            "required",
        ),
        (
            {"provider": provider(http_service={})},
            ".provider.typed_config.http_service",
            "not supported yet",
        ),
        (
            {
                "provider": {
                    "name": "envoy.tracers.opentelemetry",
                    "typed_config": {"@type": "type.googleapis.com/google.protobuf.Empty"},
                }
            },
            ".provider.typed_config",
            "OpenTelemetryConfig",
        ),
    ],
)
def test_bad_tracing_is_reported_with_its_path(
    tracing: dict[str, Any], path: str, text: str
) -> None:
    found = problems(tracing)
    assert TC + ".tracing" + path in found, found
    assert text in found[TC + ".tracing" + path]


def test_bootstrap_tracing_http_is_the_default_provider() -> None:
    d = base()
    d["tracing"] = {"http": provider(service_name="sidecar")}
    tc(d)["tracing"] = {"random_sampling": {"value": 1}}  # as Aeraki's control plane sends it
    config = bootstrap_from_dict(d)
    assert config.tracing_provider == OtlpProviderConfig(cluster="c", service_name="sidecar")
    assert config.listeners[0].proxy.tracing == TracingConfig(random_sampling=100)


@pytest.mark.parametrize(
    ("http", "path"),
    [
        ({"name": "envoy.tracers.zipkin"}, "tracing.http.name"),
        (
            provider(grpc_service={"envoy_grpc": {"cluster_name": "nope"}}),
            "tracing.http.typed_config.grpc_service.envoy_grpc.cluster_name",
        ),
    ],
)
def test_bad_bootstrap_tracing_is_reported_with_its_path(http: dict[str, Any], path: str) -> None:
    d = base()
    d["tracing"] = {"http": http}
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(d)
    assert path in info.value.paths
