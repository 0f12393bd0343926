"""Priority levels, failover and locality-weighted balancing (Envoy's semantics).

Health is driven through ``Host.healthy`` plus ``update()``, exactly what health checking and
outlier detection do. Random splits are checked against exact binomial bounds (false-failure
probability at most 1e-6 per assertion, see helpers); EDF schedules are checked exactly.
"""

from __future__ import annotations

import random

import pytest

from aeraki.proxy.config import LbPolicy
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb import LoadBalancer, PriorityLoadBalancer, RoundRobinLoadBalancer
from aeraki.proxy.upstream.lb.api import host_weights
from aeraki.proxy.upstream.lb.priority import locality_effective_weight, priority_loads

from .helpers import assert_binomial, hash_space_share, make_hosts, make_lb, placed, tally

ALL = list(LbPolicy)
HASHED = (LbPolicy.RING_HASH, LbPolicy.MAGLEV)
N = 10_000


def _levels(*healthy_percent: int) -> list[tuple[int, int]]:
    return [(p, 100) for p in healthy_percent]


# -- priority load: Envoy's tables (docs: load_balancing/priority) ---------------------------


@pytest.mark.parametrize(
    ("healthy", "loads"),
    [
        ((100, 100), (100, 0)),
        ((72, 100), (100, 0)),
        ((71, 100), (99, 1)),
        ((50, 100), (70, 30)),
        ((25, 100), (35, 65)),
        ((0, 100), (0, 100)),
        ((100, 100, 100), (100, 0, 0)),
        ((72, 72, 100), (100, 0, 0)),
        ((71, 71, 100), (99, 1, 0)),
        ((50, 50, 100), (70, 30, 0)),
        ((25, 100, 100), (35, 65, 0)),
        ((25, 25, 100), (35, 35, 30)),
        # Healths 70 + 14 = 84 < 100: scaled to 83 + 16, the rounding remainder to P0.
        ((50, 10), (84, 16)),
        # Every level under 50 % healthy: total panic, load by host count. (Envoy's docs
        # table shows 36/36/28 here, leaving the panic threshold aside; its code does this.)
        ((25, 25, 20), (34, 33, 33)),
    ],
)
def test_priority_loads_follow_envoy(healthy: tuple[int, ...], loads: tuple[int, ...]) -> None:
    result = priority_loads(_levels(*healthy))
    assert result.loads == loads
    assert sum(result.loads) == 100


def test_no_panic_while_the_levels_together_are_healthy_enough() -> None:
    """P0 at 40 % healthy is not in panic when P1 makes up the rest (healths sum to 100):
    P0's 56 % goes to its healthy hosts only. Alone, the same P0 is in panic."""
    both = priority_loads(_levels(40, 100))
    assert both.loads == (56, 44)
    assert both.panic == (False, False)
    alone = priority_loads(_levels(40))
    assert alone.loads == (100,)
    assert alone.panic == (True,)


def test_panic_per_level_and_total_panic() -> None:
    # P0 1/10 healthy (panic), P1 6/10 (not): healths 14 + 84 = 98, P0 gets the remainder.
    mixed = priority_loads([(1, 10), (6, 10)])
    assert mixed.panic == (True, False)
    assert mixed.loads == (15, 85)
    assert not mixed.total_panic
    # Every level in panic: load by host count (10 vs 30 hosts).
    total = priority_loads([(0, 10), (9, 30)])
    assert total.total_panic
    assert total.loads == (25, 75)
    assert priority_loads([(0, 10), (0, 30)]).loads == (25, 75)
    assert priority_loads([]).loads == ()


@pytest.mark.parametrize(
    ("healthy", "total", "weight", "expected"),
    [(100, 100, 1, 1.0), (72, 100, 2, 2.0), (50, 100, 1, 0.7), (0, 100, 5, 0.0), (3, 3, 0, 0.0)],
)
def test_locality_effective_weight(healthy: int, total: int, weight: int, expected: float) -> None:
    assert locality_effective_weight(weight, healthy, total) == pytest.approx(expected)


# -- the factory -------------------------------------------------------------------------------


def test_common_case_keeps_the_plain_policy() -> None:
    assert isinstance(make_lb(LbPolicy.ROUND_ROBIN, make_hosts(1, 1)), RoundRobinLoadBalancer)
    hosts = placed(0, "r", "a", 1) + placed(1, "r", "b", 1)
    assert isinstance(make_lb(LbPolicy.ROUND_ROBIN, hosts), PriorityLoadBalancer)
    weighted = make_lb(LbPolicy.ROUND_ROBIN, make_hosts(1, 1), locality_weighted=True)
    assert isinstance(weighted, PriorityLoadBalancer)


# -- failover through the balancers ------------------------------------------------------------


def _keys(n: int) -> list[int | None]:
    return [k * 0x9E3779B97F4A7C15 % (1 << 64) for k in range(n)]


def _by_level(lb: LoadBalancer, n: int, policy: LbPolicy) -> dict[int, int]:
    counts = tally(lb, n, _keys(n) if policy in HASHED else None)
    level = {h.key: h.priority for h in lb.hosts}
    out: dict[int, int] = {}
    for key, count in counts.items():
        out[level[key]] = out.get(level[key], 0) + count
    return out


def _down(*hosts: Host, healthy: bool = False) -> None:
    for host in hosts:
        host.healthy = healthy


@pytest.mark.parametrize("policy", ALL)
def test_failover_spills_level_by_level_and_comes_back(policy: LbPolicy) -> None:
    """Same zone (P0), same region (P1), other region (P2), two hosts each, as the control
    plane ranks them for a proxy in region r1 zone a."""
    p0 = placed(0, "r1", "a", 1, 1)
    p1 = placed(1, "r1", "b", 1, 1)
    p2 = placed(2, "r2", "c", 1, 1)
    lb = make_lb(policy, p0 + p1 + p2, seed=21, maglev_table_size=10007)
    assert _by_level(lb, 3000, policy) == {0: 3000}

    _down(p0[0])  # P0 half healthy: health 70 -> 70 % stays, 30 % spills to P1
    lb.update()
    assert isinstance(lb, PriorityLoadBalancer)
    assert lb.loads == (70, 30, 0)
    counts = tally(lb, N, _keys(N) if policy in HASHED else None)
    assert p0[0].key not in counts  # not in panic: P1 covers the rest
    p0_share = counts[p0[1].key]
    if policy in HASHED:  # the hash picks the level: h % 100 < 70, exact for these keys
        assert p0_share == sum(1 for k in _keys(N) if k is not None and k % 100 < 70)
    else:
        assert_binomial(p0_share, N, 0.70, "P0 share")

    _down(p0[1])
    lb.update()
    assert _by_level(lb, 3000, policy) == {1: 3000}

    _down(*p1)
    lb.update()
    assert _by_level(lb, 3000, policy) == {2: 3000}

    _down(p2[0])  # everything else down, P2 at 50 %: not in panic, its healthy host only
    lb.update()
    assert lb.loads == (0, 0, 100)
    assert set(tally(lb, 500, _keys(500) if policy in HASHED else None)) == {p2[1].key}

    _down(*p0, healthy=True)
    lb.update()
    assert _by_level(lb, 3000, policy) == {0: 3000}


@pytest.mark.parametrize("policy", ALL)
def test_total_panic_spreads_by_host_count(policy: LbPolicy) -> None:
    p0 = placed(0, "r", "a", 1)
    p1 = placed(1, "r", "b", 1, 1, 1)
    _down(*p0, *p1)
    lb = make_lb(policy, p0 + p1, seed=5, maglev_table_size=10007)
    assert lb.in_panic
    assert isinstance(lb, PriorityLoadBalancer)
    assert lb.loads == (25, 75)
    by_level = _by_level(lb, N, policy)
    if policy in HASHED:
        assert by_level[0] == sum(1 for k in _keys(N) if k is not None and k % 100 < 25)
    else:
        assert_binomial(by_level[0], N, 0.25, "P0 in total panic")
    assert len(set(tally(lb, 2000, _keys(2000)))) == 4  # unhealthy hosts used: panic


def test_hash_keys_stay_on_their_level_and_host() -> None:
    """With P0 partly down, a key's level is ``hash % 100`` against the loads, and its host
    within the level is the ring's: stable across calls and rebuilds."""
    p0 = placed(0, "r", "a", 1, 1, 1, 1)
    p1 = placed(1, "r", "b", 1, 1)
    _down(p0[0], p0[1])
    lb = make_lb(LbPolicy.MAGLEV, p0 + p1, maglev_table_size=10007)
    again = make_lb(LbPolicy.MAGLEV, list(reversed(p0 + p1)), seed=7, maglev_table_size=10007)
    for key in _keys(2000):
        assert key is not None
        host = lb.choose(key)
        assert host is not None
        assert host.healthy
        assert host.priority == (0 if key % 100 < 70 else 1)
        assert again.choose(key) is host


# -- locality-weighted balancing ---------------------------------------------------------------


def _by_zone(lb: LoadBalancer, n: int, keys: list[int | None] | None = None) -> dict[str, int]:
    counts = tally(lb, n, keys)
    zone = {h.key: h.locality.zone for h in lb.hosts}
    out: dict[str, int] = {}
    for key, count in counts.items():
        out[zone[key]] = out.get(zone[key], 0) + count
    return out


@pytest.mark.parametrize(
    ("x_healthy", "x_share"),
    # Envoy's docs table (locality_weight): X weight 1, Y weight 2, Y fully available.
    [(100, 1 / 3), (70, 0.98 / 2.98), (50, 0.7 / 2.7), (25, 0.35 / 2.35), (0, 0.0)],
)
@pytest.mark.parametrize("policy", [LbPolicy.ROUND_ROBIN, LbPolicy.RANDOM, LbPolicy.LEAST_REQUEST])
def test_locality_weights_with_health(policy: LbPolicy, x_healthy: int, x_share: float) -> None:
    """The locality schedule is deterministic (EDF): X's share is exact to a pick or two, and
    only X's healthy hosts serve it."""
    x = placed(0, "r", "x", *([1] * 100), locality_weight=1)
    y = placed(0, "r", "y", *([1] * 100), locality_weight=2, net=1)
    _down(*x[x_healthy:])
    lb = make_lb(policy, x + y, seed=3, locality_weighted=True)
    counts = tally(lb, N)
    got = sum(c for k, c in counts.items() if k in {h.key for h in x})
    assert abs(got - N * x_share) <= 2, (got, N * x_share)
    assert not any(h.key in counts for h in x[x_healthy:])


def test_locality_without_weight_gets_nothing_unless_none_has_one() -> None:
    a = placed(0, "r", "a", 1, 1, locality_weight=3)
    b = placed(0, "r", "b", 1, 1, net=1)  # no load_balancing_weight
    lb = make_lb(LbPolicy.ROUND_ROBIN, a + b, locality_weighted=True)
    assert _by_zone(lb, 1000) == {"a": 1000}
    neither = placed(0, "r", "a", 1, 1) + placed(0, "r", "b", 1, 1, net=1)
    lb = make_lb(LbPolicy.ROUND_ROBIN, neither, locality_weighted=True)
    assert _by_zone(lb, 1000) == {"a": 500, "b": 500}  # all healthy hosts, as Envoy falls back


def test_locality_weights_ignored_without_locality_weighted_lb() -> None:
    a = placed(0, "r", "a", 1, locality_weight=9)
    b = placed(0, "r", "b", 1, 1, 1, locality_weight=1, net=1)
    assert _by_zone(make_lb(LbPolicy.ROUND_ROBIN, a + b), 4000) == {"a": 1000, "b": 3000}


def _structure_share(policy: LbPolicy, hosts: list[Host], of: set[str]) -> float:
    """Exact share of the hash space the hosts ``of`` own in the structure over ``hosts``."""
    shares = hash_space_share(policy, hosts, host_weights(hosts, locality_weighted=True))
    return sum(shares.get(key, 0.0) for key in of)


@pytest.mark.parametrize("policy", HASHED)
def test_hashing_folds_locality_weights_into_the_structure(policy: LbPolicy) -> None:
    """Ring and table carry the locality shares (1:3 here, though locality a has three hosts
    and b one), and random keys follow them: a binomial count around the exact share. A host
    going down leaves its locality's share on the locality's other hosts."""
    a = placed(0, "r", "a", 1, 1, 1, locality_weight=1)
    b = placed(0, "r", "b", 1, locality_weight=3, net=1)
    in_a = {h.key for h in a}
    share = _structure_share(policy, a + b, in_a)
    tolerance = 0.01 if policy is LbPolicy.MAGLEV else 4 * (0.25 / 1024) ** 0.5
    assert abs(share - 0.25) < tolerance
    lb = make_lb(policy, a + b, locality_weighted=True, maglev_table_size=65537)
    rng = random.Random(17)
    keys: list[int | None] = [rng.getrandbits(64) for _ in range(N)]
    assert_binomial(_by_zone(lb, N, keys)["a"], N, share, "locality a")
    a[0].healthy = False
    lb.update()
    share = _structure_share(policy, a[1:] + b, in_a)
    assert abs(share - 0.25) < tolerance
    counts = tally(lb, N, keys)
    assert a[0].key not in counts
    assert_binomial(sum(counts[k] for k in in_a), N, share, "locality a, one host down")
