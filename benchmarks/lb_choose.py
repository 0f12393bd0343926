"""Microbenchmark: ``LoadBalancer.choose`` per policy (ns per pick, best of several runs).

``choose`` runs once per request, so its cost is part of the proxy's per-request CPU. The
``flat`` rows are the common case (one priority, no locality weighting) and must not get
slower when locality-aware balancing is added; the ``priorities`` and ``localities`` rows show
what a cluster that uses those features pays.

    .venv/bin/python -m benchmarks.lb_choose [--picks 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import random
import timeit
from collections.abc import Callable, Sequence

from aeraki.proxy.config import ClusterConfig, LbPolicy, SocketAddress
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb import LoadBalancer, create_load_balancer

Scenario = Callable[[], list[Host]]


def _flat() -> list[Host]:
    return [Host(SocketAddress(f"10.0.0.{i}", 9000), weight=1) for i in range(1, 4)]


def _weighted() -> list[Host]:
    return [Host(SocketAddress(f"10.0.0.{i}", 9000), weight=i) for i in range(1, 4)]


SCENARIOS: dict[str, tuple[Scenario, dict[str, object]]] = {
    "flat": (_flat, {}),
    "weighted": (_weighted, {}),
}


def _extra_scenarios() -> None:
    """Scenarios that need locality support in Host (absent before it existed)."""
    try:
        from aeraki.proxy.config import Locality
    except ImportError:
        return

    def priorities() -> list[Host]:
        hosts = _flat() + [Host(SocketAddress(f"10.0.1.{i}", 9000)) for i in range(1, 4)]
        for host in hosts[3:]:
            host.priority = 1
        return hosts

    def localities() -> list[Host]:
        hosts = [Host(SocketAddress(f"10.0.{z}.{i}", 9000)) for z in range(2) for i in range(3)]
        for i, host in enumerate(hosts):
            host.locality = Locality("r", f"z{i // 3}")
            host.locality_weight = 1 + i // 3
        return hosts

    SCENARIOS["priorities"] = (priorities, {})
    SCENARIOS["localities"] = (localities, {"locality_weighted": True})


def bench(
    policy: LbPolicy, hosts: Sequence[Host], extra: dict[str, object], picks: int, repeat: int
) -> float:
    """Best ns per ``choose`` over ``repeat`` runs of ``picks`` picks."""
    config = ClusterConfig(name="c", lb_policy=policy, maglev_table_size=65537, **extra)  # type: ignore[arg-type]
    lb: LoadBalancer = create_load_balancer(config, hosts, rng=random.Random(1))
    keys = [random.getrandbits(64) for _ in range(1024)] if policy in _HASHED else None
    choose = lb.choose
    if keys is None:
        run = lambda: [choose(None) for _ in range(picks)]  # noqa: E731
    else:
        run = lambda: [choose(keys[i & 1023]) for i in range(picks)]  # noqa: E731
    best = min(timeit.repeat(run, number=1, repeat=repeat))
    return best / picks * 1e9


_HASHED = (LbPolicy.RING_HASH, LbPolicy.MAGLEV)


class _Noop:
    """A balancer that does nothing: measures the loop and the call."""

    host: Host | None = None

    def choose(self, hash_key: int | None) -> Host | None:
        return self.host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    _extra_scenarios()
    noop = _Noop()
    loop = min(
        timeit.repeat(
            lambda: [noop.choose(None) for _ in range(args.picks)], number=1, repeat=args.repeat
        )
    )
    print(f"loop + call overhead (subtracted below): {loop / args.picks * 1e9:.0f} ns")
    print(f"{'scenario':<12}" + "".join(f"{p.value:>14}" for p in LbPolicy))
    for name, (make, extra) in SCENARIOS.items():
        row = [
            bench(p, make(), extra, args.picks, args.repeat) - loop / args.picks * 1e9
            for p in LbPolicy
        ]
        print(f"{name:<12}" + "".join(f"{ns:>11.0f} ns" for ns in row))


if __name__ == "__main__":
    main()
