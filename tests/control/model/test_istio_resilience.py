"""DestinationRule ``connectionPool`` / ``outlierDetection`` checks (kept as written when valid)."""

from __future__ import annotations

import pytest

from tests.control.helpers import parse_one


def _dr(policy: str) -> str:
    return f"""
        apiVersion: networking.istio.io/v1beta1
        kind: DestinationRule
        metadata: {{name: dr, namespace: ns}}
        spec:
          host: svc
          trafficPolicy: {policy}
        """


def test_valid_settings_are_kept_as_written() -> None:
    parsed = parse_one(
        _dr(
            "{connectionPool: {tcp: {maxConnections: 1, connectTimeout: 50ms},"
            " http: {http1MaxPendingRequests: 1, http2MaxRequests: 2, maxRetries: 0,"
            " maxRequestsPerConnection: 3}},"
            " outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 2,"
            " consecutiveLocalOriginFailures: 1, splitExternalLocalOriginErrors: true,"
            " interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100,"
            " minHealthPercent: 0},"
            " portLevelSettings: [{port: {number: 80},"
            " connectionPool: {tcp: {maxConnections: 2}}}]}"
        )
    )
    assert parsed.is_valid, parsed.problems
    assert parsed.resource is not None
    policy = parsed.resource.spec.traffic_policy
    assert policy is not None
    assert policy.connection_pool == {
        "tcp": {"maxConnections": 1, "connectTimeout": "50ms"},
        "http": {
            "http1MaxPendingRequests": 1,
            "http2MaxRequests": 2,
            "maxRetries": 0,
            "maxRequestsPerConnection": 3,
        },
    }
    assert policy.outlier_detection is not None
    assert policy.outlier_detection["consecutiveGatewayErrors"] == 2


@pytest.mark.parametrize(
    ("policy", "path", "text"),
    [
        (
            "{connectionPool: {tcp: {maxConnections: -1}}}",
            "connectionPool.tcp.maxConnections",
            "out of range",
        ),
        (
            "{connectionPool: {http: {http1MaxPendingRequest: 1}}}",
            "connectionPool.http.http1MaxPendingRequest",
            'did you mean "http1MaxPendingRequests"',
        ),
        (
            "{connectionPool: {tcp: {connectTimeout: 0s}}}",
            "connectionPool.tcp.connectTimeout",
            "at least 1ms",
        ),
        (
            "{outlierDetection: {maxEjectionPercent: 101}}",
            "outlierDetection.maxEjectionPercent",
            "out of range 0..100",
        ),
        (
            "{outlierDetection: {baseEjectionTime: soon}}",
            "outlierDetection.baseEjectionTime",
            "invalid duration",
        ),
        (
            "{outlierDetection: {consecutive5xxErrors: many}}",
            "outlierDetection.consecutive5xxErrors",
            "expected an integer",
        ),
        (
            "{portLevelSettings: [{port: {number: 80}, outlierDetection: {interval: 0s}}]}",
            "portLevelSettings[0].outlierDetection.interval",
            "at least 1ms",
        ),
    ],
)
def test_bad_values_are_errors_with_their_path(policy: str, path: str, text: str) -> None:
    parsed = parse_one(_dr(policy))
    assert not parsed.is_valid
    found = {p.field_path: p.message for p in parsed.problems}
    assert text in found[f"spec.trafficPolicy.{path}"], found


def test_deprecated_consecutive_errors_is_a_warning() -> None:
    parsed = parse_one(_dr("{outlierDetection: {consecutiveErrors: 5}}"))
    assert parsed.is_valid
    (warning,) = parsed.problems
    assert warning.field_path == "spec.trafficPolicy.outlierDetection.consecutiveErrors"
    assert "deprecated" in warning.message
