"""The panic threshold (``common_lb_config.healthy_panic_threshold``; Istio's
``minHealthPercent``): below it a cluster balances over every host, at 0 never."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from aeraki.proxy.bootstrap_clusters import convert_cluster
from aeraki.proxy.bootstrap_problems import ConfigErrors, Problems
from aeraki.proxy.config import LbPolicy
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.priority import priority_loads
from tests.proxy.upstream.lb.helpers import make_hosts, make_lb


def eject(host: Host) -> None:
    host.set_failed_outlier_check(True)


@pytest.mark.parametrize("policy", [LbPolicy.ROUND_ROBIN, LbPolicy.LEAST_REQUEST, LbPolicy.MAGLEV])
def test_threshold_zero_never_panics(policy: LbPolicy) -> None:
    hosts = make_hosts(1, 1, 1, 1)
    for host in hosts[:3]:
        eject(host)
    lb = make_lb(policy, hosts, panic_threshold=0)
    lb.update()
    assert not lb.in_panic
    assert {lb.choose(k) for k in range(50)} == {hosts[3]}
    eject(hosts[3])
    lb.update()
    assert lb.choose(1) is None  # no healthy host: NoHealthyUpstream, not panic


def test_a_higher_threshold_panics_sooner() -> None:
    hosts = make_hosts(1, 1, 1, 1)
    eject(hosts[0])  # 75 % healthy
    default = make_lb(LbPolicy.ROUND_ROBIN, hosts)
    strict = make_lb(LbPolicy.ROUND_ROBIN, hosts, panic_threshold=80)
    assert not default.in_panic
    assert strict.in_panic
    assert hosts[0] in {strict.choose(None) for _ in range(8)}


def test_priority_levels_use_the_threshold() -> None:
    # P0 at 20 % health: with Envoy's 50 % it panics; with 0 it only spills over.
    assert priority_loads([(2, 10), (0, 10)]).panic == (True, True)
    assert priority_loads([(2, 10), (0, 10)], 0).panic == (False, False)


def convert(common_lb_config: dict[str, Any]) -> tuple[float, str]:
    from envoy.config.cluster.v3 import cluster_pb2

    proto = json_format.ParseDict(
        {"name": "c", "type": "STATIC", "common_lb_config": common_lb_config},
        cluster_pb2.Cluster(),
    )
    problems = Problems("<test>")
    config = convert_cluster(proto, "clusters[0]", problems, has_ads=False)
    try:
        problems.raise_if_any()
    except ConfigErrors as exc:
        return config.panic_threshold, str(exc)
    return config.panic_threshold, ""


def test_bootstrap_reads_and_checks_the_threshold() -> None:
    assert convert({})[0] == 50.0
    assert convert({"healthy_panic_threshold": {}})[0] == 0.0
    assert convert({"healthy_panic_threshold": {"value": 25}})[0] == 25.0
    _, problems = convert({"healthy_panic_threshold": {"value": 150}})
    assert "common_lb_config.healthy_panic_threshold.value: must be a percentage" in problems
