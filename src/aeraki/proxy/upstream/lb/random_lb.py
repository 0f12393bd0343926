"""RANDOM: weighted random choice over the targets.

Equal weights: a uniform index (O(1)). Weights differ: a uniform integer point in
``[0, total_weight)`` located in the cumulative weights with ``bisect`` (O(log n)).
``int(random() * n)`` is used instead of ``randrange(n)`` (3x faster); it is always below
``n`` for ``n < 2**53`` because ``random() <= 1 - 2**-53`` and the product rounds down.
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
            return targets[int(self._rng.random() * len(targets))]
        point = int(self._rng.random() * self._total)
        return targets[bisect.bisect_right(self._cumulative, point)]
