"""ROUND_ROBIN, RANDOM, LEAST_REQUEST, health, panic mode and the factory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aeraki.errors import ConfigError
from aeraki.proxy.config import LbPolicy
from aeraki.proxy.upstream.lb import LoadBalancer, RoundRobinLoadBalancer

from .helpers import make_hosts, make_lb, tally

ALL = list(LbPolicy)


def test_round_robin_equal_weights_rotates() -> None:
    hosts = make_hosts(1, 1, 1)
    lb = make_lb(LbPolicy.ROUND_ROBIN, hosts)
    assert [lb.choose(None) for _ in range(7)] == [*hosts, *hosts, hosts[0]]


def test_round_robin_weighted_exact_edf_sequence() -> None:
    a, b = make_hosts(2, 1)
    lb = make_lb(LbPolicy.ROUND_ROBIN, [a, b])
    assert [lb.choose(None) for _ in range(6)] == [a, b, a, a, b, a]
    a, b, c = make_hosts(3, 2, 1)
    lb = make_lb(LbPolicy.ROUND_ROBIN, [a, b, c])
    seq = [lb.choose(None) for _ in range(6)]
    assert seq == [a, b, a, c, b, a]  # ties at t=1.0 go to the earliest insertion
    counts = tally(lb, 600)
    assert counts == {a.key: 300, b.key: 200, c.key: 100}


def test_random_distribution_follows_weights() -> None:
    hosts = make_hosts(1, 2, 7)
    counts = tally(make_lb(LbPolicy.RANDOM, hosts, seed=11), 50_000)
    for host in hosts:
        assert abs(counts[host.key] / 50_000 - host.weight / 10) < 0.02
    equal = make_hosts(1, 1, 1, 1)
    counts = tally(make_lb(LbPolicy.RANDOM, equal, seed=12), 40_000)
    assert all(abs(c / 40_000 - 0.25) < 0.02 for c in counts.values())


def test_least_request_prefers_idle_hosts() -> None:
    hosts = make_hosts(1, 1, 1)
    hosts[0].active_requests = 5
    hosts[1].active_requests = 5
    counts = tally(make_lb(LbPolicy.LEAST_REQUEST, hosts, seed=3), 3000)
    # P2C picks the idle host whenever it is sampled: 1 - (2/3)^2 = 5/9 of picks.
    assert abs(counts[hosts[2].key] / 3000 - 5 / 9) < 0.03
    lb = make_lb(LbPolicy.LEAST_REQUEST, hosts, seed=3, choice_count=10)
    assert tally(lb, 1000)[hosts[2].key] > 970


def test_least_request_weighted_uses_weight_over_load() -> None:
    heavy, light = make_hosts(4, 1)
    lb = make_lb(LbPolicy.LEAST_REQUEST, [heavy, light], seed=4)
    heavy.active_requests = 1  # 4/2 > 1/1: heavy wins unless both samples are light (1/4)
    assert abs(tally(lb, 4000)[light.key] / 4000 - 0.25) < 0.03
    heavy.active_requests = 9  # 4/10 < 1/1: light wins whenever sampled
    counts = tally(lb, 4000)
    assert abs(counts[light.key] / 4000 - 0.75) < 0.03


@pytest.mark.parametrize("policy", ALL)
def test_unhealthy_host_is_skipped(policy: LbPolicy) -> None:
    hosts = make_hosts(1, 1, 1)
    lb = make_lb(policy, hosts)
    hosts[1].healthy = False
    lb.update()
    assert not lb.in_panic
    keys: list[int | None] = [k * 0x9E3779B97F4A7C15 % (1 << 64) for k in range(3000)]
    counts = tally(lb, 3000, keys)
    assert hosts[1].key not in counts
    assert set(counts) == {hosts[0].key, hosts[2].key}


@pytest.mark.parametrize("policy", ALL)
def test_panic_mode_uses_all_hosts(policy: LbPolicy) -> None:
    hosts = make_hosts(1, 1, 1)
    for h in hosts[:2]:
        h.healthy = False
    lb = make_lb(policy, hosts)
    assert lb.in_panic
    keys: list[int | None] = [k * 0x9E3779B97F4A7C15 % (1 << 64) for k in range(3000)]
    assert set(tally(lb, 3000, keys)) == {h.key for h in hosts}
    for h in hosts:
        h.healthy = False
    lb.update()
    assert lb.choose(7) is not None  # all unhealthy: still panic, never None


@pytest.mark.parametrize("policy", ALL)
def test_no_hosts_returns_none_and_update_adds_hosts(policy: LbPolicy) -> None:
    lb = make_lb(policy, [])
    assert lb.choose(None) is None
    assert lb.choose(42) is None
    hosts = make_hosts(1, 2)
    lb.update(hosts)
    assert lb.hosts == tuple(hosts)
    assert lb.choose(42) in hosts


def test_update_without_change_keeps_state() -> None:
    hosts = make_hosts(1, 1, 1)
    lb = make_lb(LbPolicy.ROUND_ROBIN, hosts)
    assert isinstance(lb, RoundRobinLoadBalancer)
    assert lb.choose(None) is hosts[0]
    lb.update()  # same targets: no rebuild, rotation continues
    assert lb.choose(None) is hosts[1]
    hosts[0].healthy = False
    lb.update()  # health changed: rebuilt over the healthy hosts
    assert [lb.choose(None) for _ in range(2)] == [hosts[1], hosts[2]]


@pytest.mark.parametrize(
    ("policy", "config", "path"),
    [
        (LbPolicy.MAGLEV, {"maglev_table_size": 65536}, "maglev_lb_config.table_size"),
        (LbPolicy.MAGLEV, {"maglev_table_size": 1}, "maglev_lb_config.table_size"),
        (LbPolicy.RING_HASH, {"ring_min_size": 10, "ring_max_size": 5}, "ring_hash_lb_config"),
        (LbPolicy.RING_HASH, {"ring_min_size": 0}, "ring_hash_lb_config"),
        (
            LbPolicy.LEAST_REQUEST,
            {"choice_count": 1},
            "least_request_lb_config.choice_count",
        ),
    ],
)
def test_bad_lb_config(policy: LbPolicy, config: dict[str, int], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_lb(policy, make_hosts(1), **config)
    assert info.value.path == path


@pytest.mark.parametrize("policy", ALL)
def test_factory_satisfies_protocol(policy: LbPolicy) -> None:
    assert isinstance(make_lb(policy, make_hosts(1)), LoadBalancer)


@given(
    policy=st.sampled_from(ALL),
    weights=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    health=st.lists(st.booleans(), min_size=8, max_size=8),
    keys=st.lists(st.none() | st.integers(0, (1 << 64) - 1), min_size=1, max_size=20),
)
def test_choose_always_returns_a_target(
    policy: LbPolicy, weights: list[int], health: list[bool], keys: list[int | None]
) -> None:
    hosts = make_hosts(*weights)
    for host, healthy in zip(hosts, health, strict=False):
        host.healthy = healthy
    lb = make_lb(policy, hosts, maglev_table_size=251)
    healthy_hosts = [h for h in hosts if h.healthy]
    allowed = hosts if 2 * len(healthy_hosts) < len(hosts) else healthy_hosts
    for key in keys:
        assert lb.choose(key) in allowed
