"""``trafficPolicy.loadBalancer.localityLbSetting`` of a DestinationRule (Istio's
``LocalityLoadBalancerSetting``), typed and checked as Istio's validation does.

A locality is written ``region/zone/sub_zone``; in ``distribute`` a trailing ``*`` matches any
value from there on (``us-east/*``), and a shorter locality matches every zone below it. The
translation (:mod:`aeraki.control.translate.locality`) turns the setting into EDS priorities
and locality weights per proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aeraki.control.model.base import child_path, index_path
from aeraki.control.model.reader import Reader, describe

__all__ = [
    "TOPOLOGY_LABELS",
    "LocalityDistribute",
    "LocalityFailover",
    "LocalityLbSetting",
    "parse_locality_lb_setting",
]

#: Kubernetes/Istio topology labels that ``failoverPriority`` may name for the locality.
TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityDistribute:
    """Proxies in ``source`` (Istio's ``from``) send ``to[locality]`` percent to each."""

    source: str
    to: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityFailover:
    """Proxies in region ``source`` fail over to region ``to`` before any other region."""

    source: str
    to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityLbSetting:
    """``enabled`` is ``None`` when not written (Istio: on, unless the mesh turns it off)."""

    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()
    enabled: bool | None = None

    @property
    def is_disabled(self) -> bool:
        return self.enabled is False

    @property
    def wants_failover(self) -> bool:
        """Whether it configures failover (which needs outlier detection to ever happen)."""
        return bool(self.failover or self.failover_priority)


def _distribute(r: Reader, value: Any, path: str) -> LocalityDistribute | None:
    data = r.obj(value, path, ("from", "to"))
    if data is None:
        return None
    source = r.string(data, "from", path, required="required field is missing")
    to_path = child_path(path, "to")
    raw = data.get("to")
    if not isinstance(raw, Mapping) or not raw:
        r.error(to_path, f"expected a non-empty mapping of locality: weight, got {describe(raw)}")
        return None
    weights: dict[str, int] = {}
    for locality in raw:
        weight = r.integer(raw, locality, to_path, low=1, high=100)
        if weight is not None:
            weights[str(locality)] = weight
    if len(weights) == len(raw) and sum(weights.values()) != 100:
        r.error(to_path, f"total locality weight {sum(weights.values())} != 100")
    for locality in weights:
        _check_wildcard(r, locality, child_path(to_path, locality))
    _check_wildcard(r, source, child_path(path, "from"))
    return LocalityDistribute(source=source, to=weights)


def _failover(r: Reader, value: Any, path: str) -> LocalityFailover | None:
    data = r.obj(value, path, ("from", "to"))
    if data is None:
        return None
    source = r.string(data, "from", path, required="required field is missing")
    to = r.string(data, "to", path, required="required field is missing")
    for key, region in (("from", source), ("to", to)):
        if "/" in region:
            r.error(child_path(path, key), f'"{region}": failover names regions only (no "/")')
        if "*" in region:
            r.error(child_path(path, key), f'"{region}": failover regions cannot use "*"')
    if source and source == to:
        r.error(path, "failover must go to a different region")
    return LocalityFailover(source=source, to=to)


def _check_wildcard(r: Reader, locality: str, path: str) -> None:
    stars = locality.count("*")
    if stars > 1 or (stars == 1 and not locality.endswith("*")):
        r.error(path, f'"{locality}": one "*" at most, and only at the end')
    elif not locality or any(not part for part in locality.split("/")):
        r.error(path, f'"{locality}": region, zone and sub-zone may not be empty')


def parse_locality_lb_setting(r: Reader, value: Any, path: str) -> LocalityLbSetting | None:
    data = r.obj(value, path, ("distribute", "failover", "failoverPriority", "enabled"))
    if data is None:
        return None
    setting = LocalityLbSetting(
        distribute=r.items(data, "distribute", path, lambda v, p: _distribute(r, v, p)),
        failover=r.items(data, "failover", path, lambda v, p: _failover(r, v, p)),
        failover_priority=r.strings(data, "failoverPriority", path),
        enabled=r.boolean(data, "enabled", path) if "enabled" in data else None,
    )
    if setting.distribute and setting.failover:
        r.error(path, "distribute and failover cannot both be set")
    if setting.failover:
        for i, label in enumerate(setting.failover_priority):
            if label in TOPOLOGY_LABELS:
                r.error(
                    index_path(child_path(path, "failoverPriority"), i),
                    f"{label} cannot be combined with failover (failover already ranks regions)",
                )
    return setting
