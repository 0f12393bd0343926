"""Circuit breakers, outlier detection and health checks from bootstrap and CDS clusters."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

from aeraki.errors import ConfigError
from aeraki.proxy.config import (
    CircuitBreakerConfig,
    HealthCheckConfig,
    OutlierConfig,
    RetryBudgetConfig,
)
from aeraki.proxy.xds_apply import clusters_from_resources
from aeraki.xds import pack
from tests.proxy.test_bootstrap import CL0, Data, cluster0, problems_of, with_

HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _set(**fields: Any) -> Any:
    return lambda d: cluster0(d).update(fields)


def test_defaults_are_envoys_and_features_off() -> None:
    cluster = with_(lambda d: None).clusters[0]
    assert cluster.circuit_breakers == CircuitBreakerConfig()
    assert cluster.outlier_detection is None
    assert cluster.health_check is None


def test_default_thresholds_map_and_high_priority_is_ignored() -> None:
    breakers = {
        "thresholds": [
            {"priority": "HIGH", "max_connections": 7},
            {
                "max_connections": 1,
                "max_pending_requests": 2,
                "max_requests": 3,
                "max_retries": 4,
                "retry_budget": {"budget_percent": {"value": 25}, "min_retry_concurrency": 5},
            },
        ]
    }
    cluster = with_(_set(circuit_breakers=breakers, max_requests_per_connection=9)).clusters[0]
    assert cluster.circuit_breakers == CircuitBreakerConfig(
        max_connections=1,
        max_pending_requests=2,
        max_requests=3,
        max_retries=4,
        retry_budget=RetryBudgetConfig(budget_percent=25.0, min_retry_concurrency=5),
        max_requests_per_connection=9,
    )


def test_unset_thresholds_keep_envoys_defaults() -> None:
    cluster = with_(_set(circuit_breakers={"thresholds": [{"max_requests": 10}]})).clusters[0]
    assert cluster.circuit_breakers == CircuitBreakerConfig(max_requests=10)


def test_max_requests_per_connection_from_http_protocol_options() -> None:
    options = {
        HPO: {
            "@type": f"type.googleapis.com/{HPO}",
            "common_http_protocol_options": {"max_requests_per_connection": 5},
            "explicit_http_config": {"http_protocol_options": {}},
        }
    }
    cluster = with_(_set(typed_extension_protocol_options=options)).clusters[0]
    assert cluster.circuit_breakers.max_requests_per_connection == 5


def test_outlier_detection_maps_with_seconds() -> None:
    outlier = {
        "consecutive_5xx": 3,
        "consecutive_gateway_failure": 2,
        "enforcing_consecutive_gateway_failure": 100,
        "consecutive_local_origin_failure": 4,
        "split_external_local_origin_errors": True,
        "interval": "2s",
        "base_ejection_time": "0.5s",
        "max_ejection_time": "60s",
        "max_ejection_percent": 50,
        "enforcing_success_rate": 0,
    }
    cluster = with_(_set(outlier_detection=outlier)).clusters[0]
    assert cluster.outlier_detection == OutlierConfig(
        consecutive_5xx=3,
        consecutive_gateway_failure=2,
        enforcing_consecutive_gateway_failure=100,
        consecutive_local_origin_failure=4,
        split_external_local_origin_errors=True,
        interval=2.0,
        base_ejection_time=0.5,
        max_ejection_time=60.0,
        max_ejection_percent=50,
    )
    assert with_(_set(outlier_detection={})).clusters[0].outlier_detection == OutlierConfig()


def test_tcp_health_check_maps_hex_text_and_binary() -> None:
    check = {
        "timeout": "1s",
        "interval": "0.5s",
        "unhealthy_threshold": 3,
        "healthy_threshold": 2,
        "tcp_health_check": {
            "send": {"text": "50494e47"},
            "receive": [{"binary": "UE9ORw=="}],
        },
    }
    cluster = with_(_set(health_checks=[check])).clusters[0]
    assert cluster.health_check == HealthCheckConfig(
        timeout=1.0,
        interval=0.5,
        unhealthy_threshold=3,
        healthy_threshold=2,
        send=b"PING",
        receive=(b"PONG",),
    )


_CHECK: Data = {
    "timeout": "1s",
    "interval": "1s",
    "unhealthy_threshold": 1,
    "healthy_threshold": 1,
    "tcp_health_check": {},
}


def _without(data: Data, key: str) -> Data:
    return {k: v for k, v in data.items() if k != key}


@pytest.mark.parametrize(
    ("mutate", "path", "text"),
    [
        (
            _set(circuit_breakers={"thresholds": [{}, {"priority": "DEFAULT"}]}),
            ".circuit_breakers.thresholds[1].priority",
            "twice",
        ),
        (
            _set(circuit_breakers={"thresholds": [{"track_remaining": True}]}),
            ".circuit_breakers.thresholds[0].track_remaining",
            "not supported yet",
        ),
        (
            _set(circuit_breakers={"per_host_thresholds": [{}]}),
            ".circuit_breakers.per_host_thresholds",
            "not supported yet",
        ),
        (
            _set(
                circuit_breakers={
                    "thresholds": [{"retry_budget": {"budget_percent": {"value": 150}}}]
                }
            ),
            ".circuit_breakers.thresholds[0].retry_budget.budget_percent",
            "0..100",
        ),
        (
            _set(outlier_detection={"max_ejection_percent": 101}),
            ".outlier_detection.max_ejection_percent",
            "percentage",
        ),
        (
            _set(outlier_detection={"base_ejection_time": "0s"}),
            ".outlier_detection.base_ejection_time",
            "greater than 0",
        ),
        (
            _set(outlier_detection={"enforcing_success_rate": 100}),
            ".outlier_detection.enforcing_success_rate",
            "only 0 (off)",
        ),
        (
            _set(outlier_detection={"success_rate_minimum_hosts": 3}),
            ".outlier_detection.success_rate_minimum_hosts",
            "not supported yet",
        ),
        (
            _set(health_checks=[_without(_CHECK, "tcp_health_check") | {"http_health_check": {}}]),
            ".health_checks[0].http_health_check",
            "not supported yet",
        ),
        (_set(health_checks=[_CHECK, _CHECK]), ".health_checks[1]", "only one"),
        (
            _set(health_checks=[_without(_CHECK, "interval")]),
            ".health_checks[0].interval",
            "required",
        ),
        (
            _set(health_checks=[{**_CHECK, "tcp_health_check": {"send": {"text": "zz"}}}]),
            ".health_checks[0].tcp_health_check.send.text",
            "hex",
        ),
        (
            _set(typed_extension_protocol_options={"x.y": {"@type": f"type.googleapis.com/{HPO}"}}),
            ".typed_extension_protocol_options['x.y']",
            "only envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_values_are_reported_with_their_path(mutate: Any, path: str, text: str) -> None:
    problems = problems_of(mutate)
    assert text in problems[CL0 + path], problems


def test_cds_cluster_with_resilience_settings() -> None:
    cluster = json_format.ParseDict(
        {
            "name": "c",
            "type": "EDS",
            "eds_cluster_config": {"eds_config": {"ads": {}}},
            "circuit_breakers": {"thresholds": [{"max_connections": 2}]},
            "outlier_detection": {"consecutive_5xx": 2},
            "health_checks": [_CHECK],
        },
        cluster_pb2.Cluster(),
    )
    (config,) = clusters_from_resources([pack(cluster)])
    assert config.circuit_breakers.max_connections == 2
    assert config.outlier_detection == OutlierConfig(consecutive_5xx=2)
    assert config.health_check is not None
    bad = cluster_pb2.Cluster()
    bad.CopyFrom(cluster)
    bad.outlier_detection.max_ejection_percent.value = 200
    with pytest.raises(ConfigError, match=r"cluster c\.outlier_detection\.max_ejection_percent"):
        clusters_from_resources([pack(bad)])
