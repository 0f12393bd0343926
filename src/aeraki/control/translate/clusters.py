"""Clusters ``outbound|<port>|<subset>|<host>`` and their endpoints (reference §3.4, §6.8).

Aeraki leaves clusters to Istio; standalone, we build them as Istio would for our proxy:

- STATIC / NONE resolution: an EDS cluster over ADS plus a ``ClusterLoadAssignment`` with the
  ServiceEntry endpoints whose labels contain the subset's labels; the endpoint port is the
  endpoint's ``ports[<port name>]``, else the port's ``targetPort``, else its number.
- DNS / DNS_ROUND_ROBIN: a STRICT_DNS cluster with the endpoints (or, without endpoints, the
  host itself) inline: our proxy resolves names for STRICT_DNS only.
- Load balancer from the DestinationRule (subset policy, else top level): ``simple`` maps to
  ROUND_ROBIN / LEAST_REQUEST / RANDOM; ``consistentHash`` to RING_HASH (MAGLEV when ``maglev``
  is given), the hash key going to the route's ``hash_policy`` (see :mod:`.routes`).
- ``connectionPool.tcp.connectTimeout`` sets ``connect_timeout``.

- ``connectionPool`` limits and ``outlierDetection``: circuit breakers and outlier detection
  (:mod:`.resilience`).
- Endpoints grouped by locality; ``localityLbSetting`` (and outlier detection, which failover
  needs) gives the groups priorities and weights relative to the asking proxy's locality
  (:mod:`.locality`), so clusters are per node view.

Only fields our proxy accepts are set (``aeraki.proxy.bootstrap_strict``): no TLS; that
DestinationRule setting is reported as not applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from aeraki.control.model.base import Resource, Severity
from aeraki.control.model.istio import DestinationRuleSpec, Subset, TrafficPolicy
from aeraki.control.model.reader import parse_duration
from aeraki.control.translate.api import NodeInfo, TranslateOptions
from aeraki.control.translate.catalog import Catalog, PortRef, cluster_name, problem
from aeraki.control.translate.locality import (
    Triple,
    apply_locality_lb,
    effective_setting,
    endpoint_locality,
    group_endpoints,
    locality_endpoints,
    uses_locality_weights,
)
from aeraki.control.translate.resilience import apply_resilience, effective_settings
from aeraki.control.translate.routes import load_balancer_of

__all__ = ["ads_source", "build_cluster", "duration", "static_cluster"]

_SIMPLE = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_CONN": cluster_pb2.Cluster.LEAST_REQUEST,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
}
_DNS = ("DNS", "DNS_ROUND_ROBIN")
_HTTP2 = ("grpc", "http2", "h2c")
_IGNORED_POLICIES = ("tls",)


def duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _lb_endpoint(address: str, port: int, weight: int = 0) -> endpoint_components_pb2.LbEndpoint:
    ep = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        )
    )
    if weight > 0:
        ep.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=weight))
    return ep


def _subset(rule: Resource[DestinationRuleSpec] | None, name: str) -> Subset | None:
    if rule is None:
        return None
    return next((s for s in rule.spec.subsets if s.name == name), None)


def _policies(rule: Resource[DestinationRuleSpec] | None, subset: Subset | None) -> list[Any]:
    """Traffic policies, most specific first (Istio merges subset over top level)."""
    found: list[TrafficPolicy] = []
    if subset is not None and subset.traffic_policy is not None:
        found.append(subset.traffic_policy)
    if rule is not None and rule.spec.traffic_policy is not None:
        found.append(rule.spec.traffic_policy)
    return found


def _connect_timeout(
    catalog: Catalog,
    rule: Resource[DestinationRuleSpec] | None,
    policies: list[Any],
    default: timedelta,
) -> timedelta:
    for policy in policies:
        pool: Mapping[str, Any] = policy.connection_pool or {}
        tcp = pool.get("tcp")
        text = tcp.get("connectTimeout") if isinstance(tcp, Mapping) else None
        if text is None:
            continue
        seconds = parse_duration(str(text))
        if seconds is None or seconds <= 0:
            assert rule is not None
            catalog.problems.append(
                problem(
                    rule,
                    "trafficPolicy.connectionPool.tcp.connectTimeout",
                    f"invalid duration {text!r}; using {default.total_seconds()}s",
                    Severity.WARNING,
                )
            )
            return default
        return timedelta(seconds=seconds)
    return default


def _apply_lb(
    catalog: Catalog,
    cluster: cluster_pb2.Cluster,
    rule: Resource[DestinationRuleSpec] | None,
    subset: str,
    options: TranslateOptions,
) -> None:
    lb = load_balancer_of(rule.spec if rule else None, subset)
    cluster.lb_policy = cluster_pb2.Cluster.LbPolicy.Value(options.default_lb_policy)
    if lb is None:
        return
    assert rule is not None
    index = next((i for i, s in enumerate(rule.spec.subsets) if s.name == subset), None)
    where = (
        f"spec.subsets[{index}].trafficPolicy.loadBalancer"
        if index is not None
        else "spec.trafficPolicy.loadBalancer"
    )
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if not ch.http_header_name:
            catalog.problems.append(
                problem(
                    rule,
                    f"{where}.consistentHash",
                    "MetaProtocol hashes request metadata only: use httpHeaderName "
                    "(other hash keys give no stickiness)",
                    Severity.WARNING,
                )
            )
        if ch.maglev is not None:
            cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
            size = ch.maglev.get("tableSize")
            if isinstance(size, int) and size > 0:
                cluster.maglev_lb_config.table_size.value = size
        else:
            cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
            ring = ch.ring_hash.get("minimumRingSize") if ch.ring_hash else ch.minimum_ring_size
            if isinstance(ring, int) and ring > 0:
                cluster.ring_hash_lb_config.minimum_ring_size.value = ring
    elif lb.simple in _SIMPLE:
        cluster.lb_policy = _SIMPLE[lb.simple]
    elif lb.simple == "PASSTHROUGH":
        catalog.problems.append(
            problem(
                rule,
                f"{where}.simple",
                f"PASSTHROUGH is not supported; using {options.default_lb_policy}",
                Severity.WARNING,
            )
        )


def build_cluster(
    catalog: Catalog,
    ref: PortRef,
    subset: str,
    options: TranslateOptions,
    node: NodeInfo | None = None,
) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]:
    """The cluster for ``ref`` and ``subset``, with its EDS resource when it is an EDS cluster;
    endpoint priorities and weights are relative to ``node``'s locality."""
    rule = catalog.destination_rule(ref.host)
    sub = _subset(rule, subset)
    labels: Mapping[str, str] = sub.labels if sub is not None else {}
    policies = _policies(rule, sub)
    name = cluster_name("outbound", ref.number, subset, ref.host)
    cluster = cluster_pb2.Cluster(
        name=name,
        connect_timeout=duration(
            _connect_timeout(catalog, rule, policies, options.connect_timeout)
        ),
    )
    _apply_lb(catalog, cluster, rule, subset, options)
    apply_resilience(catalog, cluster, rule, subset, ref.number)
    if ref.port.name.split("-", 1)[0].lower() in _HTTP2:
        cluster.http2_protocol_options.SetInParent()  # gRPC upstream (a rate-limit service)
    for policy in policies:
        for attr in _IGNORED_POLICIES:
            if getattr(policy, attr) is not None:
                assert rule is not None
                catalog.problems.append(
                    problem(
                        rule,
                        "spec.trafficPolicy",
                        f"{attr} is not applied by the standalone data plane yet",
                        Severity.WARNING,
                    )
                )
    spec = ref.entry.spec
    endpoints: list[tuple[endpoint_components_pb2.LbEndpoint, Triple, Mapping[str, str]]] = []
    for i, ep in enumerate(spec.endpoints):
        if any(ep.labels.get(k) != v for k, v in labels.items()):
            continue
        if ep.address.startswith("unix://"):
            catalog.problems.append(
                problem(
                    ref.entry,
                    f"spec.endpoints[{i}].address",
                    "unix domain sockets are not supported by the data plane; endpoint skipped",
                    Severity.WARNING,
                )
            )
            continue
        port = ep.ports.get(ref.port.name) or ref.port.target_port or ref.number
        endpoints.append(
            (_lb_endpoint(ep.address, port, ep.weight), endpoint_locality(ep), ep.labels)
        )
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    _place_endpoints(cluster, assignment, endpoints, rule, subset, ref.number, options, node)
    if spec.resolution in _DNS:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        if not spec.endpoints and not labels:
            port = ref.port.target_port or ref.number
            assignment.endpoints.add().lb_endpoints.append(_lb_endpoint(ref.host, port))
        cluster.load_assignment.CopyFrom(assignment)
        return cluster, None
    cluster.type = cluster_pb2.Cluster.EDS
    cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    cluster.eds_cluster_config.service_name = name
    return cluster, assignment


def _place_endpoints(
    cluster: cluster_pb2.Cluster,
    assignment: endpoint_pb2.ClusterLoadAssignment,
    endpoints: list[tuple[endpoint_components_pb2.LbEndpoint, Triple, Mapping[str, str]]],
    rule: Resource[DestinationRuleSpec] | None,
    subset: str,
    port: int,
    options: TranslateOptions,
    node: NodeInfo | None,
) -> None:
    """Locality groups of ``endpoints`` into ``assignment``, ranked for ``node``
    (:mod:`.locality`); the cluster balances by locality weight when the setting needs it."""
    groups = group_endpoints(endpoints)
    lb = load_balancer_of(rule.spec if rule else None, subset)
    setting = effective_setting(lb.locality_lb_setting if lb else None, options.locality_lb_enabled)
    weighted = False
    if setting is not None and node is not None:
        outlier = effective_settings(rule.spec, subset, port)[1] if rule else None
        enable_failover = outlier is not None
        groups = apply_locality_lb(groups, node.locality, node.labels, setting, enable_failover)
        weighted = uses_locality_weights(setting, enable_failover)
    if weighted:
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    assignment.endpoints.extend(locality_endpoints(groups, weighted))


def static_cluster(
    name: str, address: str, port: int, options: TranslateOptions
) -> cluster_pb2.Cluster:
    """A STATIC single-endpoint cluster (the local application behind an inbound listener)."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration(options.connect_timeout),
    )
    cluster.load_assignment.cluster_name = name
    cluster.load_assignment.endpoints.add().lb_endpoints.append(_lb_endpoint(address, port))
    return cluster
