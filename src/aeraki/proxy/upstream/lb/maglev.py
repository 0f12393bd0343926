"""MAGLEV: the Maglev lookup table (Eisenbud et al., NSDI 2016) as Envoy builds it.

Each host has a permutation of the table slots: ``offset = XXH64(key, seed=0) % M`` and
``skip = XXH64(key, seed=1) % (M - 1) + 1`` (``M`` prime, so every skip visits every slot);
slot ``j`` of its permutation is ``(offset + j * skip) % M``. Hosts take turns claiming their
next free preferred slot until the table is full. Weights follow Envoy's weighted filling: on
iteration ``t`` (from 1) a host claims a slot only when ``t * weight >= target``, and each
claim adds ``max_weight`` to its target, so a host of weight ``max/3`` claims every third
iteration. Hosts take turns in the order of their keys (as in Envoy), so the same host keys
give the same table whatever order the endpoints come in, across processes and restarts.

Lookup is ``table[hash_key % M]`` — O(1), no allocation. A request without a hash key gets a
random slot. Removing a host mostly changes only the slots that host owned (Maglev's minimal
disruption is approximate: a few other slots move too).

Building costs ~M·ln(M) probe steps in Python (about 40-60 ms for the default 65537); it
happens only when the targets change. Clusters whose health flaps often may prefer a smaller
prime ``maglev_table_size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer, host_weights

__all__ = ["MaglevLoadBalancer", "build_table", "is_prime"]


def is_prime(n: int) -> bool:
    """Deterministic trial division (table sizes are at most a few million)."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def build_table(
    targets: Sequence[Host], size: int, weights: Sequence[float] | None = None
) -> list[Host]:
    """The filled lookup table of ``size`` slots (``size`` prime); empty if no targets.

    ``weights`` (default: the host weights) are the targets' shares; a target of weight 0
    gets no slot.
    """
    if weights is None:
        weights = [float(h.weight) for h in targets]
    # Sorted by key, as Envoy does: hosts take turns in this order, so the table must not
    # depend on the order the endpoints were listed in (EDS may reorder them).
    pairs = sorted(
        ((h, w) for h, w in zip(targets, weights, strict=True) if w > 0), key=lambda p: p[0].key
    )
    if not pairs:
        return []
    targets = [h for h, _ in pairs]
    weights = [w for _, w in pairs]
    n = len(targets)
    position = [0] * n
    skips = [0] * n
    for i, host in enumerate(targets):
        key = host.key.encode()
        position[i] = xxhash.xxh64_intdigest(key, 0) % size
        skips[i] = xxhash.xxh64_intdigest(key, 1) % (size - 1) + 1
    max_weight = max(weights)
    goal = [0.0] * n
    table: list[Host | None] = [None] * size
    filled = 0
    iteration = 0
    while filled < size:
        iteration += 1
        for i in range(n):
            if iteration * weights[i] < goal[i]:
                continue
            goal[i] += max_weight
            c, skip = position[i], skips[i]
            while table[c] is not None:
                c = (c + skip) % size
            table[c] = targets[i]
            position[i] = (c + skip) % size
            filled += 1
            if filled == size:
                break
    return [h for h in table if h is not None]


class MaglevLoadBalancer(BaseLoadBalancer):
    """Consistent hashing through a Maglev lookup table."""

    _table: list[Host]
    _size: int

    def _rebuild(self, targets: tuple[Host, ...]) -> None:
        config = self._config
        self._table = build_table(
            targets, config.maglev_table_size, host_weights(targets, config.locality_weighted)
        )
        self._size = len(self._table)

    def choose(self, hash_key: int | None) -> Host | None:
        """``table[hash_key % M]`` (a random slot when ``hash_key`` is ``None``)."""
        size = self._size
        if not size:
            return None
        if hash_key is None:
            return self._table[int(self._rng.random() * size)]
        return self._table[hash_key % size]
