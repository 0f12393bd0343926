"""Route policy extensions (timeout, retry_policy, fault, idempotent) read from protos."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from aeraki.proxy.bootstrap_problems import ConfigErrors
from aeraki.proxy.bootstrap_routes import route_table_from_meta
from aeraki.proxy.config import RetryOn, RouteConfig
from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2


def table(**extra: Any) -> list[RouteConfig]:
    proto = json_format.ParseDict(
        {"name": "t", "routes": [{"name": "r", "route": {"cluster": "c1"}, **extra}]},
        route_pb2.RouteConfiguration(),
    )
    return list(route_table_from_meta(proto).routes)


def problems(**extra: Any) -> str:
    with pytest.raises(ConfigErrors) as info:
        table(**extra)
    return str(info.value)


def test_unset_extensions_keep_aeraki_behaviour() -> None:
    (route,) = table()
    assert (route.timeout, route.retry_policy, route.fault, route.idempotent) == (
        None,
        None,
        None,
        None,
    )


def test_every_extension_field_is_read() -> None:
    (route,) = table(
        timeout="2.5s",
        retryPolicy={
            "numRetries": 3,
            "perTryTimeout": "0.5s",
            "retryOn": ["connect-failure,reset", "retriable-error"],
            "baseInterval": "0.01s",
            "maxInterval": "0.2s",
            "retryNonIdempotent": True,
        },
        fault={
            "delay": {"fixedDelay": "1s", "percentage": {"numerator": 10}},
            "abort": {
                "errorType": "over_limit",
                "message": "chaos",
                "percentage": {"numerator": 5, "denominator": "TEN_THOUSAND"},
            },
        },
        idempotent=False,
    )
    assert route.timeout == 2.5
    policy = route.retry_policy
    assert policy is not None
    assert policy.num_retries == 3
    assert policy.per_try_timeout == 0.5
    assert policy.retry_on == RetryOn.CONNECT_FAILURE | RetryOn.RESET | RetryOn.RETRIABLE_ERROR
    assert (policy.base_interval, policy.max_interval, policy.retry_non_idempotent) == (
        0.01,
        0.2,
        True,
    )
    assert route.fault is not None
    assert route.fault.delay is not None
    assert (route.fault.delay.fixed_delay, route.fault.delay.numerator) == (1.0, 10)
    abort = route.fault.abort
    assert abort is not None
    assert (abort.error_type, abort.message, abort.numerator, abort.denominator) == (
        "OVER_LIMIT",
        "chaos",
        5,
        10_000,
    )
    assert route.idempotent is False


def test_retry_defaults_follow_envoy() -> None:
    (route,) = table(retryPolicy={"numRetries": 1})
    policy = route.retry_policy
    assert policy is not None
    assert policy.retry_on == RetryOn.CONNECT_FAILURE | RetryOn.RESET
    assert (policy.base_interval, policy.max_interval) == (0.025, 0.25)
    assert policy.per_try_timeout is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"timeout": "0s"}, "routes[0].timeout: must be greater than 0"),
        (
            {"retryPolicy": {"retryOn": ["reset,gremlins"]}},
            "routes[0].retry_policy.retry_on[0]: unknown 'gremlins'",
        ),
        (
            {"retryPolicy": {"perTryTimeout": "-1s"}},
            "routes[0].retry_policy.per_try_timeout: must be greater than 0",
        ),
        (
            {"retryPolicy": {"baseInterval": "1s", "maxInterval": "0.5s"}},
            "routes[0].retry_policy.max_interval: must not be less than base_interval",
        ),
        (
            {"fault": {"abort": {"errorType": "TEAPOT"}}},
            "routes[0].fault.abort.error_type: unknown 'TEAPOT'",
        ),
        (
            {"fault": {"delay": {"percentage": {"numerator": 10}}}},
            "routes[0].fault.delay.fixed_delay: required",
        ),
        (
            {"fault": {"abort": {"percentage": {"numerator": 101}}}},
            "routes[0].fault.abort.percentage.numerator: 101 exceeds the denominator 100",
        ),
    ],
)
def test_bad_values_are_reported_with_their_path(extra: dict[str, Any], expected: str) -> None:
    assert expected in problems(**extra)
