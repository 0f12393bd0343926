"""Weighted splits and mirror fractions hold within exact binomial bounds at 20,000 requests.

Each request draws one random 64-bit value (as ``ActiveRequest`` does); the weighted pick
and every mirror decision are functions of it. Counts are checked with
``assert_binomial`` (false-failure probability at most 1e-6 per assertion, any seed).
"""

from __future__ import annotations

import random

import pytest

from aeraki.proxy.config import MirrorPolicy, RouteConfig, RouteTableConfig, WeightedCluster
from aeraki.proxy.routing import Route, RouteTable
from tests.proxy.upstream.lb.helpers import assert_binomial

N = 20_000


def _route(config: RouteConfig) -> Route:
    return RouteTable.compile(RouteTableConfig(routes=(config,))).routes[0]


def _draws(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) for _ in range(N)]


@pytest.mark.parametrize("weights", [(20, 80), (1, 2, 7), (1, 999), (33, 33, 34)])
def test_weighted_split(weights: tuple[int, ...]) -> None:
    route = _route(
        RouteConfig(
            weighted_clusters=tuple(WeightedCluster(f"c{i}", w) for i, w in enumerate(weights))
        )
    )
    counts = dict.fromkeys(route.weighted_names, 0)
    for value in _draws(1):
        counts[route.cluster_for(value)] += 1
    for i, w in enumerate(weights):
        assert_binomial(counts[f"c{i}"], N, w / sum(weights), f"c{i}")


@pytest.mark.parametrize(
    ("numerator", "denominator"), [(30, 100), (1, 100), (2500, 10_000), (100_000, 1_000_000)]
)
def test_mirror_fraction(numerator: int, denominator: int) -> None:
    route = _route(
        RouteConfig(cluster="c", mirror_policies=(MirrorPolicy("m", numerator, denominator),))
    )
    hits = sum(1 for value in _draws(2) if route.mirror_clusters(value))
    assert_binomial(hits, N, numerator / denominator, "mirrored")


def test_mirror_decision_is_independent_of_the_weighted_pick() -> None:
    """Both come from the request's one random value; the mirror draw is remixed, so mirroring
    30 % of a 50/50 split mirrors 15 % of each side, not all of one side."""
    route = _route(
        RouteConfig(
            weighted_clusters=(WeightedCluster("a", 50), WeightedCluster("b", 50)),
            mirror_policies=(MirrorPolicy("m", 30, 100), MirrorPolicy("n", 50, 100)),
        )
    )
    joint = {(c, m, n): 0 for c in "ab" for m in (False, True) for n in (False, True)}
    for value in _draws(3):
        mirrors = route.mirror_clusters(value)
        joint[(route.cluster_for(value), "m" in mirrors, "n" in mirrors)] += 1
    for (_cluster, m, n), count in joint.items():
        p = 0.5 * (0.3 if m else 0.7) * 0.5
        assert_binomial(count, N, p, f"{_cluster} m={m} n={n}")
