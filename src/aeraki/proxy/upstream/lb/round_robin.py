"""ROUND_ROBIN, as Envoy does it.

* All weights equal: plain rotation over the targets (O(1)), starting at the first host.
* Weights differ: Envoy's earliest-deadline-first scheduler. Each host has a deadline
  ``current_time + 1/weight``; a pick pops the earliest deadline (ties: earlier insertion
  first, like Envoy's ``order_offset``), advances ``current_time`` to it and re-inserts the
  host with a new deadline. Over any window a host gets a share proportional to its weight,
  interleaved rather than in bursts. O(log n) per pick (one tuple per pick).
"""

from __future__ import annotations

import heapq

from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer

__all__ = ["RoundRobinLoadBalancer"]


class RoundRobinLoadBalancer(BaseLoadBalancer):
    """Weighted round robin (rotation, or EDF when weights differ)."""

    _rotation: tuple[Host, ...]
    _next: int
    _heap: list[tuple[float, int, Host]]
    _now: float
    _order: int

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        self._next = 0
        self._now = 0.0
        self._heap = []
        self._order = 0
        weights = {h.weight for h in targets}
        if len(weights) <= 1:
            self._rotation = targets
            return
        self._rotation = ()
        for host in targets:
            self._heap.append((1.0 / host.weight, self._order, host))
            self._order += 1
        heapq.heapify(self._heap)

    def choose(self, hash_key: int | None) -> Host | None:
        """The next host in weighted round-robin order; ``hash_key`` is ignored."""
        rotation = self._rotation
        if rotation:
            i = self._next
            self._next = (i + 1) % len(rotation)
            return rotation[i]
        heap = self._heap
        if not heap:
            return None
        deadline, _order, host = heap[0]
        self._now = deadline
        heapq.heapreplace(heap, (deadline + 1.0 / host.weight, self._order, host))
        self._order += 1
        return host
