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
healthy remainder tends to take that down too. Envoy applies an overprovisioning factor of
1.4 before comparing with the threshold; this implementation compares the plain healthy
fraction (``2 * healthy < total``), as specified for this project. ``choose`` returns ``None``
only when the cluster has no hosts at all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aeraki.proxy.config import ClusterConfig
from aeraki.proxy.upstream.host import Host

__all__ = ["BaseLoadBalancer", "LoadBalancer", "select_targets"]


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


def select_targets(hosts: Sequence[Host]) -> tuple[tuple[Host, ...], bool]:
    """The hosts to balance over and whether the cluster is in panic mode (module docstring)."""
    healthy = tuple(h for h in hosts if h.healthy)
    if 2 * len(healthy) < len(hosts):
        return tuple(hosts), True
    return healthy, False


class BaseLoadBalancer:
    """Shared host bookkeeping; subclasses implement ``_rebuild`` and ``choose``."""

    def __init__(
        self,
        config: ClusterConfig,
        hosts: Sequence[Host],
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._rng = rng if rng is not None else random.Random()
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
        targets, self._panic = select_targets(self._hosts)
        signature = tuple((id(h), h.weight) for h in targets)
        if signature == self._signature:
            return
        self._signature = signature
        self._targets = targets
        self._rebuild(targets)

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        """Recompute the policy's structure over ``targets`` (may be empty)."""
        raise NotImplementedError

    def choose(self, hash_key: int | None) -> Host | None:
        """A host for a request with LB hash ``hash_key`` (§20.3); ``None`` if no host."""
        raise NotImplementedError
