"""Shared helpers for load-balancer tests."""

from __future__ import annotations

import random
from collections import Counter

from aeraki.proxy.config import ClusterConfig, LbPolicy, SocketAddress
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb import LoadBalancer, create_load_balancer


def make_hosts(*weights: int) -> list[Host]:
    return [Host(SocketAddress(f"10.0.0.{i + 1}", 9000), weight=w) for i, w in enumerate(weights)]


def make_lb(policy: LbPolicy, hosts: list[Host], seed: int = 1, **config: int) -> LoadBalancer:
    cluster = ClusterConfig(name="c", lb_policy=policy, **config)  # type: ignore[arg-type]
    return create_load_balancer(cluster, hosts, rng=random.Random(seed))


def tally(lb: LoadBalancer, n: int, keys: list[int | None] | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for i in range(n):
        host = lb.choose(None if keys is None else keys[i])
        assert host is not None
        counts[host.key] += 1
    return counts
