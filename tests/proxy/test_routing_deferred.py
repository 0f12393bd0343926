"""Route tables and deferred properties (``Metadata.deferred``): a load happens only when a
matcher or hash policy reads a key that is absent, and matching is the same as on fully
loaded metadata."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aeraki.codec.api import Metadata
from aeraki.errors import CodecError
from aeraki.proxy.config import HeaderMatch, MatchKind, RouteConfig, RouteTableConfig
from aeraki.proxy.routing import RouteTable, compile_matcher

E, PR = MatchKind.EXACT, MatchKind.PRESENT


class Loader:
    """Deferred properties for tests: adds ``extra`` (never replacing a key), counts loads."""

    def __init__(self, extra: dict[str, str], *, fail: bool = False) -> None:
        self.extra = extra
        self.fail = fail
        self.loads = 0

    def load_strings(self, metadata: Metadata) -> None:
        self.loads += 1
        if self.fail:
            raise CodecError("malformed deferred bytes")
        for key, value in self.extra.items():
            metadata.strings.setdefault(key, value)


def deferred(eager: dict[str, str], extra: dict[str, str], *, fail: bool = False) -> Metadata:
    md = Metadata()
    md.strings.update(eager)
    md.deferred = Loader(extra, fail=fail)
    return md


def _table(*routes: RouteConfig) -> RouteTable:
    return RouteTable.compile(RouteTableConfig(name="t", routes=routes))


def _exact(**pairs: str) -> tuple[HeaderMatch, ...]:
    return tuple(HeaderMatch(name=k, kind=E, value=v) for k, v in pairs.items())


TABLE = _table(
    RouteConfig(name="canary", cluster="v2", match=_exact(interface="a.B", canary="yes")),
    RouteConfig(name="b", cluster="v1", match=_exact(interface="a.B")),
    RouteConfig(name="c", cluster="v3", match=_exact(interface="c.D", method="m")),
)


def test_no_load_when_every_key_is_present() -> None:
    table = _table(RouteConfig(name="c", cluster="v3", match=_exact(interface="c.D", method="m")))
    md = deferred({"interface": "c.D", "method": "m"}, {"interface": "x", "other": "1"})
    loader = md.deferred
    assert isinstance(loader, Loader)
    assert table.match(md).name == "c"  # type: ignore[union-attr]
    assert loader.loads == 0
    assert md.deferred is loader


def test_load_only_when_a_matcher_reading_an_absent_key_is_reached() -> None:
    md = deferred({"interface": "c.D", "method": "m"}, {"canary": "yes"})
    loader = md.deferred
    assert isinstance(loader, Loader)
    assert TABLE.match(md).name == "c"  # type: ignore[union-attr]
    assert loader.loads == 0  # "canary" is read only after interface == a.B, which failed
    md = deferred({"interface": "a.B", "method": "m"}, {"canary": "yes"})
    loader = md.deferred
    assert isinstance(loader, Loader)
    assert TABLE.match(md).name == "canary"  # type: ignore[union-attr]
    assert loader.loads == 1
    assert md.deferred is None


def test_a_failed_load_leaves_the_keys_absent() -> None:
    md = deferred({"interface": "a.B"}, {"canary": "yes"}, fail=True)
    assert TABLE.match(md).name == "b"  # type: ignore[union-attr]
    assert md.deferred is None


def test_absence_matchers_see_deferred_keys() -> None:
    table = _table(
        RouteConfig(
            name="no-tag",
            cluster="plain",
            match=(HeaderMatch(name="tag", kind=PR, present=False),),
        ),
        RouteConfig(name="rest", cluster="tagged"),
    )
    assert table.match(deferred({}, {"tag": "1"})).name == "rest"  # type: ignore[union-attr]
    assert table.match(deferred({}, {})).name == "no-tag"  # type: ignore[union-attr]


def test_hash_policy_loads_only_for_absent_keys() -> None:
    route = _table(RouteConfig(cluster="c", hash_policy=("user", "interface"))).routes[0]
    md = deferred({"interface": "a.B", "user": "u"}, {"user": "other"})
    full = Metadata()
    full.strings.update({"interface": "a.B", "user": "u"})
    assert route.hash_key(md) == route.hash_key(full)
    assert md.deferred is not None
    md = deferred({"interface": "a.B"}, {"user": "u"})
    assert route.hash_key(md) == route.hash_key(full)
    assert md.deferred is None


def test_compiled_matcher_matches_loads_for_filters() -> None:
    matcher = compile_matcher(HeaderMatch(name="Tenant", kind=E, value="blue"))
    md = deferred({"interface": "a.B"}, {"tenant": "blue"})
    assert not matcher.test(md.strings)  # the raw test sees only what is loaded
    assert matcher.matches(md)


def test_explain_shows_deferred_keys() -> None:
    md = deferred({"interface": "a.B"}, {"canary": "yes"})
    assert TABLE.explain(md)[0].startswith("MATCH route canary")


_KEYS = st.sampled_from(["interface", "method", "canary"])
_VALUES = st.sampled_from(["a.B", "c.D", "m", "yes", "no"])


@given(
    st.dictionaries(_KEYS, _VALUES),
    st.dictionaries(_KEYS, _VALUES),
)
def test_matching_is_the_same_as_on_loaded_metadata(
    eager: dict[str, str], extra: dict[str, str]
) -> None:
    md = deferred(eager, extra)
    loaded = deferred(eager, extra)
    loaded.load_strings()
    assert TABLE.match(md) is TABLE.match(loaded)


@pytest.mark.parametrize("fail", [False, True])
def test_load_strings_runs_the_loader_once(fail: bool) -> None:
    md = deferred({}, {"k": "v"}, fail=fail)
    loader = md.deferred
    assert isinstance(loader, Loader)
    md.load_strings()
    md.load_strings()
    assert loader.loads == 1
    assert md.get_string("k") == ("" if fail else "v")
