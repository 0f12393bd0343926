"""Locality and priority in bootstraps and EDS: node.locality, LocalityLbEndpoints, locality
weighted clusters, and how a cluster turns them into hosts and balancers."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import any_pb2, json_format

from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.config import ClusterConfig, EndpointConfig, Locality, SocketAddress
from aeraki.proxy.upstream.cluster import Cluster
from aeraki.proxy.upstream.lb import PriorityLoadBalancer, RoundRobinLoadBalancer
from aeraki.proxy.xds_apply import endpoints_from_resource
from tests.proxy.test_bootstrap import CL0, base, cluster0


def _endpoint(port: int) -> dict[str, Any]:
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {"endpoint": {"address": address}}


def _groups() -> list[dict[str, Any]]:
    return [
        {
            "locality": {"region": "r1", "zone": "a"},
            "load_balancing_weight": 3,
            "lb_endpoints": [_endpoint(9001), _endpoint(9002)],
        },
        {
            "locality": {"region": "r1", "zone": "b", "sub_zone": "s"},
            "priority": 1,
            "lb_endpoints": [_endpoint(9003)],
        },
    ]


def test_node_locality_and_placed_endpoints() -> None:
    data = base()
    data["node"]["locality"] = {"region": "r1", "zone": "a", "sub_zone": "rack1"}
    cluster0(data)["load_assignment"]["endpoints"] = _groups()
    cluster0(data)["common_lb_config"] = {"locality_weighted_lb_config": {}}
    config = bootstrap_from_dict(data)
    assert config.node_locality == Locality("r1", "a", "rack1")
    cluster = config.clusters[0]
    assert cluster.locality_weighted
    assert [
        (e.address.port, e.locality, e.priority, e.locality_weight) for e in cluster.endpoints
    ] == [
        (9001, Locality("r1", "a"), 0, 3),
        (9002, Locality("r1", "a"), 0, 3),
        (9003, Locality("r1", "b", "s"), 1, 0),
    ]
    assert not bootstrap_from_dict(base()).clusters[0].locality_weighted


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            lambda groups: groups[1].update(priority=0, locality={"region": "r1", "zone": "a"}),
            ".load_assignment.endpoints[1].locality",
            "duplicate locality r1/a in priority 0",
        ),
        (
            lambda groups: groups[0].update(load_balancing_weight=0),
            ".load_assignment.endpoints[0].load_balancing_weight",
            "must be at least 1",
        ),
    ],
)
def test_bad_locality_groups_are_reported_with_their_path(
    change: Any, path: str, message: str
) -> None:
    data = base()
    groups = _groups()
    change(groups)
    cluster0(data)["load_assignment"]["endpoints"] = groups
    with pytest.raises(ConfigError) as info:
        bootstrap_from_dict(data)
    assert f"{CL0}{path}: {message}" in str(info.value)


def test_unsupported_common_lb_config_field_is_named() -> None:
    data = base()
    cluster0(data)["common_lb_config"] = {"zone_aware_lb_config": {}}
    with pytest.raises(ConfigError, match=r"common_lb_config\.zone_aware_lb_config"):
        bootstrap_from_dict(data)


def test_eds_resource_carries_priorities() -> None:
    assignment = json_format.ParseDict(
        {"cluster_name": "c", "endpoints": _groups()}, endpoint_pb2.ClusterLoadAssignment()
    )
    resource = any_pb2.Any()
    resource.Pack(assignment)
    name, endpoints = endpoints_from_resource(resource)
    assert name == "c"
    assert [e.priority for e in endpoints] == [0, 0, 1]
    assert endpoints[2].locality == Locality("r1", "b", "s")


def _ep(port: int, priority: int = 0, zone: str = "a", weight: int = 1) -> EndpointConfig:
    return EndpointConfig(
        address=SocketAddress("127.0.0.1", port),
        weight=weight,
        locality=Locality("r1", zone),
        priority=priority,
    )


def test_cluster_balances_by_priority_and_keeps_hosts_across_updates() -> None:
    cluster = Cluster(ClusterConfig(name="c", endpoints=(_ep(9001), _ep(9002, priority=1))))
    assert isinstance(cluster.lb, PriorityLoadBalancer)
    first = cluster.hosts[0]
    first.active_requests = 2
    # EDS moves 9001 to priority 1 and doubles its weight; 9002 becomes P0.
    cluster.set_hosts(
        [
            Cluster(ClusterConfig(name="x", endpoints=(e,))).hosts[0]
            for e in (_ep(9001, priority=1, zone="b", weight=2), _ep(9002))
        ]
    )
    assert cluster.hosts[0] is first  # same object: counters and pools survive
    assert (first.priority, first.weight, first.locality.zone) == (1, 2, "b")
    assert first.active_requests == 2
    assert {cluster.lb.choose(None).key for _ in range(10)} == {"127.0.0.1:9002"}  # type: ignore[union-attr]


def test_single_priority_cluster_keeps_the_plain_balancer() -> None:
    cluster = Cluster(ClusterConfig(name="c", endpoints=(_ep(9001), _ep(9002, zone="b"))))
    assert isinstance(cluster.lb, RoundRobinLoadBalancer)
