"""Route table compilation and matching (reference §20.1, §20.3, §20.4; §33 items 17, 18, 26)."""

from __future__ import annotations

import random

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from aeraki.codec.api import Metadata
from aeraki.errors import ConfigError
from aeraki.proxy.config import (
    HeaderMatch,
    MatchKind,
    MirrorPolicy,
    RouteConfig,
    RouteTableConfig,
    WeightedCluster,
)
from aeraki.proxy.routing import RouteTable, compile_matcher

E, P, S, C, R, PR, RG = (
    MatchKind.EXACT,
    MatchKind.PREFIX,
    MatchKind.SUFFIX,
    MatchKind.CONTAINS,
    MatchKind.REGEX,
    MatchKind.PRESENT,
    MatchKind.RANGE,
)


def md(**strings: str) -> Metadata:
    m = Metadata()
    for k, v in strings.items():
        m.put_string(k, v)
    return m


def hm(kind: MatchKind, value: str = "", **kw: object) -> HeaderMatch:
    return HeaderMatch(name="Key", kind=kind, value=value, **kw)  # type: ignore[arg-type]


# (matcher, value or None for missing, expected)
CASES: list[tuple[HeaderMatch, str | None, bool]] = [
    # exact
    (hm(E, "a"), "a", True),
    (hm(E, "a"), "b", False),
    (hm(E, "a"), "A", False),
    (hm(E, "a", ignore_case=True), "A", True),
    (hm(E, ""), "anything", True),  # empty exact_match matches any present value
    (hm(E, ""), "", True),
    (hm(E, "a", invert=True), "b", True),
    (hm(E, "a", invert=True), "a", False),
    # prefix / suffix / contains
    (hm(P, "ab"), "abc", True),
    (hm(P, "ab"), "cab", False),
    (hm(P, "AB", ignore_case=True), "abc", True),
    (hm(S, "bc"), "abc", True),
    (hm(S, "bc"), "bca", False),
    (hm(S, "BC", ignore_case=True), "abc", True),
    (hm(C, "b"), "abc", True),
    (hm(C, "d"), "abc", False),
    (hm(C, "B", ignore_case=True), "abc", True),
    (hm(C, "d", invert=True), "abc", True),
    # regex: full match, ignore_case has no effect
    (hm(R, "a.c"), "abc", True),
    (hm(R, "a.c"), "abcd", False),
    (hm(R, "b"), "abc", False),
    (hm(R, "a.c", ignore_case=True), "ABC", False),
    (hm(R, "a.c", invert=True), "abcd", True),
    # range [start, end) on integers
    (hm(RG, range_start=1, range_end=10), "1", True),
    (hm(RG, range_start=1, range_end=10), "9", True),
    (hm(RG, range_start=1, range_end=10), "10", False),
    (hm(RG, range_start=1, range_end=10), "0", False),
    (hm(RG, range_start=-5, range_end=0), "-3", True),
    (hm(RG, range_start=1, range_end=10), " 5 ", True),  # absl::SimpleAtoi trims whitespace
    (hm(RG, range_start=1, range_end=10), "5.0", False),
    (hm(RG, range_start=1, range_end=10), "five", False),
    (hm(RG, range_start=1, range_end=10), "", False),
    (hm(RG, range_start=1, range_end=10), "1_0", False),
    (hm(RG, range_start=0, range_end=1 << 62), str(1 << 64), False),  # int64 overflow
    (hm(RG, range_start=1, range_end=10, invert=True), "five", True),
    # present
    (hm(PR, present=True), "x", True),
    (hm(PR, present=True), "", True),
    (hm(PR, present=False), "x", False),
    (hm(PR, present=True, invert=True), "x", False),
    (hm(PR, present=False, invert=True), "x", True),
    # missing key, treat_missing_as_empty false: only presence matchers can succeed
    (hm(PR, present=True), None, False),
    (hm(PR, present=False), None, True),
    (hm(PR, present=True, invert=True), None, True),
    (hm(PR, present=False, invert=True), None, False),
    (hm(E, "a"), None, False),
    (hm(E, "a", invert=True), None, False),
    (hm(E, ""), None, False),
    (hm(E, "", invert=True), None, False),
    (hm(P, "a", invert=True), None, False),
    (hm(R, ".*"), None, False),
    (hm(R, ".*", invert=True), None, False),
    (hm(RG, range_start=0, range_end=9, invert=True), None, False),
    # missing key treated as ""
    (hm(E, "a", treat_missing_as_empty=True), None, False),
    (hm(E, "a", treat_missing_as_empty=True, invert=True), None, True),
    (hm(E, "", treat_missing_as_empty=True), None, True),
    (hm(R, ".*", treat_missing_as_empty=True), None, True),
    (hm(R, ".+", treat_missing_as_empty=True), None, False),
    (hm(P, "", treat_missing_as_empty=True), None, True),
    (hm(PR, present=True, treat_missing_as_empty=True), None, True),
    (hm(PR, present=False, treat_missing_as_empty=True), None, False),
    (hm(PR, present=True, treat_missing_as_empty=True, invert=True), None, False),
    (hm(RG, range_start=0, range_end=9, treat_missing_as_empty=True), None, False),
]


@pytest.mark.parametrize(("spec", "value", "expected"), CASES)
def test_header_matcher_semantics(spec: HeaderMatch, value: str | None, expected: bool) -> None:
    m = compile_matcher(spec, "m")
    strings = {} if value is None else {"key": value}
    assert m.test(strings) is expected
    assert m.explain(strings).startswith("ok" if expected else "FAIL")


def test_matcher_name_is_case_insensitive() -> None:
    table = RouteTable.compile(
        RouteTableConfig(
            routes=(
                RouteConfig(
                    name="r", cluster="c", match=(HeaderMatch(name="X-Svc", kind=E, value="a"),)
                ),
            )
        )
    )
    assert table.match(md(**{"x-SVC": "a"})) is not None
    assert table.match(md(**{"X-Svc": "b"})) is None


def _table(*routes: RouteConfig) -> RouteTable:
    return RouteTable.compile(RouteTableConfig(name="t", routes=routes))


def test_first_match_wins_and_empty_match_matches_all() -> None:
    table = _table(
        RouteConfig(name="a", cluster="ca", match=(HeaderMatch(name="m", kind=E, value="x"),)),
        RouteConfig(
            name="b",
            cluster="cb",
            match=(
                HeaderMatch(name="m", kind=P, value="x"),
                HeaderMatch(name="n", kind=E, value="1"),
            ),
        ),
        RouteConfig(name="all", cluster="cc"),
        RouteConfig(name="never", cluster="cd"),
    )
    assert table.match(md(m="x", n="1")).name == "a"  # type: ignore[union-attr]
    assert table.match(md(m="xy", n="1")).name == "b"  # type: ignore[union-attr]
    assert table.match(md(m="xy", n="2")).name == "all"  # type: ignore[union-attr]
    assert table.match(md()).name == "all"  # type: ignore[union-attr]


def test_no_route_matches() -> None:
    table = _table(RouteConfig(cluster="c", match=(HeaderMatch(name="m", kind=E, value="x"),)))
    assert table.match(md(m="y")) is None
    assert _table().match(md()) is None
    assert table.explain(md(m="y"))[-1] == "no route matched: RouteNotFound"


def test_explain_lists_each_matcher() -> None:
    table = _table(
        RouteConfig(
            name="a",
            cluster="ca",
            match=(
                HeaderMatch(name="m", kind=E, value="x"),
                HeaderMatch(name="n", kind=PR),
            ),
        ),
        RouteConfig(name="b", cluster="cb"),
    )
    lines = table.explain(md(m="x"))
    assert lines[0].startswith("miss  route a -> ca")
    assert lines[1].strip().startswith("ok")
    assert "n present=True: absent" in lines[2]
    assert "FAIL" in lines[2]
    assert lines[3].startswith("MATCH route b -> cb")
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("route", "path"),
    [
        (
            RouteConfig(
                cluster="c",
                match=(
                    HeaderMatch(name="a", kind=E, value="x"),
                    HeaderMatch(name="b", kind=R, value="("),
                ),
            ),
            "routes[1].match.metadata[1]",
        ),
        (
            RouteConfig(cluster="c", match=(HeaderMatch(name="", kind=E),)),
            "routes[1].match.metadata[0].name",
        ),
        (
            RouteConfig(
                cluster="c", match=(HeaderMatch(name="a", kind=RG, range_start=5, range_end=5),)
            ),
            "routes[1].match.metadata[0].range_match",
        ),
        (RouteConfig(), "routes[1].route"),
        (
            RouteConfig(cluster="c", weighted_clusters=(WeightedCluster("a", 1),)),
            "routes[1].route",
        ),
        (
            RouteConfig(weighted_clusters=(WeightedCluster("a", 0), WeightedCluster("b", 0))),
            "routes[1].route.weighted_clusters",
        ),
        (
            RouteConfig(weighted_clusters=(WeightedCluster("a", 1), WeightedCluster("b", -1))),
            "routes[1].route.weighted_clusters.clusters[1].weight",
        ),
        (
            RouteConfig(cluster="c", mirror_policies=(MirrorPolicy("m", 1, 0),)),
            "routes[1].route.request_mirror_policies[0].runtime_fraction",
        ),
        (
            RouteConfig(cluster="c", mirror_policies=(MirrorPolicy(""),)),
            "routes[1].route.request_mirror_policies[0].cluster",
        ),
        (
            RouteConfig(cluster="c", request_mutation=(("", "v"),)),
            "routes[1].request_mutation[0].key",
        ),
        (RouteConfig(cluster="c", timeout=0.0), "routes[1].timeout"),
    ],
)
def test_config_errors_carry_path(route: RouteConfig, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        _table(RouteConfig(cluster="ok"), route)
    assert info.value.path == path


def test_weighted_split_within_two_percent() -> None:
    weights = {"a": 10, "b": 30, "c": 60, "zero": 0}
    table = _table(
        RouteConfig(weighted_clusters=tuple(WeightedCluster(n, w) for n, w in weights.items()))
    )
    route = table.routes[0]
    rng = random.Random(7)
    n = 100_000
    counts = dict.fromkeys(weights, 0)
    for _ in range(n):
        counts[route.cluster_for(rng.getrandbits(64))] += 1
    for name, w in weights.items():
        assert abs(counts[name] / n - w / 100) < 0.02
    assert counts["zero"] == 0


def test_weighted_intervals_are_exact() -> None:
    route = _table(
        RouteConfig(weighted_clusters=(WeightedCluster("a", 2), WeightedCluster("b", 3)))
    ).routes[0]
    assert [route.cluster_for(v) for v in range(6)] == ["a", "a", "b", "b", "b", "a"]
    assert _table(RouteConfig(cluster="one")).routes[0].cluster_for(12345) == "one"


@given(
    weights=st.lists(st.integers(0, 1000), min_size=1, max_size=8).filter(lambda w: sum(w) > 0),
    value=st.integers(0, (1 << 64) - 1),
)
def test_weighted_pick_is_a_configured_positive_weight_cluster(
    weights: list[int], value: int
) -> None:
    clusters = tuple(WeightedCluster(f"c{i}", w) for i, w in enumerate(weights))
    route = _table(RouteConfig(weighted_clusters=clusters)).routes[0]
    name = route.cluster_for(value)
    assert weights[int(name[1:])] > 0


def _hash_route(*keys: str) -> RouteTable:
    return _table(RouteConfig(cluster="c", hash_policy=keys))


def test_hash_key_algorithm_and_order_independence() -> None:
    m = md(a="x", b="y")
    h1 = _hash_route("a", "B").routes[0].hash_key(m)
    h2 = _hash_route("b", "a").routes[0].hash_key(m)
    expected = xxhash.xxh64_intdigest(b"y", xxhash.xxh64_intdigest(b"x", 0))
    assert h1 == h2 == expected
    assert _hash_route("a").routes[0].hash_key(m) == xxhash.xxh64_intdigest(b"x", 0)


def test_hash_key_missing_keys_hash_as_empty() -> None:
    route = _hash_route("a", "b").routes[0]
    assert route.hash_key(md()) == route.hash_key(md(a="", b=""))
    assert route.hash_key(md(a="x")) == route.hash_key(md(b="x"))
    assert route.hash_key(md()) is not None
    assert _table(RouteConfig(cluster="c")).routes[0].hash_key(md(a="x")) is None


@pytest.mark.parametrize(("numerator", "expected"), [(0, 0.0), (50, 0.5), (100, 1.0)])
def test_mirror_fraction(numerator: int, expected: float) -> None:
    route = _table(
        RouteConfig(cluster="c", mirror_policies=(MirrorPolicy("m", numerator, 100),))
    ).routes[0]
    rng = random.Random(3)
    n = 20_000
    hits = sum(bool(route.mirror_clusters(rng.getrandbits(64))) for _ in range(n))
    assert abs(hits / n - expected) < 0.02


def test_mirror_default_is_full_and_policies_are_independent() -> None:
    route = _table(
        RouteConfig(
            cluster="c",
            mirror_policies=(MirrorPolicy("all"), MirrorPolicy("x", 1, 2), MirrorPolicy("y", 1, 2)),
        )
    ).routes[0]
    rng = random.Random(5)
    n = 20_000
    both = only_x = only_y = 0
    for _ in range(n):
        got = route.mirror_clusters(rng.getrandbits(64))
        assert got[0] == "all"
        both += "x" in got and "y" in got
        only_x += "x" in got and "y" not in got
        only_y += "y" in got and "x" not in got
    for count in (both, only_x, only_y):
        assert abs(count / n - 0.25) < 0.02


def test_route_actions() -> None:
    route = _table(
        RouteConfig(
            name="r",
            cluster="c",
            request_mutation=(("K", "v"),),
            response_mutation=(("r", "w"),),
            timeout=1.5,
        )
    ).routes[0]
    assert route.request_mutation == {"K": "v"}
    assert route.response_mutation == {"r": "w"}
    assert route.timeout == 1.5
    assert route.mirror_clusters(1) == []


@given(
    strings=st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=6),
    data=st.data(),
)
def test_any_metadata_never_raises(strings: dict[str, str], data: st.DataObject) -> None:
    specs = [spec for spec, _, _ in CASES]
    chosen = data.draw(st.lists(st.sampled_from(specs), max_size=4))
    table = _table(
        RouteConfig(name="r", cluster="c", match=tuple(chosen), hash_policy=("key", "other")),
        RouteConfig(name="all", cluster="d"),
    )
    m = md()
    for k, v in strings.items():
        m.put_string(k, v)
    route = table.match(m)
    assert route is not None
    assert isinstance(route.hash_key(m), int | None)
    assert table.explain(m)
