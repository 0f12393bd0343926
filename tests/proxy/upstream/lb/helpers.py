"""Shared helpers for load-balancer tests."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from aeraki.proxy.config import ClusterConfig, LbPolicy, Locality, SocketAddress
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb import LoadBalancer, create_load_balancer
from aeraki.proxy.upstream.lb.maglev import build_table
from aeraki.proxy.upstream.lb.ring_hash import build_ring


def make_hosts(*weights: int) -> list[Host]:
    return [Host(SocketAddress(f"10.0.0.{i + 1}", 9000), weight=w) for i, w in enumerate(weights)]


def make_lb(
    policy: LbPolicy, hosts: list[Host], seed: int = 1, **config: int | bool
) -> LoadBalancer:
    cluster = ClusterConfig(name="c", lb_policy=policy, **config)  # type: ignore[arg-type]
    return create_load_balancer(cluster, hosts, rng=random.Random(seed))


def tally(lb: LoadBalancer, n: int, keys: list[int | None] | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for i in range(n):
        host = lb.choose(None if keys is None else keys[i])
        assert host is not None
        counts[host.key] += 1
    return counts


# -- statistics ------------------------------------------------------------------------------
#: False-failure probability allowed per binomial assertion: a correct balancer fails one
#: with probability at most this, whatever the seed (the seeds below are fixed anyway).
ALPHA = 1e-6


def binomial_bounds(n: int, p: float, alpha: float = ALPHA) -> tuple[int, int]:
    """``[lo, hi]`` holding a Binomial(n, p) count except with probability ``<= alpha``.

    Exact tails (``alpha / 2`` each side), from the log-pmf, so the bound is neither a normal
    approximation nor a guess: ``P(X < lo) <= alpha/2`` and ``P(X > hi) <= alpha/2``.
    """
    if p <= 0.0:
        return 0, 0
    if p >= 1.0:
        return n, n
    log_p, log_q = math.log(p), math.log1p(-p)
    top = math.lgamma(n + 1)
    pmf = [
        math.exp(top - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        for k in range(n + 1)
    ]
    lo, tail = 0, 0.0
    while tail + pmf[lo] <= alpha / 2:
        tail += pmf[lo]
        lo += 1
    hi, tail = n, 0.0
    while tail + pmf[hi] <= alpha / 2:
        tail += pmf[hi]
        hi -= 1
    return lo, hi


def assert_binomial(count: int, n: int, p: float, what: str = "", alpha: float = ALPHA) -> None:
    """``count`` of ``n`` independent trials of probability ``p`` is within the exact bounds."""
    lo, hi = binomial_bounds(n, p, alpha)
    assert lo <= count <= hi, (
        f"{what}: {count}/{n} = {count / n:.4f}, expected p={p:.4f}, "
        f"bounds [{lo}, {hi}] at alpha={alpha}"
    )


def placed(
    priority: int, region: str, zone: str, *weights: int, locality_weight: int = 0, net: int = 0
) -> list[Host]:
    """Hosts of one ``LocalityLbEndpoints`` group (addresses 10.<net>.<priority>.<i>)."""
    return [
        Host(
            SocketAddress(f"10.{net}.{priority}.{i + 1}", 9000),
            weight=w,
            locality=Locality(region, zone),
            priority=priority,
            locality_weight=locality_weight,
        )
        for i, w in enumerate(weights)
    ]


def hash_space_share(
    policy: LbPolicy, hosts: Sequence[Host], weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Each host's exact share of the 64-bit hash space: arc lengths on the ring (default
    sizes) or slots of the Maglev table (65537), built as the balancers build them."""
    share = dict.fromkeys((h.key for h in hosts), 0.0)
    if policy is LbPolicy.MAGLEV:
        table = build_table(hosts, 65537, weights)
        for host in table:
            share[host.key] += 1 / len(table)
        return share
    space = 1 << 64
    hashes, owners = build_ring(hosts, 1024, 8 * 1024 * 1024, weights)
    for i, point in enumerate(hashes):
        previous = hashes[i - 1] if i else hashes[-1] - space
        share[owners[i].key] += (point - previous) / space
    return share
