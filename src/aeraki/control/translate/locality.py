"""Locality-aware load balancing, built per proxy as Istio builds it.

Istio (``pilot/pkg/networking/core/loadbalancer``, ``xds/endpoints/endpoint_builder.go``):

1. **Grouping.** A cluster's endpoints are grouped by locality into ``LocalityLbEndpoints``
   (sorted by locality, the group's weight the sum of its endpoints' weights). An endpoint's
   locality is its ServiceEntry ``locality`` (``region/zone/sub_zone``), else its
   ``topology.istio.io/locality`` or ``istio-locality`` label (``.`` for ``/``: label values
   cannot hold ``/``), else — an extension over Istio, for endpoints labelled like
   Kubernetes nodes — its ``topology.kubernetes.io/region``/``zone`` and
   ``topology.istio.io/subzone`` labels.
2. **Which setting.** The DestinationRule's ``localityLbSetting`` (subset's load balancer,
   else the top-level one); ``enabled: false`` turns it off; without one, the mesh default
   (Istio's: enabled, no rules — :attr:`TranslateOptions.locality_lb_enabled`).
3. **Applying it, relative to the proxy's own locality** (``node.locality``):

   * ``distribute``: the first rule whose ``from`` matches the proxy sets the group weights
     (each ``to`` locality's percentage split over the groups it matches, in proportion to
     their weights, rounded up); groups no ``to`` matches lose their endpoints.
   * otherwise, only when **outlier detection** is configured for the cluster (Istio's rule:
     without it no host is ever found unhealthy, so a lower priority would never be used):
     ``failoverPriority`` splits each group by how many of the listed labels, in order,
     endpoint and proxy share (all: priority 0); then (or alone) the locality failover
     ranks groups by locality match — same region/zone/sub-zone 0, same zone 1, same
     region 2, other regions 3, and 4 for regions other than the proxy region's ``failover``
     target. Priorities are then renumbered 0..N without gaps.

   The cluster balances by locality weight (``common_lb_config.locality_weighted_lb_config``)
   when ``distribute`` is set, or failover with ``failover``/``failoverPriority`` rules is on.

Labels compared by ``failoverPriority`` are the workload labels plus the topology labels of
the locality (Istio's ``AugmentLabels``), for endpoints (their labels) and for the proxy
(node metadata ``LABELS``). Deviation from Istio: group weights are only written when the
cluster balances by locality weight (the only time Envoy reads them), so clusters that do not
use locality balancing translate exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from google.protobuf import wrappers_pb2

from aeraki.control.model.istio import WorkloadEntry
from aeraki.control.model.locality import TOPOLOGY_LABELS, LocalityLbSetting

__all__ = [
    "Group",
    "Triple",
    "apply_locality_lb",
    "effective_setting",
    "endpoint_locality",
    "group_endpoints",
    "lb_priority",
    "locality_endpoints",
    "locality_match",
    "split_locality",
    "topology_labels",
    "uses_locality_weights",
]

#: (region, zone, sub_zone); empty strings where unknown.
Triple = tuple[str, str, str]

_LOCALITY_LABELS = ("topology.istio.io/locality", "istio-locality")
_REGION, _ZONE, _SUBZONE = TOPOLOGY_LABELS
#: Istio's mesh-wide default: locality LB on, no rules.
_MESH_DEFAULT = LocalityLbSetting(enabled=True)


def split_locality(text: str) -> Triple:
    """``region/zone/sub_zone`` (missing parts empty), as Istio's ``SplitLocality``."""
    parts = text.split("/")
    return (parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")


def endpoint_locality(entry: WorkloadEntry) -> Triple:
    """Where an endpoint runs (module docstring, step 1)."""
    if entry.locality:
        return split_locality(entry.locality)
    labels = entry.labels
    for key in _LOCALITY_LABELS:
        value = labels.get(key, "")
        if value:
            return split_locality(value if "/" in value else value.replace(".", "/"))
    return (labels.get(_REGION, ""), labels.get(_ZONE, ""), labels.get(_SUBZONE, ""))


def topology_labels(labels: Mapping[str, str], locality: Triple) -> dict[str, str]:
    """``labels`` plus the topology labels of ``locality`` (Istio's ``AugmentLabels``)."""
    out = dict(labels)
    for key, value in zip(TOPOLOGY_LABELS, locality, strict=True):
        if value:
            out[key] = value
    return out


def locality_match(locality: Triple, rule: str) -> bool:
    """Whether ``locality`` is in ``rule`` (``*`` matches anything; a missing zone or
    sub-zone in the rule matches any), as Istio's ``LocalityMatch``."""
    region, zone, sub_zone = split_locality(rule)
    return (
        region in ("*", locality[0])
        and zone in ("*", "", locality[1])
        and sub_zone in ("*", "", locality[2])
    )


def lb_priority(proxy: Triple, endpoint: Triple) -> int:
    """0 same sub-zone, 1 same zone, 2 same region, 3 elsewhere (Istio's ``LbPriority``)."""
    if proxy[0] != endpoint[0]:
        return 3
    if proxy[1] != endpoint[1]:
        return 2
    return 0 if proxy[2] == endpoint[2] else 1


def effective_setting(
    rule_setting: LocalityLbSetting | None, mesh_enabled: bool
) -> LocalityLbSetting | None:
    """The setting in force, ``None`` when locality LB is off (Istio's
    ``GetLocalityLbSetting``): the rule's unless it says ``enabled: false``, else the mesh's."""
    if rule_setting is not None:
        return None if rule_setting.is_disabled else rule_setting
    return _MESH_DEFAULT if mesh_enabled else None


def uses_locality_weights(setting: LocalityLbSetting, enable_failover: bool) -> bool:
    """Whether the cluster must balance by locality weight (module docstring)."""
    return bool(setting.distribute) or (enable_failover and setting.wants_failover)


# -- groups ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Group:
    """One ``LocalityLbEndpoints`` being built: its endpoints (with their labels), priority
    and weight (the sum of the endpoint weights unless ``distribute`` set it)."""

    locality: Triple
    endpoints: list[tuple[endpoint_components_pb2.LbEndpoint, Mapping[str, str]]] = field(
        default_factory=list
    )
    priority: int = 0
    weight: int = 0


def _weight(endpoint: endpoint_components_pb2.LbEndpoint) -> int:
    return endpoint.load_balancing_weight.value or 1


def group_endpoints(
    items: Iterable[tuple[endpoint_components_pb2.LbEndpoint, Triple, Mapping[str, str]]],
) -> list[Group]:
    """Endpoints grouped by locality, groups in locality order; labels gain the topology
    labels of their locality."""
    groups: dict[Triple, Group] = {}
    for endpoint, locality, labels in items:
        group = groups.setdefault(locality, Group(locality))
        group.endpoints.append((endpoint, topology_labels(labels, locality)))
        group.weight += _weight(endpoint)
    return [groups[k] for k in sorted(groups, key="/".join)]


def _renumber(groups: Sequence[Group]) -> None:
    """Priorities 0..N in the order of their current values, without gaps."""
    rank = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    for group in groups:
        group.priority = rank[group.priority]


def _distribute(groups: list[Group], proxy: Triple, setting: LocalityLbSetting) -> None:
    rule = next((d for d in setting.distribute if locality_match(proxy, d.source)), None)
    if rule is None:
        return
    unmatched = set(range(len(groups)))
    for to in sorted(rule.to):
        matched = [i for i in sorted(unmatched) if locality_match(groups[i].locality, to)]
        unmatched.difference_update(matched)
        total = sum(groups[i].weight for i in matched)
        for i in matched:
            groups[i].weight = math.ceil(groups[i].weight * rule.to[to] / total)
    for i in unmatched:
        groups[i].endpoints = []


def _failover(groups: list[Group], proxy: Triple, setting: LocalityLbSetting) -> None:
    target = next((f.to for f in setting.failover if f.source == proxy[0]), None)
    for group in groups:
        rank = lb_priority(proxy, group.locality)
        if rank == 3 and target is not None and group.locality[0] != target:
            rank = 4
        group.priority = group.priority * 5 + rank
    _renumber(groups)


def _label_rank(
    labels: Mapping[str, str], proxy_labels: Mapping[str, str], keys: Sequence[str]
) -> int:
    """0 when every ``key`` matches, else ``len(keys) - j`` for the first mismatch ``j``;
    ``key=value`` compares with ``value`` instead of the proxy's label."""
    for j, key in enumerate(keys):
        name, sep, forced = key.partition("=")
        wanted = forced if sep else proxy_labels.get(name, "")
        if labels.get(name, "") != wanted:
            return len(keys) - j
    return 0


def _failover_priority(
    groups: list[Group], proxy_labels: Mapping[str, str], keys: Sequence[str]
) -> list[Group]:
    if not proxy_labels:
        return groups  # Istio: nothing to compare with
    out: list[Group] = []
    for group in groups:
        split: dict[int, Group] = {}
        for endpoint, labels in group.endpoints:
            rank = _label_rank(labels, proxy_labels, keys)
            part = split.setdefault(rank, Group(group.locality, priority=rank))
            part.endpoints.append((endpoint, labels))
            part.weight += _weight(endpoint)
        out.extend(split[rank] for rank in sorted(split))
    _renumber(out)
    return out


def apply_locality_lb(
    groups: list[Group],
    proxy: Triple,
    proxy_labels: Mapping[str, str],
    setting: LocalityLbSetting,
    enable_failover: bool,
) -> list[Group]:
    """Priorities and weights of ``groups`` for a proxy at ``proxy`` (module docstring)."""
    if setting.distribute:
        _distribute(groups, proxy, setting)
        return groups
    if not enable_failover:
        return groups
    if setting.failover_priority:
        groups = _failover_priority(
            groups, topology_labels(proxy_labels, proxy), setting.failover_priority
        )
        if not setting.failover:
            return groups
    _failover(groups, proxy, setting)
    return groups


def locality_endpoints(
    groups: Sequence[Group], weighted: bool
) -> list[endpoint_components_pb2.LocalityLbEndpoints]:
    """The ``ClusterLoadAssignment.endpoints`` for ``groups`` (weights only when ``weighted``)."""
    out: list[endpoint_components_pb2.LocalityLbEndpoints] = []
    for group in groups:
        message = endpoint_components_pb2.LocalityLbEndpoints(
            lb_endpoints=[endpoint for endpoint, _ in group.endpoints], priority=group.priority
        )
        if any(group.locality):
            region, zone, sub_zone = group.locality
            message.locality.CopyFrom(
                base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)
            )
        if weighted and group.weight:
            message.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=group.weight))
        out.append(message)
    return out
