"""Envoy ``Cluster`` protos -> :class:`~aeraki.proxy.config.ClusterConfig`, with value checks."""

from __future__ import annotations

import ipaddress
from typing import Any

from google.protobuf import json_format

from aeraki.proxy.bootstrap_problems import Problems, duration_seconds, join
from aeraki.proxy.bootstrap_resilience import convert_resilience
from aeraki.proxy.config import (
    ClusterConfig,
    DiscoveryType,
    EndpointConfig,
    LbPolicy,
    Locality,
    SocketAddress,
)

__all__ = ["convert_load_assignment", "convert_cluster", "convert_socket_address"]

#: Cluster.DiscoveryType value -> ours.
_DISCOVERY = {0: DiscoveryType.STATIC, 1: DiscoveryType.STRICT_DNS, 3: DiscoveryType.EDS}
#: Cluster.LbPolicy value -> ours.
_LB = {
    0: LbPolicy.ROUND_ROBIN,
    1: LbPolicy.LEAST_REQUEST,
    2: LbPolicy.RING_HASH,
    3: LbPolicy.RANDOM,
    5: LbPolicy.MAGLEV,
}
#: Envoy's upper bound for RING_HASH maximum_ring_size.
_MAX_RING = 8 * 1024 * 1024


def convert_socket_address(
    address: Any, path: str, problems: Problems, *, is_bind: bool = False
) -> SocketAddress:
    """``Address.socket_address`` with a required host and a port in 1..65535.

    A bind address (listener, admin) may use port 0: the kernel picks a free port, as in
    Envoy; the bound port is shown by the admin endpoint and by the listener objects.
    """
    if not address.HasField("socket_address"):
        problems.add(join(path, "socket_address"), "required")
        return SocketAddress("", 0)
    sa = address.socket_address
    here = join(path, "socket_address")
    if not sa.address:
        problems.add(join(here, "address"), "required")
    lowest = 0 if is_bind else 1
    if not lowest <= sa.port_value <= 65535:
        problems.add(join(here, "port_value"), f"must be in {lowest}..65535, got {sa.port_value}")
    return SocketAddress(sa.address, sa.port_value)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def _positive_duration(
    msg: Any, field: str, path: str, problems: Problems, default: float
) -> float:
    if not msg.HasField(field):
        return default
    seconds = duration_seconds(getattr(msg, field))
    if seconds <= 0:
        problems.add(join(path, field), f"must be greater than 0, got {seconds}s")
    return seconds


def convert_cluster(cluster: Any, path: str, problems: Problems, *, has_ads: bool) -> ClusterConfig:
    """One cluster; ``has_ads`` says whether EDS clusters can get endpoints (ADS configured)."""
    if not cluster.name:
        problems.add(join(path, "name"), "required")
    discovery = _DISCOVERY.get(cluster.type)
    if discovery is None:
        problems.add(join(path, "type"), "not supported yet (STATIC, STRICT_DNS or EDS)")
        discovery = DiscoveryType.STATIC
    lb_policy = _LB.get(cluster.lb_policy)
    if lb_policy is None:
        problems.add(join(path, "lb_policy"), "not supported yet")
        lb_policy = LbPolicy.ROUND_ROBIN
    kwargs: dict[str, Any] = {}
    if cluster.HasField("ring_hash_lb_config"):
        rh = cluster.ring_hash_lb_config
        rh_path = join(path, "ring_hash_lb_config")
        lo = rh.minimum_ring_size.value if rh.HasField("minimum_ring_size") else 1024
        hi = rh.maximum_ring_size.value if rh.HasField("maximum_ring_size") else _MAX_RING
        if hi > _MAX_RING:
            problems.add(join(rh_path, "maximum_ring_size"), f"must be at most {_MAX_RING}")
        if lo < 1 or lo > hi:
            problems.add(
                join(rh_path, "minimum_ring_size"), f"must be in 1..maximum_ring_size ({hi})"
            )
        kwargs.update(ring_min_size=lo, ring_max_size=hi)
    if cluster.HasField("maglev_lb_config") and cluster.maglev_lb_config.HasField("table_size"):
        size = cluster.maglev_lb_config.table_size.value
        if not _is_prime(size) or size > 5_000_011:
            problems.add(
                join(path, "maglev_lb_config.table_size"), f"must be a prime <= 5000011, got {size}"
            )
        kwargs["maglev_table_size"] = size
    if cluster.HasField("least_request_lb_config") and cluster.least_request_lb_config.HasField(
        "choice_count"
    ):
        count = cluster.least_request_lb_config.choice_count.value
        if count < 2:
            problems.add(join(path, "least_request_lb_config.choice_count"), "must be at least 2")
        kwargs["choice_count"] = count
    if cluster.common_lb_config.HasField("locality_weighted_lb_config"):
        kwargs["locality_weighted"] = True
    if cluster.common_lb_config.HasField("healthy_panic_threshold"):
        threshold = cluster.common_lb_config.healthy_panic_threshold.value
        if not 0 <= threshold <= 100:
            problems.add(
                join(path, "common_lb_config.healthy_panic_threshold.value"),
                f"must be a percentage in [0, 100], got {threshold}",
            )
        kwargs["panic_threshold"] = threshold
    kwargs["connect_timeout"] = _positive_duration(cluster, "connect_timeout", path, problems, 5.0)
    kwargs["dns_refresh_rate"] = _positive_duration(
        cluster, "dns_refresh_rate", path, problems, 5.0
    )
    if cluster.HasField("dns_refresh_rate") and discovery is not DiscoveryType.STRICT_DNS:
        problems.add(join(path, "dns_refresh_rate"), "only meaningful for STRICT_DNS clusters")
    if discovery is DiscoveryType.EDS:
        _check_eds(cluster, path, problems, has_ads=has_ads)
    elif cluster.HasField("eds_cluster_config"):
        problems.add(join(path, "eds_cluster_config"), "only meaningful for EDS clusters")
    endpoints = _endpoints(cluster, path, problems, discovery)
    kwargs.update(convert_resilience(cluster, path, problems))
    if discovery is DiscoveryType.EDS:
        kwargs["eds_service_name"] = cluster.eds_cluster_config.service_name
    return ClusterConfig(
        name=cluster.name,
        discovery=discovery,
        lb_policy=lb_policy,
        endpoints=endpoints,
        **kwargs,
    )


def _check_eds(cluster: Any, path: str, problems: Problems, *, has_ads: bool) -> None:
    if cluster.HasField("load_assignment"):
        problems.add(join(path, "load_assignment"), "EDS clusters get their endpoints from EDS")
    eds = cluster.eds_cluster_config
    if not eds.eds_config.HasField("ads"):
        problems.add(join(path, "eds_cluster_config.eds_config"), "only `ads: {}` is supported")
    elif not has_ads:
        problems.add(
            join(path, "eds_cluster_config.eds_config.ads"),
            "needs dynamic_resources.ads_config",
        )


def _endpoints(
    cluster: Any, path: str, problems: Problems, discovery: DiscoveryType
) -> tuple[EndpointConfig, ...]:
    return convert_load_assignment(
        cluster.load_assignment, join(path, "load_assignment"), problems, discovery
    )


def convert_load_assignment(
    assignment: Any,
    la_path: str,
    problems: Problems,
    discovery: DiscoveryType = DiscoveryType.STATIC,
) -> tuple[EndpointConfig, ...]:
    """The endpoints of a ``ClusterLoadAssignment`` (a cluster's, or an EDS resource).

    Each endpoint takes its ``LocalityLbEndpoints`` group's locality, priority and weight; a
    locality may appear once per priority (Envoy rejects duplicates too).
    """
    out: list[EndpointConfig] = []
    seen: set[tuple[int, Locality]] = set()
    for i, group in enumerate(assignment.endpoints):
        g_path = join(la_path, f"endpoints[{i}]")
        locality = Locality(group.locality.region, group.locality.zone, group.locality.sub_zone)
        if (group.priority, locality) in seen:
            problems.add(
                join(g_path, "locality"),
                f"duplicate locality {locality} in priority {group.priority}",
            )
        seen.add((group.priority, locality))
        locality_weight = group.load_balancing_weight.value
        if group.HasField("load_balancing_weight") and locality_weight < 1:
            problems.add(join(g_path, "load_balancing_weight"), "must be at least 1")
        for j, lb_endpoint in enumerate(group.lb_endpoints):
            e_path = join(la_path, f"endpoints[{i}].lb_endpoints[{j}]")
            if not lb_endpoint.HasField("endpoint"):
                problems.add(join(e_path, "endpoint"), "required")
                continue
            a_path = join(e_path, "endpoint.address")
            address = convert_socket_address(lb_endpoint.endpoint.address, a_path, problems)
            if discovery is DiscoveryType.STATIC and address.host:
                try:
                    ipaddress.ip_address(address.host)
                except ValueError:
                    problems.add(
                        join(a_path, "socket_address.address"),
                        f"{address.host!r} is not an IP address (use type STRICT_DNS for names)",
                    )
            weight = 1
            if lb_endpoint.HasField("load_balancing_weight"):
                weight = lb_endpoint.load_balancing_weight.value
                if weight < 1:
                    problems.add(join(e_path, "load_balancing_weight"), "must be at least 1")
            metadata = {
                key: json_format.MessageToDict(value)
                for key, value in lb_endpoint.metadata.filter_metadata.items()
            }
            out.append(
                EndpointConfig(
                    address=address,
                    weight=weight,
                    metadata=metadata,
                    locality=locality,
                    priority=group.priority,
                    locality_weight=locality_weight,
                )
            )
    return tuple(out)
