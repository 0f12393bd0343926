"""Priority levels and locality-weighted balancing, as Envoy does them.

Endpoints carry a priority (0 = highest) and a locality, from their EDS/bootstrap
``LocalityLbEndpoints`` group. :class:`PriorityLoadBalancer` wraps one balancer of the
cluster's policy per priority level and decides, per request, which level serves it
(Envoy's ``LoadBalancerBase``, ``load_balancer_impl.cc``):

* **Priority load** (``recalculatePerPriorityState``): a level's health is
  ``min(100, 140 * healthy // total)`` percent — the overprovisioning factor 1.4 counts a level
  with at least ~72 % healthy hosts as fully available. Levels take load in order, each as
  much as its health allows, until 100 % is handed out; if the healths add up to less than
  100, they are scaled up (``health * 100 // sum``) and the rounding remainder goes to the
  first level with any health. So all traffic stays on P0 while it is healthy enough and
  spills to P1, P2… as its hosts go unhealthy.
* **Panic** (``recalculatePerPriorityPanic``): never while the healths add up to 100 % (a
  sick P0 then only sheds load to P1). Otherwise a level with fewer than half of its hosts
  healthy balances over all of its hosts, and when *every* level is in panic the load is
  split by host count instead (``recalculateLoadInTotalPanic``).
* **Choosing the level** (``choosePriority``): ``point % 100`` against the cumulative loads,
  ``point`` being the request's hash for RING_HASH/MAGLEV (a key stays on its level while
  loads are stable) and a random 64-bit value otherwise.
* **Localities** (``common_lb_config.locality_weighted_lb_config``,
  ``ClusterConfig.locality_weighted``): within a level not in panic, a locality is picked by
  an earliest-deadline-first schedule over its *effective* weight
  ``locality_weight * min(1, 1.4 * healthy / total)``, then a host among that locality's
  healthy hosts. A locality without weight gets no traffic; if no locality can take any, the
  level's healthy hosts are used. The hashing policies instead fold locality weights into
  their ring or table (:func:`.api.host_weights`), as Envoy's thread-aware balancers do.

``update()`` (health changed) recomputes the loads and panic flags and rebuilds the children;
a new host set is regrouped. The common case — every host at priority 0 and no locality
weighting — never builds this class (see :func:`.create_load_balancer`); when one level takes
all the load, ``choose`` is a single indirection to that level.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aeraki.proxy.config import ClusterConfig, LbPolicy, Locality
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer

__all__ = [
    "OVERPROVISIONING_FACTOR",
    "PriorityLoadBalancer",
    "PriorityLoads",
    "locality_effective_weight",
    "priority_loads",
]

#: Envoy's default ``overprovisioning_factor``, in percent.
OVERPROVISIONING_FACTOR = 140
#: Envoy's default ``healthy_panic_threshold``, in percent (same test as ``select_targets``).
PANIC_THRESHOLD = 50

_HASHED = (LbPolicy.RING_HASH, LbPolicy.MAGLEV)


@dataclass(frozen=True, slots=True)
class PriorityLoads:
    """Per level: percent of traffic (sums to 100 unless there are no hosts) and panic."""

    loads: tuple[int, ...]
    panic: tuple[bool, ...]

    @property
    def total_panic(self) -> bool:
        """Every level in panic: load follows host counts."""
        return all(self.panic)


def priority_loads(
    levels: Sequence[tuple[int, int]], threshold: float = PANIC_THRESHOLD
) -> PriorityLoads:
    """Loads for levels given as ``(healthy, total)`` host counts (module docstring);
    ``threshold`` is the panic threshold in percent (0: a level never panics)."""
    health = [
        min(100, OVERPROVISIONING_FACTOR * healthy // total) if total else 0
        for healthy, total in levels
    ]
    normalized = min(100, sum(health))
    panic = tuple(
        normalized < 100 and (not total or 100 * healthy < threshold * total)
        for healthy, total in levels
    )
    if all(panic):
        hosts = sum(total for _, total in levels)
        if not hosts:
            return PriorityLoads(tuple(0 for _ in levels), panic)
        loads = [100 * total // hosts for _, total in levels]
        first = next(i for i, (_, total) in enumerate(levels) if total)
        loads[first] += 100 - sum(loads)
        return PriorityLoads(tuple(loads), panic)
    loads = []
    remaining = 100
    for h in health:
        load = min(remaining, h * 100 // normalized)
        loads.append(load)
        remaining -= load
    loads[next(i for i, h in enumerate(health) if h)] += remaining
    return PriorityLoads(tuple(loads), panic)


def locality_effective_weight(weight: int, healthy: int, total: int) -> float:
    """A locality's weight scaled by its availability, ``min(1, 1.4 * healthy / total)``."""
    if not total or not weight:
        return 0.0
    return weight * min(1.0, OVERPROVISIONING_FACTOR * healthy / (100 * total))


class _Localities:
    """One level's localities: a healthy-only balancer per locality and an EDF schedule over
    their effective weights (ties go to the earlier locality, then the earlier pick)."""

    __slots__ = (
        "_balancers",
        "_groups",
        "_healthy",
        "_heap",
        "_order",
        "_steps",
        "_weights",
        "available",
    )

    def __init__(
        self, groups: list[list[Host]], make: Callable[[Sequence[Host]], BaseLoadBalancer]
    ) -> None:
        self._groups = groups
        self._weights = [group[0].locality_weight for group in groups]
        self._balancers = [make(group) for group in groups]
        self._steps = [0.0] * len(groups)
        self._heap: list[tuple[float, int, int]] = []
        self._order = 0
        self._healthy: list[int] | None = None
        #: whether any locality can take traffic (else the level's balancer is used).
        self.available = False

    def refresh(self) -> None:
        """Re-read health: children rebuild; if a locality's health changed, the effective
        weights are recomputed and the schedule restarts (else it continues, so frequent
        ``update()`` calls do not bias it towards the heaviest locality)."""
        for balancer in self._balancers:
            balancer.update()
        healthy = [sum(1 for h in group if h.healthy) for group in self._groups]
        if healthy == self._healthy:
            return
        self._healthy = healthy
        self._heap = []
        for index, group in enumerate(self._groups):
            effective = locality_effective_weight(self._weights[index], healthy[index], len(group))
            if effective > 0:
                self._steps[index] = 1.0 / effective
                self._heap.append((self._steps[index], index, index))
        heapq.heapify(self._heap)
        self._order = len(self._groups)
        self.available = bool(self._heap)

    def choose(self, hash_key: int | None) -> Host | None:
        """A host of the locality whose deadline is earliest; that deadline moves on."""
        heap = self._heap
        deadline, _order, index = heap[0]
        heapq.heapreplace(heap, (deadline + self._steps[index], self._order, index))
        self._order += 1
        return self._balancers[index].choose(hash_key)


class _Level:
    """One priority level: a balancer over all its hosts, plus localities when weighted."""

    __slots__ = ("balancer", "hosts", "localities", "panic")

    def __init__(
        self, hosts: list[Host], make: Callable[..., BaseLoadBalancer], locality_weighted: bool
    ) -> None:
        self.hosts = hosts
        self.balancer = make(hosts, panic=False)  # the usual verdict: refresh rarely rebuilds
        self.panic = False
        self.localities: _Localities | None = None
        if locality_weighted:
            groups: dict[Locality, list[Host]] = {}
            for host in hosts:
                groups.setdefault(host.locality, []).append(host)
            self.localities = _Localities(
                list(groups.values()), lambda group: make(group, panic=False)
            )

    @property
    def counts(self) -> tuple[int, int]:
        """(healthy, total) hosts."""
        return sum(1 for h in self.hosts if h.healthy), len(self.hosts)

    def refresh(self, panic: bool) -> None:
        """Adopt the level's panic verdict and re-read health in every child."""
        self.panic = panic
        self.balancer.force_panic(panic)
        self.balancer.update()
        if self.localities is not None:
            self.localities.refresh()

    def choose(self, hash_key: int | None) -> Host | None:
        """By locality when weighted, unless in panic or no locality can take traffic."""
        localities = self.localities
        if localities is None or self.panic or not localities.available:
            return self.balancer.choose(hash_key)
        return localities.choose(hash_key)


class PriorityLoadBalancer:
    """The cluster's policy applied per priority level and locality (module docstring)."""

    def __init__(
        self,
        config: ClusterConfig,
        hosts: Sequence[Host],
        rng: random.Random | None,
        policy: type[BaseLoadBalancer],
    ) -> None:
        self._config = config
        self._rng = rng if rng is not None else random.Random()
        self._policy = policy
        self._hashed = config.lb_policy in _HASHED
        self._hosts: tuple[Host, ...] = ()
        self._levels: list[_Level] = []
        self._cumulative: list[int] = []
        #: the level taking all the load, as its ``choose`` (the policy's own when the level
        #: has no locality schedule): one call per pick in the common case.
        self._only: Callable[[int | None], Host | None] | None = None
        self._loads = PriorityLoads((), ())
        self.update(hosts)

    @property
    def hosts(self) -> Sequence[Host]:
        """Every host of the cluster, healthy or not."""
        return self._hosts

    @property
    def in_panic(self) -> bool:
        """Whether every priority level is in panic (load then follows host counts)."""
        return self._loads.total_panic

    @property
    def loads(self) -> tuple[int, ...]:
        """Percent of traffic per priority level (in level order, empty levels skipped)."""
        return self._loads.loads

    @property
    def priorities(self) -> tuple[int, ...]:
        """The priority of each level in :attr:`loads`."""
        return tuple(level.hosts[0].priority for level in self._levels)

    def update(self, hosts: Sequence[Host] | None = None) -> None:
        """Adopt ``hosts`` (regrouping levels and localities) and/or re-read health."""
        if hosts is not None:
            self._hosts = tuple(hosts)
            by_priority: dict[int, list[Host]] = {}
            for host in self._hosts:
                by_priority.setdefault(host.priority, []).append(host)
            config, rng, policy = self._config, self._rng, self._policy
            locality_weighted = config.locality_weighted and not self._hashed

            def make(group: Sequence[Host], panic: bool | None = None) -> BaseLoadBalancer:
                return policy(config, group, rng, panic=panic)

            self._levels = [
                _Level(by_priority[p], make, locality_weighted) for p in sorted(by_priority)
            ]
        self._loads = priority_loads(
            [level.counts for level in self._levels], self._config.panic_threshold
        )
        for level, panic in zip(self._levels, self._loads.panic, strict=True):
            level.refresh(panic)
        cumulative: list[int] = []
        total = 0
        for load in self._loads.loads:
            total += load
            cumulative.append(total)
        self._cumulative = cumulative
        serving = [
            level for level, load in zip(self._levels, self._loads.loads, strict=True) if load
        ]
        self._only = None
        if len(serving) == 1:
            only = serving[0]
            self._only = only.choose if only.localities else only.balancer.choose

    def choose(self, hash_key: int | None) -> Host | None:
        """A host of the level ``point % 100`` falls in (module docstring)."""
        only = self._only
        if only is not None:
            return only(hash_key)
        if not self._cumulative:
            return None
        point = hash_key if self._hashed and hash_key is not None else self._rng.getrandbits(64)
        point %= 100
        for level, bound in zip(self._levels, self._cumulative, strict=True):
            if point < bound:
                return level.choose(hash_key)
        return None
