"""RING_HASH: Envoy's ketama-style consistent-hash ring.

Build (Envoy ``RingHashLoadBalancer::Ring``): with weights normalised to sum 1 and ``m`` the
smallest normalised weight, ``scale = min(ceil(m * ring_min_size) / m, ring_max_size)``; hosts
are walked in key order (Envoy walks them in EDS order; key order makes the ring independent
of how endpoints are listed), each adding entries ``XXH64("<host.key>_<i>", seed=0)`` for
``i = 0, 1, …`` until the running entry count reaches the running target
``Σ scale * weight``. So replicas are proportional to weight and the ring has between
``ring_min_size`` and ``ring_max_size`` entries (give or take rounding). The ring is sorted by
hash.

Lookup: the first entry whose hash is ``>= hash_key``, wrapping to the first entry
(``bisect_left``, O(log n), no allocation). A request without a hash key (no hash policy)
gets a random point, as Envoy does. Entries depend only on the host's key, so removing a host
moves the keys that host owned; the survivors also gain a few replicas (``ring_min_size`` is
spread over fewer hosts), each of which takes a small arc from a neighbour.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import xxhash

from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer, host_weights

__all__ = ["RingHashLoadBalancer", "build_ring"]


def build_ring(
    targets: Sequence[Host],
    min_size: int,
    max_size: int,
    weights: Sequence[float] | None = None,
) -> tuple[list[int], list[Host]]:
    """The sorted ring as parallel lists (hashes, hosts); see the module docstring.

    ``weights`` (default: the host weights) are the targets' shares; a target of weight 0
    gets no entry.
    """
    if weights is None:
        weights = [float(h.weight) for h in targets]
    # In key order, so that the replica counts (rounded on running totals) and tie-breaks do
    # not depend on the order the endpoints were listed in.
    pairs = sorted(
        ((h, w) for h, w in zip(targets, weights, strict=True) if w > 0), key=lambda p: p[0].key
    )
    if not pairs:
        return [], []
    total = sum(w for _, w in pairs)
    min_weight = min(w for _, w in pairs) / total
    scale = min(math.ceil(min_weight * min_size) / min_weight, float(max_size))
    entries: list[tuple[int, int, Host]] = []
    current = 0
    target = 0.0
    for order, (host, weight) in enumerate(pairs):
        target += scale * weight / total
        i = 0
        while current < target:
            digest = xxhash.xxh64_intdigest(f"{host.key}_{i}".encode(), 0)
            entries.append((digest, order, host))
            i += 1
            current += 1
    entries.sort(key=lambda e: (e[0], e[1]))
    return [e[0] for e in entries], [e[2] for e in entries]


class RingHashLoadBalancer(BaseLoadBalancer):
    """Consistent hashing on a ring of weighted host replicas."""

    _hashes: list[int]
    _ring_hosts: list[Host]

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        config = self._config
        self._hashes, self._ring_hosts = build_ring(
            targets,
            config.ring_min_size,
            config.ring_max_size,
            host_weights(targets, config.locality_weighted),
        )

    @property
    def ring_size(self) -> int:
        """Number of entries on the ring."""
        return len(self._hashes)

    def choose(self, hash_key: int | None) -> Host | None:
        """The owner of ``hash_key`` on the ring (a random point when ``None``)."""
        hashes = self._hashes
        if not hashes:
            return None
        if hash_key is None:
            hash_key = self._rng.getrandbits(64)
        i = bisect.bisect_left(hashes, hash_key)
        return self._ring_hosts[i if i < len(hashes) else 0]
