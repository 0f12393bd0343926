"""RANDOM: weighted random choice over the targets.

Equal weights: a uniform index (O(1)). Weights differ: a uniform integer point in
``[0, total_weight)`` located in the cumulative weights with ``bisect`` (O(log n)); integers
avoid the float rounding that could pick one past the end.
"""

from __future__ import annotations

import bisect

from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer

__all__ = ["RandomLoadBalancer"]


class RandomLoadBalancer(BaseLoadBalancer):
    """Weighted random."""

    _cumulative: list[int]
    _total: int

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        self._cumulative = []
        self._total = 0
        if len({h.weight for h in targets}) > 1:
            for host in targets:
                self._total += host.weight
                self._cumulative.append(self._total)

    def choose(self, hash_key: int | None) -> Host | None:
        """A random host, probability proportional to weight; ``hash_key`` is ignored."""
        targets = self._targets
        if not targets:
            return None
        if not self._total:
            return targets[self._rng.randrange(len(targets))]
        point = self._rng.randrange(self._total)
        return targets[bisect.bisect_right(self._cumulative, point)]
