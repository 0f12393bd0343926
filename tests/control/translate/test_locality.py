"""Locality-aware load balancing in the translation: Istio's priorities and weights per proxy.

The pure rules first (Istio's ``LbPriority``, ``LocalityMatch``, failover, distribute,
failoverPriority), then ``translate()`` from manifests: what a proxy in a given locality gets,
and that our proxy accepts it.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from aeraki.control.model.istio import WorkloadEntry
from aeraki.control.model.locality import LocalityDistribute, LocalityFailover, LocalityLbSetting
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from aeraki.control.translate import NodeInfo, TranslateOptions, translate
from aeraki.control.translate.locality import (
    Group,
    Triple,
    apply_locality_lb,
    endpoint_locality,
    group_endpoints,
    lb_priority,
    locality_match,
)
from aeraki.proxy.config import Locality
from aeraki.proxy.xds_apply import endpoints_from_resource
from tests.control.helpers import snapshot_of
from tests.control.translate.helpers import assert_accepted, by_type

HOST = "svc.ns.svc.cluster.local"
CLUSTER = f"outbound|9000||{HOST}"


# -- the rules ---------------------------------------------------------------------------------


def test_lb_priority_and_locality_match() -> None:
    proxy: Triple = ("r1", "z1", "s1")
    assert [
        lb_priority(proxy, e)
        for e in [("r1", "z1", "s1"), ("r1", "z1", "s2"), ("r1", "z2", "s1"), ("r2", "z1", "s1")]
    ] == [0, 1, 2, 3]
    assert locality_match(proxy, "r1/z1/*")
    assert locality_match(proxy, "r1")  # missing zone and sub-zone match any
    assert locality_match(proxy, "*")
    assert not locality_match(proxy, "r1/z2")
    assert not locality_match(proxy, "r2/*")


def test_endpoint_locality_sources() -> None:
    assert endpoint_locality(WorkloadEntry(address="a", locality="r/z/s")) == ("r", "z", "s")
    labelled = WorkloadEntry(address="a", labels={"istio-locality": "r.z"})
    assert endpoint_locality(labelled) == ("r", "z", "")
    k8s = {"topology.kubernetes.io/region": "r", "topology.kubernetes.io/zone": "z"}
    assert endpoint_locality(WorkloadEntry(address="a", labels=k8s)) == ("r", "z", "")
    assert endpoint_locality(WorkloadEntry(address="a")) == ("", "", "")


def _endpoint(port: int, weight: int = 0) -> endpoint_components_pb2.LbEndpoint:
    ep = endpoint_components_pb2.LbEndpoint()
    ep.endpoint.address.socket_address.port_value = port
    if weight:
        ep.load_balancing_weight.value = weight
    return ep


def _groups(*placed: tuple[int, str, dict[str, str]]) -> list[Group]:
    return group_endpoints(
        (_endpoint(port), tuple(where.split("/")), labels)  # type: ignore[misc]
        for port, where, labels in placed
    )


def _view(groups: list[Group]) -> list[tuple[str, int, int, list[int]]]:
    return [
        (
            "/".join(g.locality),
            g.priority,
            g.weight,
            [e.endpoint.address.socket_address.port_value for e, _ in g.endpoints],
        )
        for g in groups
    ]


ISTIO_TASK: list[
    tuple[int, str, dict[str, str]]
] = [  # Istio's locality failover task: four localities, a proxy in region1/zone1
    (1, "region1/zone1/", {}),
    (2, "region1/zone2/", {}),
    (3, "region2/zone3/", {}),
    (4, "region3/zone4/", {}),
]


def test_failover_ranks_localities_like_istios_task() -> None:
    """Priorities 0, (1: no other sub-zone), 2, 3 (the failover region), 4 — renumbered."""
    setting = LocalityLbSetting(failover=(LocalityFailover(source="region1", to="region2"),))
    groups = apply_locality_lb(
        _groups(*ISTIO_TASK), ("region1", "zone1", ""), {}, setting, enable_failover=True
    )
    assert [(loc, prio) for loc, prio, _, _ in _view(groups)] == [
        ("region1/zone1/", 0),
        ("region1/zone2/", 1),
        ("region2/zone3/", 2),
        ("region3/zone4/", 3),
    ]
    # Without a failover rule every other region ranks the same.
    plain = apply_locality_lb(
        _groups(*ISTIO_TASK), ("region1", "zone1", ""), {}, LocalityLbSetting(), True
    )
    assert [g.priority for g in plain] == [0, 1, 2, 2]
    # Without outlier detection nothing is ranked.
    off = apply_locality_lb(_groups(*ISTIO_TASK), ("region1", "zone1", ""), {}, setting, False)
    assert [g.priority for g in off] == [0, 0, 0, 0]


def test_distribute_sets_weights_and_empties_the_rest() -> None:
    setting = LocalityLbSetting(
        distribute=(
            LocalityDistribute(source="r9/*", to={"r1/*": 100}),  # not this proxy
            LocalityDistribute(source="r1/z1/*", to={"r1/z1/*": 80, "r1/z2/*": 20}),
        )
    )
    groups = _groups(
        (1, "r1/z1/a", {}),
        (2, "r1/z1/b", {}),
        (3, "r1/z1/b", {}),
        (4, "r1/z2/", {}),
        (5, "r2/x/", {}),
    )
    # r1/z1/a weighs 1 and r1/z1/b 2 of the 80 % -> ceil(26.7), ceil(53.3)
    assert _view(apply_locality_lb(groups, ("r1", "z1", "a"), {}, setting, False)) == [
        ("r1/z1/a", 0, 27, [1]),
        ("r1/z1/b", 0, 54, [2, 3]),
        ("r1/z2/", 0, 20, [4]),
        ("r2/x/", 0, 1, []),
    ]


def test_failover_priority_splits_groups_by_labels() -> None:
    """``failoverPriority: [network, env=prod]``: both match 0, network only 1, neither 2."""
    setting = LocalityLbSetting(failover_priority=("topology.istio.io/network", "env=prod"))
    net = "topology.istio.io/network"
    groups = _groups(
        (1, "r/a/", {net: "n1", "env": "prod"}),
        (2, "r/a/", {net: "n1", "env": "dev"}),
        (3, "r/a/", {net: "n2", "env": "prod"}),
        (4, "r/b/", {net: "n1", "env": "prod"}),
    )
    result = apply_locality_lb(groups, ("r", "a", ""), {net: "n1", "env": "dev"}, setting, True)
    assert _view(result) == [
        ("r/a/", 0, 1, [1]),
        ("r/a/", 1, 1, [2]),
        ("r/a/", 2, 1, [3]),
        ("r/b/", 0, 1, [4]),
    ]
    # With failover as well, labels rank first and locality second (priority * 5 + rank).
    both = LocalityLbSetting(
        failover_priority=(net,), failover=(LocalityFailover(source="r", to="q"),)
    )
    groups = _groups((1, "r/a/", {net: "n1"}), (2, "r/b/", {net: "n1"}), (3, "r/a/", {net: "n2"}))
    assert [
        (loc, prio)
        for loc, prio, _, _ in _view(
            apply_locality_lb(groups, ("r", "a", ""), {net: "n1"}, both, True)
        )
    ] == [("r/a/", 0), ("r/a/", 2), ("r/b/", 1)]


# -- translate() -------------------------------------------------------------------------------


def _manifests(traffic_policy: str) -> str:
    return f"""
        apiVersion: networking.istio.io/v1beta1
        kind: ServiceEntry
        metadata: {{name: svc, namespace: ns}}
        spec:
          hosts: [{HOST}]
          ports: [{{number: 9000, name: tcp-metaprotocol-thrift, protocol: TCP}}]
          resolution: STATIC
          endpoints:
            - {{address: 10.0.1.1, locality: r1/z1}}
            - {{address: 10.0.1.2, locality: r1/z1}}
            - {{address: 10.0.2.1, locality: r1/z2, weight: 3}}
            - {{address: 10.0.3.1, labels: {{istio-locality: r2.z3}}}}
        ---
        apiVersion: networking.istio.io/v1beta1
        kind: DestinationRule
        metadata: {{name: svc, namespace: ns}}
        spec:
          host: {HOST}
          trafficPolicy: {traffic_policy}
        """


OUTLIER = "outlierDetection: {consecutiveGatewayErrors: 1, interval: 1s}"


def _translate(
    traffic_policy: str, locality: Triple, options: TranslateOptions | None = None
) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment]:
    config = snapshot_of(_manifests(traffic_policy))
    assert not config.errors, config.errors
    translation = translate(
        config, NodeInfo(id="n", locality=locality), options or TranslateOptions()
    )
    assert_accepted(translation)
    clusters = {m.name: m for m in translation.resources if isinstance(m, cluster_pb2.Cluster)}
    assignments = {
        m.cluster_name: m
        for m in translation.resources
        if isinstance(m, endpoint_pb2.ClusterLoadAssignment)
    }
    return clusters[CLUSTER], assignments[CLUSTER]


def _priorities(assignment: endpoint_pb2.ClusterLoadAssignment) -> dict[str, int]:
    return {
        lb.endpoint.address.socket_address.address: group.priority
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    }


def test_outlier_detection_turns_on_failover_relative_to_the_proxy() -> None:
    cluster, assignment = _translate(f"{{{OUTLIER}}}", ("r1", "z1", ""))
    assert _priorities(assignment) == {"10.0.1.1": 0, "10.0.1.2": 0, "10.0.2.1": 1, "10.0.3.1": 2}
    assert [g.locality.zone for g in assignment.endpoints] == ["z1", "z2", "z3"]
    # Default failover: no locality weights (the panic threshold comes from outlier detection).
    assert not cluster.common_lb_config.HasField("locality_weighted_lb_config")
    # A proxy in r2/z3 gets its own ranking.
    _, other = _translate(f"{{{OUTLIER}}}", ("r2", "z3", ""))
    assert _priorities(other) == {"10.0.1.1": 1, "10.0.1.2": 1, "10.0.2.1": 1, "10.0.3.1": 0}
    # The proxy reads the groups' priorities and localities.
    resource = by_type([other])
    (packed,) = resource[next(iter(resource))]
    _, endpoints = endpoints_from_resource(packed)
    assert {(e.address.host, e.priority, e.locality) for e in endpoints} >= {
        ("10.0.3.1", 0, Locality("r2", "z3"))
    }


def test_no_outlier_detection_no_failover() -> None:
    _, assignment = _translate("{loadBalancer: {simple: ROUND_ROBIN}}", ("r1", "z1", ""))
    assert set(_priorities(assignment).values()) == {0}
    _, assignment = _translate(
        "{loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r2}]}}}", ("r1", "z1", "")
    )
    assert set(_priorities(assignment).values()) == {0}


def test_failover_rules_balance_by_locality_weight() -> None:
    cluster, assignment = _translate(
        f"{{{OUTLIER}, loadBalancer: {{localityLbSetting: {{failover: [{{from: r1, to: r2}}]}}}}}}",
        ("r1", "z2", ""),
    )
    assert cluster.common_lb_config.HasField("locality_weighted_lb_config")
    assert _priorities(assignment) == {"10.0.1.1": 1, "10.0.1.2": 1, "10.0.2.1": 0, "10.0.3.1": 2}
    assert [g.load_balancing_weight.value for g in assignment.endpoints] == [2, 3, 1]


def test_distribute_weights_without_outlier_detection() -> None:
    cluster, assignment = _translate(
        "{loadBalancer: {localityLbSetting: {distribute:"
        " [{from: 'r1/*', to: {'r1/z1': 70, 'r1/z2': 20, 'r2': 10}}]}}}",
        ("r1", "z1", ""),
    )
    assert cluster.common_lb_config.HasField("locality_weighted_lb_config")
    assert [(g.locality.zone, g.load_balancing_weight.value) for g in assignment.endpoints] == [
        ("z1", 70),
        ("z2", 20),
        ("z3", 10),
    ]
    assert set(_priorities(assignment).values()) == {0}


def test_disabled_locality_lb_keeps_every_endpoint_at_priority_zero() -> None:
    policy = f"{{{OUTLIER}, loadBalancer: {{localityLbSetting: {{enabled: false}}}}}}"
    _, assignment = _translate(policy, ("r1", "z1", ""))
    assert set(_priorities(assignment).values()) == {0}
    mesh_off = TranslateOptions(locality_lb_enabled=False)
    _, assignment = _translate(f"{{{OUTLIER}}}", ("r1", "z1", ""), mesh_off)
    assert set(_priorities(assignment).values()) == {0}


def test_nodes_in_different_localities_get_different_translations(tmp_path: Any) -> None:
    """The control plane shares a translation between nodes of the same view; the locality is
    part of the view, or a proxy in another zone would get this one's priorities."""
    (tmp_path / "svc.yaml").write_text(_manifests(f"{{{OUTLIER}}}"))
    plane = ControlPlane(FileSource(tmp_path), xds_port=0)
    config = snapshot_of(_manifests(f"{{{OUTLIER}}}"))

    def node(zone: str) -> base_pb2.Node:
        return base_pb2.Node(id=f"n-{zone}", locality=base_pb2.Locality(region="r1", zone=zone))

    z1, again, z2 = (plane._translated(config, node(z)) for z in ("z1", "z1", "z2"))
    assert z1 is again
    assert z1[1] is not z2[1]
    assert z1[1] != z2[1]
