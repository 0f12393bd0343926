"""DestinationRule ``loadBalancer.localityLbSetting``: typed, and checked as Istio does."""

from __future__ import annotations

import pytest

from aeraki.control.model.locality import LocalityDistribute, LocalityFailover, LocalityLbSetting
from tests.control.helpers import parse_one

LB = "spec.trafficPolicy.loadBalancer.localityLbSetting"


def _dr(setting: str, outlier: bool = True) -> str:
    extra = ", outlierDetection: {consecutiveGatewayErrors: 1}" if outlier else ""
    return f"""
        apiVersion: networking.istio.io/v1beta1
        kind: DestinationRule
        metadata: {{name: dr, namespace: ns}}
        spec:
          host: svc
          trafficPolicy: {{loadBalancer: {{localityLbSetting: {setting}}}{extra}}}
        """


def _setting(text: str, outlier: bool = True) -> LocalityLbSetting:
    parsed = parse_one(_dr(text, outlier))
    assert parsed.is_valid, parsed.problems
    assert parsed.resource is not None
    policy = parsed.resource.spec.traffic_policy
    assert policy is not None
    assert policy.load_balancer is not None
    setting: LocalityLbSetting | None = policy.load_balancer.locality_lb_setting
    assert setting is not None
    return setting


def test_settings_are_typed() -> None:
    assert _setting(
        "{distribute: [{from: us-west/zone1/*, to: {us-west/zone1/*: 80, us-west/zone2/*: 20}}]}"
    ) == LocalityLbSetting(
        distribute=(
            LocalityDistribute(
                source="us-west/zone1/*", to={"us-west/zone1/*": 80, "us-west/zone2/*": 20}
            ),
        )
    )
    setting = _setting(
        "{enabled: true, failover: [{from: us-east, to: eu-west}],"
        " failoverPriority: [topology.istio.io/network, 'env=prod']}"
    )
    assert setting.failover == (LocalityFailover(source="us-east", to="eu-west"),)
    assert setting.failover_priority == ("topology.istio.io/network", "env=prod")
    assert setting.enabled is True
    assert setting.wants_failover
    assert _setting("{enabled: false}").is_disabled
    assert _setting("{}").enabled is None


@pytest.mark.parametrize(
    ("setting", "path", "text"),
    [
        (
            "{distribute: [{from: a/*, to: {a/*: 60, b/*: 30}}]}",
            ".distribute[0].to",
            "total locality weight 90 != 100",
        ),
        ("{distribute: [{from: a/*, to: {a/*: 0, b/*: 100}}]}", '.distribute[0].to["a/*"]', ""),
        ("{distribute: [{from: a/*, to: {}}]}", ".distribute[0].to", "non-empty mapping"),
        ("{distribute: [{from: '*/z/*', to: {a: 100}}]}", ".distribute[0].from", "at the end"),
        ("{distribute: [{from: a//b, to: {a: 100}}]}", ".distribute[0].from", "may not be empty"),
        (
            "{distribute: [{from: a, to: {a: 100}}], failover: [{from: a, to: b}]}",
            "",
            "cannot both be set",
        ),
        ("{failover: [{from: a, to: a}]}", ".failover[0]", "different region"),
        ("{failover: [{from: a/z, to: b}]}", ".failover[0].from", "regions only"),
        ("{failover: [{from: a, to: '*'}]}", ".failover[0].to", 'cannot use "*"'),
        (
            "{failover: [{from: a, to: b}], failoverPriority: [topology.kubernetes.io/zone]}",
            ".failoverPriority[0]",
            "cannot be combined with failover",
        ),
        ("{enabled: sure}", ".enabled", "expected true or false"),
        ("{failovr: []}", ".failovr", 'did you mean "failover"'),
    ],
)
def test_bad_settings_are_errors_with_their_path(setting: str, path: str, text: str) -> None:
    parsed = parse_one(_dr(setting))
    assert not parsed.is_valid
    found = {p.field_path: p.message for p in parsed.problems if p.is_error}
    assert LB + path in found, found
    assert text in found[LB + path]


def test_failover_without_outlier_detection_is_a_warning() -> None:
    parsed = parse_one(_dr("{failover: [{from: a, to: b}]}", outlier=False))
    assert parsed.is_valid
    (warning,) = parsed.problems
    assert warning.field_path == LB
    assert "outlierDetection" in warning.message
    assert parse_one(_dr("{failover: [{from: a, to: b}]}")).problems == ()
    assert parse_one(_dr("{distribute: [{from: a, to: {b: 100}}]}", outlier=False)).problems == ()
