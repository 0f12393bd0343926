"""The load-balancer interface and the host-set bookkeeping every policy shares.

Design (DESIGN §4 rule 3): a load balancer owns a precomputed structure (rotation list, EDF
heap, cumulative weights, ring, Maglev table) over its *targets* and ``choose`` only reads it.
The structure is rebuilt by :meth:`BaseLoadBalancer.update`, which the cluster calls when the
host set changes (EDS/DNS) or after health checking / outlier detection flips a host's
``healthy`` flag. ``update`` compares a cheap signature (host identity, weight) of the new
targets with the current one and rebuilds only when it differs, so calling it too often is
harmless. ``choose`` does not re-check health: between a flip and the next ``update`` the old
targets are used.

Targets and panic mode (Envoy's ``healthy_panic_threshold``, default 50%): unhealthy hosts
are excluded, unless fewer than half of the hosts are healthy; then the cluster is in panic
and balances over *all* hosts, as Envoy does, because concentrating all traffic on a small
healthy remainder tends to take that down too. Like Envoy's ``isHostSetInPanic``, the test
is on the plain healthy fraction (``2 * healthy < total``); the overprovisioning factor (1.4)
only enters the split between priority levels and localities (:mod:`.priority`), which
decides panic for each level itself (:meth:`BaseLoadBalancer.force_panic`). ``choose``
returns ``None`` only when the cluster has no hosts at all — or, for a balancer told not to
panic, no healthy host.

Weights: host weights, or, for a locality-weighted cluster, host weights scaled so that each
locality's hosts together carry that locality's share (:func:`host_weights`, used by the
hashing policies, which fold locality weights into their ring as Envoy does).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aeraki.proxy.config import ClusterConfig
from aeraki.proxy.upstream.host import Host

__all__ = ["BaseLoadBalancer", "LoadBalancer", "host_weights", "select_targets"]


@runtime_checkable
class LoadBalancer(Protocol):
    """Picks an upstream host for one request."""

    @property
    def hosts(self) -> Sequence[Host]:
        """Every host of the cluster, healthy or not."""
        ...

    @property
    def in_panic(self) -> bool:
        """Whether fewer than half of the hosts are healthy (balancing over all hosts)."""
        ...

    def choose(self, hash_key: int | None) -> Host | None:
        """A host for a request with LB hash ``hash_key`` (§20.3); ``None`` if no host."""
        ...

    def update(self, hosts: Sequence[Host] | None = None) -> None:
        """Adopt a new host set (or re-read health of the current one); rebuild if changed."""
        ...


def select_targets(
    hosts: Sequence[Host], panic: bool | None = None, threshold: float = 50.0
) -> tuple[tuple[Host, ...], bool]:
    """The hosts to balance over and whether that is panic mode (module docstring).

    ``panic`` forces the decision (``True``: all hosts; ``False``: the healthy ones);
    ``None`` applies ``threshold`` (percent of healthy hosts; 0 never panics).
    """
    if panic is None:
        healthy = tuple(h for h in hosts if h.healthy)
        panic = 100 * len(healthy) < threshold * len(hosts)
        return (tuple(hosts), True) if panic else (healthy, False)
    if panic:
        return tuple(hosts), True
    return tuple(h for h in hosts if h.healthy), False


def host_weights(targets: Sequence[Host], locality_weighted: bool) -> list[float]:
    """Each target's share for a hashing policy (Envoy's ``normalizeWeights``).

    Without locality weighting: the host weights. With it: within each locality, the host
    weights scaled to sum to the locality's weight (``Host.locality_weight``); hosts of a
    locality without weight get 0 (left out), like Envoy's zero-weight localities. If no
    locality has a weight, the host weights are used (the other policies then balance over
    every healthy host too). Only the ratios matter to the callers.
    """
    if not locality_weighted or not any(h.locality_weight for h in targets):
        return [float(h.weight) for h in targets]
    per_locality: dict[object, int] = {}
    for host in targets:
        per_locality[host.locality] = per_locality.get(host.locality, 0) + host.weight
    return [h.locality_weight * h.weight / per_locality[h.locality] for h in targets]


class BaseLoadBalancer:
    """Shared host bookkeeping; subclasses implement ``_rebuild`` and ``choose``."""

    def __init__(
        self,
        config: ClusterConfig,
        hosts: Sequence[Host],
        rng: random.Random | None = None,
        *,
        panic: bool | None = None,
    ) -> None:
        self._config = config
        self._rng = rng if rng is not None else random.Random()
        self._forced_panic = panic
        self._hosts: tuple[Host, ...] = tuple(hosts)
        self._targets: tuple[Host, ...] = ()
        self._signature: tuple[tuple[int, int], ...] | None = None
        self._panic = False
        self.update()

    @property
    def hosts(self) -> Sequence[Host]:
        """Every host of the cluster, healthy or not."""
        return self._hosts

    @property
    def targets(self) -> Sequence[Host]:
        """The hosts currently balanced over (healthy ones, or all in panic mode)."""
        return self._targets

    @property
    def in_panic(self) -> bool:
        """Whether fewer than half of the hosts are healthy (balancing over all hosts)."""
        return self._panic

    def update(self, hosts: Sequence[Host] | None = None) -> None:
        """Adopt ``hosts`` (if given) and re-read health; rebuild only when targets changed."""
        if hosts is not None:
            self._hosts = tuple(hosts)
        targets, self._panic = select_targets(
            self._hosts, self._forced_panic, self._config.panic_threshold
        )
        signature = tuple((id(h), h.weight) for h in targets)
        if signature == self._signature:
            return
        self._signature = signature
        self._targets = targets
        self._rebuild(targets)

    def force_panic(self, panic: bool | None) -> None:
        """Let the owner decide panic mode (``None``: the 50 % threshold); applied by the next
        :meth:`update`. A priority level's panic depends on every level (:mod:`.priority`)."""
        self._forced_panic = panic

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        """Recompute the policy's structure over ``targets`` (may be empty)."""
        raise NotImplementedError

    def choose(self, hash_key: int | None) -> Host | None:
        """A host for a request with LB hash ``hash_key`` (§20.3); ``None`` if no host."""
        raise NotImplementedError
