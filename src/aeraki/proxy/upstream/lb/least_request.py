"""LEAST_REQUEST: power-of-N-choices over ``Host.active_requests``.

``choice_count`` candidates (default 2, Envoy's default) are sampled uniformly with
replacement from the targets, and the best candidate wins:

* all weights equal: the one with the fewest active requests (Envoy's P2C);
* weights differ: the one with the highest ``weight / (active_requests + 1)`` (compared by
  cross-multiplication, no floats). This is the effective weight Envoy's EDF variant uses
  with ``active_request_bias = 1``, applied to the sampled candidates: loaded hosts lose to
  idle ones, and among equally loaded hosts the heavier wins. (When every host is idle the
  heavier of the sampled pair always wins, so the idle split favours heavy hosts more than
  proportionally; under load the active counts dominate.)

Ties keep the first sampled candidate, which is itself random, so ties are broken randomly.
O(choice_count) per pick, no allocation.
"""

from __future__ import annotations

from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer

__all__ = ["LeastRequestLoadBalancer"]


class LeastRequestLoadBalancer(BaseLoadBalancer):
    """Power of N choices on active requests, weight-aware when weights differ."""

    _equal_weights: bool
    _extra_choices: int

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        self._equal_weights = len({h.weight for h in targets}) <= 1
        self._extra_choices = self._config.choice_count - 1

    def choose(self, hash_key: int | None) -> Host | None:
        """The least loaded of ``choice_count`` random hosts; ``hash_key`` is ignored."""
        targets = self._targets
        n = len(targets)
        if not n:
            return None
        rand = self._rng.random  # int(random() * n) < n for n < 2**53; faster than randrange
        best = targets[int(rand() * n)]
        extra = self._extra_choices
        if self._equal_weights:
            if extra == 1:  # the default (P2C): no loop
                candidate = targets[int(rand() * n)]
                return candidate if candidate.active_requests < best.active_requests else best
            for _ in range(extra):
                candidate = targets[int(rand() * n)]
                if candidate.active_requests < best.active_requests:
                    best = candidate
            return best
        for _ in range(extra):
            candidate = targets[int(rand() * n)]
            if candidate.weight * (best.active_requests + 1) > best.weight * (
                candidate.active_requests + 1
            ):
                best = candidate
        return best
