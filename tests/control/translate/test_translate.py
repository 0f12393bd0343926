"""Behaviour of ``translate()`` beyond the goldens: API, purity, determinism, scoping, the
proxy's verdict on what the defaults keep out, and bad inputs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from aeraki.control.model import ConfigSnapshot, Severity
from aeraki.control.translate import NodeInfo, TranslateOptions, Translation, translate
from aeraki.control.translate.api import LOCAL_RATELIMIT_FILTER, RATELIMIT_FILTER, ROUTER_FILTER
from aeraki.proxy.xds_apply import TYPE_LDS, listeners_from_resources
from tests.control.translate.helpers import (
    assert_accepted,
    by_type,
    load,
    load_unvalidated,
    to_json,
)

BASE = ("translate/services.yaml", "metaprotocol/base/destinationrule.yaml")
DEMO = "org.apache.dubbo.samples.basic.api.demoservice"
SECOND = "org.apache.dubbo.samples.basic.api.secondservice"


def of_kind(t: Translation, kind: str) -> dict[str, Any]:
    """``{name: message}`` of one resource kind (messages typed ``Any``: Envoy has no stubs)."""
    out: dict[str, Any] = {}
    for r in t.resources:
        if r.DESCRIPTOR.name == kind:
            out[getattr(r, "name", "") or getattr(r, "cluster_name", "")] = r
    return out


def names(t: Translation, kind: str) -> list[str]:
    return [
        getattr(r, "name", "") or getattr(r, "cluster_name", "")
        for r in t.resources
        if r.DESCRIPTOR.name == kind
    ]


def test_node_info_from_proto_reads_metadata_struct() -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": "team", "SERVICES": [DEMO], "LABELS": {"app": "x"}})
    node = NodeInfo.from_proto(base_pb2.Node(id="n", cluster="c", metadata=metadata))
    assert (node.id, node.cluster, node.namespace) == ("n", "c", "team")
    assert node.services == frozenset({DEMO})
    assert node.labels == {"app": "x"}
    plain = NodeInfo.from_proto(base_pb2.Node(id="n"))
    assert (plain.metadata, plain.namespace, plain.services) == ({}, "default", None)


def test_module_is_pure() -> None:
    """No asyncio, grpc or socket behind the translation (DESIGN §2 import rule)."""
    code = (
        "import sys, aeraki.control.translate\n"
        "bad = [m for m in ('asyncio', 'grpc', 'socket') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_config_gives_nothing() -> None:
    t = translate(ConfigSnapshot(), NodeInfo(id="n"))
    assert t == Translation(resources=(), problems=())


def test_deterministic_and_ordered() -> None:
    config = load(*BASE, "metaprotocol/metarouters/traffic-mirroring.yaml")
    first, second = (translate(config, NodeInfo(id="n")) for _ in range(2))
    assert to_json(first) == to_json(second)
    kinds = [r.DESCRIPTOR.name for r in first.resources]
    order = ["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]
    assert kinds == sorted(kinds, key=order.index)
    assert names(first, "Cluster") == sorted(names(first, "Cluster"))


def test_services_metadata_narrows_outbound_but_keeps_route_targets() -> None:
    config = load(*BASE)
    only_second = translate(config, NodeInfo(id="n", metadata={"SERVICES": SECOND}))
    assert names(only_second, "RouteConfiguration") == [f"{SECOND}_20880"]
    assert names(only_second, "Cluster") == [f"outbound|20880||{SECOND}"]
    assert_accepted(only_second)
    everything = translate(config, NodeInfo(id="n"))
    assert len(names(everything, "Listener")) == 2


def test_export_to_hides_private_service_and_metarouter() -> None:
    config = load(*BASE, "translate/scoping.yaml")
    outside = translate(config, NodeInfo(id="n", metadata={"NAMESPACE": "default"}))
    inside = translate(config, NodeInfo(id="n", metadata={"NAMESPACE": "team"}))
    assert "hello.team.svc.cluster.local_9090" not in names(outside, "RouteConfiguration")
    assert "hello.team.svc.cluster.local_9090" in names(inside, "RouteConfiguration")
    route = of_kind(inside, "RouteConfiguration")
    assert route[f"{SECOND}_20880"].virtual_hosts[0].routes[0].name == "by-method"
    route = of_kind(outside, "RouteConfiguration")
    assert route[f"{SECOND}_20880"].virtual_hosts[0].routes[0].name == "default"


def test_bind_address_from_options_and_node_metadata() -> None:
    config = load(*BASE)
    t = translate(config, NodeInfo(id="n", metadata={"BIND_ADDRESS": "127.0.0.9"}))
    assert "127.0.0.9_20880" in names(t, "Listener")
    assert "127.0.0.20_20880" in names(t, "Listener")  # the SE's loopback address wins
    t = translate(config, NodeInfo(id="n"), TranslateOptions(bind_address="127.0.0.8"))
    assert "127.0.0.8_20880" in names(t, "Listener")


def test_rate_limit_filters_by_default_and_withheld_for_a_data_plane_without_them() -> None:
    """Our proxy implements both rate limits, so they are emitted (and accepted) by default.
    A data plane that lacks one would NACK the listener, blocking every listener update of
    the node: narrowing ``supported_filters`` keeps that filter out, with a warning."""
    config = load(*BASE, "translate/rate-limit-server.yaml")
    default = translate(config, NodeInfo(id="n"))
    assert_accepted(default)
    assert [p for p in default.problems if "not enforced" in p.message] == []
    listeners = listeners_from_resources(by_type(default.resources)[TYPE_LDS])
    demo = next(c for c in listeners if c.proxy.stat_prefix == f"outbound|20880||{DEMO}")
    assert [f.name for f in demo.proxy.filters] == [
        LOCAL_RATELIMIT_FILTER,
        RATELIMIT_FILTER,
        ROUTER_FILTER,
    ]
    rls = "outbound|8081||rate-limit-server.metaprotocol.svc.cluster.local"
    assert rls in names(default, "Cluster")  # the service's cluster comes with the filter

    router_only = TranslateOptions(supported_filters=frozenset({ROUTER_FILTER}))
    withheld = translate(config, NodeInfo(id="n"), router_only)
    assert_accepted(withheld)
    warnings = [p for p in withheld.problems if "not enforced" in p.message]
    assert len(warnings) == 2
    assert all(p.severity is Severity.WARNING for p in warnings)
    assert rls not in names(withheld, "Cluster")


def test_bad_inputs_reported_and_the_rest_translated() -> None:
    config = load_unvalidated(*BASE, "translate/bad-inputs.yaml")
    t = translate(config, NodeInfo(id="n"))
    errors = [p.format() for p in t.problems if p.is_error]
    assert any('subset "v3" is not defined' in e for e in errors)
    assert any("can't find codec for protocol: brpc" in e for e in errors)
    collision = next(e for e in errors if "collides" in e)
    assert "third.example.com" in collision
    assert DEMO in collision
    assert "127.0.0.20_20880" in names(t, "Listener")  # the second service is untouched
    assert "brpc.example.com_8000" not in names(t, "RouteConfiguration")
    assert_accepted(t)


def test_dns_resolution_gives_strict_dns_cluster() -> None:
    config = load(*BASE, "translate/rate-limit-server.yaml")
    options = TranslateOptions(supported_filters=frozenset({ROUTER_FILTER, "x"}))
    t = translate(config, NodeInfo(id="n"), options)
    assert all("rate-limit-server" not in n for n in names(t, "ClusterLoadAssignment"))
    t2 = translate(config, NodeInfo(id="n"))
    rls = of_kind(t2, "Cluster")["outbound|8081||rate-limit-server.metaprotocol.svc.cluster.local"]
    assert rls.type == rls.STRICT_DNS
    assert rls.HasField("http2_protocol_options")
    address = rls.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == (
        "rate-limit-server.metaprotocol.svc.cluster.local",
        8081,
    )


def test_inbound_needs_matching_labels_and_avoids_self_loop() -> None:
    config = load(*BASE)
    labels = {"app": "dubbo-sample-provider"}
    t = translate(config, NodeInfo(id="n", metadata={"LABELS": labels, "SERVICES": []}))
    problems = [p.message for p in t.problems]
    assert any("would forward to itself" in m for m in problems)
    assert names(t, "Listener") == []
    t = translate(
        config,
        NodeInfo(
            id="n",
            metadata={"LABELS": labels, "SERVICES": [], "INSTANCE_IPS": "127.0.0.12"},
        ),
    )
    assert names(t, "Listener") == ["inbound_127.0.0.12_20881"]  # the endpoint's own port
    assert_accepted(t)
    other = translate(config, NodeInfo(id="n", metadata={"LABELS": {"app": "other"}}))
    assert all(not n.startswith("inbound") for n in names(other, "Listener"))
