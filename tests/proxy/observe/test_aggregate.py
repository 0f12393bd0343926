"""Merging the admin pages of several workers: pages built with the real exposition in two
"workers", merged, and read back with the independent test parser (promtext)."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeraki.codec.api import ResponseStatus
from aeraki.errors import CodecError
from aeraki.metrics import MetricSpec
from aeraki.proxy.admin import cluster_status
from aeraki.proxy.observe.aggregate import merge_cluster_statuses, merge_prometheus, merge_stats
from aeraki.proxy.observe.metrics import REQUEST_METRICS, RequestMetrics
from aeraki.proxy.observe.prometheus import Exposition, label_text
from tests.proxy.filters.helpers import running
from tests.proxy.harness import cluster, listener, route
from tests.proxy.observe.promtext import Family, parse

if TYPE_CHECKING:
    from aeraki.proxy.request import ActiveRequest

_REQUESTS, _DURATION = REQUEST_METRICS
_LISTENER = ("0.0.0.0_20880", "dubbo", "dubbo")
_NAMES = ("listener", "stat_prefix", "protocol", "cluster", "method", "response_code")
_HNAMES = ("listener", "stat_prefix", "protocol", "cluster", "response_code")
_GAUGE = MetricSpec("aeraki_cluster_cx_active", "gauge", "Connections open.")
_ONLY_B = MetricSpec("aeraki_meta_protocol_ratelimit_over_limit_total", "counter", "Over.")
#: Client-controlled method names: every character the text format escapes or a naive
#: parser trips on.
_ODD_METHODS = ('say "hi"', "back\\slash", "two\nlines", "a {b} c", "x,y=z", 'q"} 5', "} ")


def _request(cluster: str, method: str, ok: bool, ms: float) -> ActiveRequest:
    status = ResponseStatus.OK if ok else ResponseStatus.ERROR
    fake = SimpleNamespace(
        response=SimpleNamespace(response_status=status),
        local_error=None,
        metadata=SimpleNamespace(strings={"method": method}),
        cluster_name=cluster,
        started=10.0,
        ended=10.0 + ms / 1000.0,
    )
    return cast("ActiveRequest", fake)


def _page(metrics: RequestMetrics, extra: Exposition | None = None) -> str:
    """A worker's page, written as ``prometheus.render`` writes a listener's metrics."""
    out = extra or Exposition()
    for key, count in metrics.requests.items():
        out.sample(_REQUESTS, label_text(_NAMES, (*_LISTENER, *key)), count)
    for hkey, histogram in metrics.durations.items():
        out.histogram(_DURATION, label_text(_HNAMES, (*_LISTENER, *hkey)), histogram)
    return out.text()


def _worker(requests: list[tuple[str, str, bool, float]]) -> RequestMetrics:
    metrics = RequestMetrics()
    for cluster_name, method, ok, ms in requests:
        metrics.on_request_done(_request(cluster_name, method, ok, ms))
    return metrics


def _two_workers() -> tuple[str, str]:
    a = _worker([
        ("a", "sayHello", True, 0.3),
        ("a", "sayHello", True, 7.0),
        ("a", "sayHello", False, 30.0),
        ("b", "bye", True, 2.0),
    ])  # fmt: skip
    b = _worker([
        ("a", "sayHello", True, 0.4),
        ("a", "sayHello", True, 2000.0),
        ("a", "onlyB", True, 1e9),
        ("c", "onlyB", True, 3.0),
    ])  # fmt: skip
    return _page(a), _page(b)


def _buckets(family: Family, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of one histogram child, in page order."""
    name = family.name + "_bucket"
    return [
        (float(ls["le"]), v)
        for n, ls, v in family.samples
        if n == name and all(ls.get(k) == x for k, x in labels.items())
    ]


def test_counters_are_summed_and_series_of_one_worker_kept() -> None:
    a, b = _two_workers()
    merged = parse(merge_prometheus([a, b]))[_REQUESTS.name]
    assert merged.kind == "counter"
    assert merged.value(cluster="a", method="sayHello", response_code="OK") == 2 + 2
    assert merged.value(cluster="a", method="sayHello", response_code="ERROR") == 1
    assert merged.value(cluster="b", method="bye") == 1  # worker A only
    assert merged.value(cluster="a", method="onlyB") == 1  # worker B only
    assert merged.value(cluster="c", method="onlyB") == 1
    assert len(merged.samples) == 5


def test_histograms_are_summed_bucket_by_bucket() -> None:
    a, b = _two_workers()
    pa, pb = parse(a)[_DURATION.name], parse(b)[_DURATION.name]
    merged = parse(merge_prometheus([a, b]))[_DURATION.name]
    assert merged.kind == "histogram"
    ok = {"cluster": "a", "response_code": "OK"}
    buckets = _buckets(merged, **ok)
    expected = [
        (le, n + m) for (le, n), (_, m) in zip(_buckets(pa, **ok), _buckets(pb, **ok), strict=True)
    ]
    assert buckets == expected
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)  # cumulative buckets stay monotonic
    assert buckets[0] == (0.5, 2)  # 0.3 ms in A, 0.4 ms in B
    assert buckets[-1] == (math.inf, 5)  # 1e9 ms is above every bound
    assert merged.value("_count", **ok) == buckets[-1][1] == 5
    assert merged.value("_sum", **ok) == pytest.approx(0.3 + 7.0 + 0.4 + 2000.0 + 1e9)
    # a child only one worker has is kept whole
    assert _buckets(merged, cluster="c") == _buckets(pb, cluster="c")
    assert merged.value("_count", cluster="b") == 1


def test_family_of_one_worker_comes_once_after_the_first_pages_families() -> None:
    a, _ = _two_workers()
    extra = Exposition()
    extra.sample(_GAUGE, 'cluster="a"', 2)
    extra.sample(_ONLY_B, 'listener="x"', 7)
    b = _page(_worker([("a", "sayHello", True, 1.0)]), extra)
    gauge_a = Exposition()
    gauge_a.sample(_GAUGE, 'cluster="a"', 3)
    gauge_a.sample(_GAUGE, 'cluster="z"', 1)
    text = merge_prometheus([a + gauge_a.text(), b])
    families = parse(text)
    assert list(families) == [_REQUESTS.name, _DURATION.name, _GAUGE.name, _ONLY_B.name]
    assert families[_GAUGE.name].kind == "gauge"
    assert families[_GAUGE.name].value(cluster="a") == 5  # gauges are summed too
    assert families[_GAUGE.name].value(cluster="z") == 1
    assert families[_ONLY_B.name].help == "Over."
    assert families[_ONLY_B.name].value(listener="x") == 7
    assert text.count(f"# TYPE {_REQUESTS.name} ") == 1
    assert families[_REQUESTS.name].value(cluster="a", response_code="OK") == 3


def test_one_page_merges_to_itself_byte_for_byte() -> None:
    a, b = _two_workers()
    assert merge_prometheus([a]) == a
    assert merge_prometheus([b]) == b
    assert merge_prometheus([]) == Exposition().text()


def test_escaped_label_values_are_parsed_and_kept() -> None:
    a = _worker([("a", m, True, 1.0) for m in _ODD_METHODS])
    b = _worker([("a", m, True, 1.0) for m in (*_ODD_METHODS, "b only {")])
    text = merge_prometheus([_page(a), _page(b)])
    merged = parse(text)[_REQUESTS.name]
    for method in _ODD_METHODS:
        assert merged.value(method=method) == 2, method
    assert merged.value(method="b only {") == 1
    assert len(merged.samples) == len(_ODD_METHODS) + 1
    assert 'method="two\\nlines"' in text  # written escaped, as read


def test_same_label_set_in_another_order_is_one_series_in_the_first_order() -> None:
    spec = MetricSpec("m_total", "counter", "M.")
    first, second = Exposition(), Exposition()
    first.sample(spec, label_text(("a", "b"), ('1"', "2")), 1)
    second.sample(spec, label_text(("b", "a"), ("2", '1"')), 2)
    second.sample(spec, label_text(("b", "a"), ("2", "other")), 4)
    third = 'm_total{b="2",a="other",} 8\n'  # a trailing comma is allowed
    fourth = 'm_total{a="other",b="2"} 16\n'  # no backslash: the other parser
    text = merge_prometheus([first.text(), second.text(), third, fourth])
    assert 'm_total{a="1\\"",b="2"} 3\n' in text
    assert 'm_total{b="2",a="other"} 28\n' in text
    assert parse(text)["m_total"].value(a='1"', b="2") == 3
    assert len(parse(text)["m_total"].samples) == 2


_LABEL_NAMES = ("a", "b", "le", "method")
#: A label value: any text, the escaped characters and separators made likely.
_LABEL_VALUES = st.text(alphabet=st.sampled_from('ab "\\\n{},= '), max_size=6)
_SERIES = st.tuples(
    st.sampled_from(("m_total", "n_total")),
    st.dictionaries(st.sampled_from(_LABEL_NAMES), _LABEL_VALUES, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(
    series=st.lists(_SERIES, min_size=1, max_size=8),
    pages=st.lists(
        st.lists(st.tuples(st.integers(0, 7), st.integers(0, 99), st.randoms()), max_size=8),
        min_size=1,
        max_size=4,
    ),
)
def test_any_label_values_in_any_order_sum_like_a_reference(
    series: list[tuple[str, dict[str, str]]], pages: list[list[tuple[int, int, Any]]]
) -> None:
    """Pages each holding some of ``series`` (labels shuffled per page) merge to the sums a
    reference computes from promtext's reading of each page."""
    texts: list[str] = []
    expected: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    for entries in pages:
        out, seen = Exposition(), set()
        for index, value, rnd in entries:
            name, labels = series[index % len(series)]
            identity = (name, frozenset(labels.items()))
            if identity in seen:
                continue  # one line per series in a page
            seen.add(identity)
            names = list(labels)
            rnd.shuffle(names)
            spec = MetricSpec(name, "counter", "C.")
            out.sample(spec, label_text(names, [labels[n] for n in names]), value)
            expected[identity] = expected.get(identity, 0) + value
        texts.append(out.text())
    text = merge_prometheus(texts)
    merged = parse(text) if text != "\n" else {}  # promtext wants one line at least
    got = {(n, frozenset(ls.items())): v for f in merged.values() for n, ls, v in f.samples}
    assert got == expected


def test_lines_are_split_at_newlines_only() -> None:
    page = 'm{a="x\u2028y\x1cz"} 1\n'
    assert merge_prometheus([page, page]) == 'm{a="x\u2028y\x1cz"} 2\n'


def test_ints_print_as_ints_and_other_values_as_the_format_spells_them() -> None:
    page = (
        "# TYPE g gauge\n"
        'g{k="int"} 2\ng{k="float"} 0.25\ng{k="inf"} +Inf\ng{k="nan"} NaN\ng{k="neg"} -Inf\n'
    )
    text = merge_prometheus([page, page])
    assert 'g{k="int"} 4\n' in text
    assert 'g{k="float"} 0.5\n' in text
    assert 'g{k="inf"} +Inf\n' in text
    assert 'g{k="nan"} NaN\n' in text
    assert 'g{k="neg"} -Inf\n' in text
    assert 'g{k="int"} 4\n' in merge_prometheus(['g{k="int"} 1\n', 'g{k="int",} 3\n'])


def test_timestamps_are_accepted_and_dropped() -> None:
    page = '# TYPE c counter\nc 1 1700000000000\nc{a="x"} 2 1700000000000\n'
    assert merge_prometheus([page, page]) == '# TYPE c counter\nc 2\nc{a="x"} 4\n'


def test_summary_quantiles_are_dropped_and_sum_count_summed() -> None:
    page = (
        "# HELP s S.\n# TYPE s summary\n"
        's{quantile="0.5"} 3\ns{quantile="0.9"} 9\ns_sum 20\ns_count 4\n'
    )
    text = merge_prometheus([page, page])
    assert text == "# HELP s S.\n# TYPE s summary\ns_sum 40\ns_count 8\n"


def test_untyped_samples_merge_under_their_own_name() -> None:
    page = "# comment\nup 1\n# TYPE c counter\nc 1\nloose 5\n"
    assert merge_prometheus([page, page]) == "up 2\n# TYPE c counter\nc 2\nloose 10\n"


_MALFORMED = {
    "unterminated labels": 'm{a="1" 5',
    "bad value": 'm{a="1"} five',
    "unterminated value": 'm{a="1} 5',
    "unquoted value": "m{a=1} 5",
    "missing comma": 'm{a="1"b="2"} 5',
    "double comma": 'm{a="1",,b="2"} 5',
    "label twice": 'm{a="1",a="2"} 5',
    "bad label name": 'm{1a="1"} 5',
    "bad escape": 'm{a="\\q"} 5',
    "escaped closing quote": 'm{a="x\\"} 5',
    "bad metric name": "1m 5",
    "no value": "m",
    "two spaces": "m  5",
    "bad timestamp": "m 5 soon",
    "underscore in value": "m 1_000",
    "unknown type": "# TYPE m bogus",
    "same series twice in one page": "m 1\nm 2",
    "same label set twice in one page": 'm{a="1",b="2"} 1\nm{b="2",a="1"} 1',
    "type differs from page 0": "# TYPE m gauge",
    "histogram sample without suffix": "# TYPE h histogram\nh 1",
}


@pytest.mark.parametrize("why", list(_MALFORMED))
def test_malformed_line_raises_codec_error_naming_page_and_line(why: str) -> None:
    bad = _MALFORMED[why]
    good = "# TYPE m counter\nm 1\n"
    number = 3 + bad.count("\n")  # the snippet's last line is the bad one
    with pytest.raises(CodecError, match=rf"prometheus page 1 line {number}: "):
        merge_prometheus([good, f"# comment\n# HELP m M.\n{bad}\n"])


def test_the_error_shows_the_line() -> None:
    with pytest.raises(CodecError, match=r"page 0 line 1: .*'m\{a=1\} 5'"):
        merge_prometheus(["m{a=1} 5\n"])


def test_stats_are_summed_by_name() -> None:
    merged = merge_stats(
        [{"cluster.a.upstream_rq": 3, "x": 1}, {"cluster.a.upstream_rq": 4, "y": 2}]
    )
    assert merged == {"cluster.a.upstream_rq": 7, "x": 1, "y": 2}
    assert list(merged) == ["cluster.a.upstream_rq", "x", "y"]
    assert merge_stats([]) == {}


@pytest.mark.parametrize("value", [1.5, "3", None, True])
def test_stats_value_that_is_not_an_int_raises(value: object) -> None:
    with pytest.raises(CodecError, match=r"stats page 1: x is"):
        merge_stats([{"x": 1}, cast("dict[str, int]", {"x": value})])


def _host(address: str, flags: str = "healthy", **load: int) -> dict[str, Any]:
    """A host as ``admin.host_status`` writes it."""
    return {
        "address": address,
        "weight": 1,
        "priority": 0,
        "region": "r",
        "zone": "z",
        "sub_zone": "",
        "health_flags": flags,
        "outlier_ejections": load.get("ejections", 0),
        "cx_active": load.get("cx", 0),
        "rq_active": load.get("rq", 0),
    }


def _cluster(name: str, hosts: list[dict[str, Any]], **stats: int) -> dict[str, Any]:
    """A cluster as ``admin.cluster_status`` writes it."""
    return {
        "name": name,
        "lb_policy": "ROUND_ROBIN",
        "in_panic": False,
        "circuit_breakers": {
            "max_connections": 1024,
            "max_pending_requests": 1024,
            "max_requests": 1024,
            "max_retries": 3,
        },
        "stats": stats,
        "host_statuses": hosts,
    }


def test_cluster_statuses_merge_clusters_by_name_and_hosts_by_address() -> None:
    a = {
        "cluster_statuses": [
            _cluster(
                "svc",
                [_host("10.0.0.1:1", cx=2, rq=1), _host("10.0.0.2:1", "/failed_outlier_check")],
                upstream_rq_total=10,
                upstream_cx_active=2,
            ),
            _cluster("only_a", [_host("10.0.9.9:1")], upstream_rq_total=1),
        ]
    }
    svc_b = _cluster(
        "svc",
        [
            _host("10.0.0.2:1", "/failed_active_hc", ejections=1, cx=1),
            _host("10.0.0.3:1", rq=4),  # a host only worker B knows (EDS update in flight)
            _host("10.0.0.1:1", cx=1, rq=1),
        ],
        upstream_rq_total=5,
        upstream_rq_pending_overflow=1,
    )
    svc_b["in_panic"] = True
    svc_b["lb_policy"] = "LEAST_REQUEST"  # only the first page's configuration is kept
    b = {"cluster_statuses": [_cluster("only_b", []), svc_b]}
    before = copy.deepcopy((a, b))

    merged = merge_cluster_statuses([a, b])

    assert (a, b) == before  # inputs untouched
    svc, only_a, only_b = merged["cluster_statuses"]
    assert (svc["name"], only_a["name"], only_b["name"]) == ("svc", "only_a", "only_b")
    assert svc["lb_policy"] == "ROUND_ROBIN"
    assert svc["in_panic"] is True
    assert svc["circuit_breakers"] == a["cluster_statuses"][0]["circuit_breakers"]
    assert svc["stats"] == {
        "upstream_rq_total": 15,
        "upstream_cx_active": 2,
        "upstream_rq_pending_overflow": 1,
    }
    hosts = {h["address"]: h for h in svc["host_statuses"]}
    assert list(hosts) == ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]
    assert hosts["10.0.0.1:1"] == _host("10.0.0.1:1", cx=3, rq=2)
    assert hosts["10.0.0.2:1"] == _host(
        "10.0.0.2:1", "/failed_active_hc/failed_outlier_check", ejections=1, cx=1
    )
    assert hosts["10.0.0.3:1"] == _host("10.0.0.3:1", rq=4)
    assert only_a == a["cluster_statuses"][1]
    assert only_a is not a["cluster_statuses"][1]
    assert only_b == _cluster("only_b", [])


@pytest.mark.parametrize(
    ("flags", "union"),
    [
        (["healthy", "healthy"], "healthy"),
        (["healthy", "/failed"], "/failed"),
        (["/failed", "/failed_outlier_check"], "/failed_outlier_check"),
        (["/failed_outlier_check", "/failed_active_hc"], "/failed_active_hc/failed_outlier_check"),
        (["/custom", "/failed_active_hc/custom"], "/failed_active_hc/custom"),
    ],
)
def test_health_flags_are_the_union_in_host_status_notation(flags: list[str], union: str) -> None:
    pages = [{"cluster_statuses": [_cluster("c", [_host("h:1", f)])]} for f in flags]
    (cluster,) = merge_cluster_statuses(pages)["cluster_statuses"]
    assert cluster["host_statuses"][0]["health_flags"] == union


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"cluster_statuses": [{"name": "c"}]},
        {"cluster_statuses": [_cluster("c", [_host("h:1", "sick")])]},
        {"cluster_statuses": [_cluster("c", [{**_host("h:1"), "cx_active": "2"}])]},
    ],
)
def test_malformed_cluster_status_raises_naming_the_page(bad: dict[str, Any]) -> None:
    good = {"cluster_statuses": [_cluster("c", [_host("h:1")])]}
    with pytest.raises(CodecError, match=r"clusters page 1"):
        merge_cluster_statuses([good, bad])


async def test_real_cluster_status_bodies_merge_field_for_field() -> None:
    """The bodies ``admin.cluster_status`` writes in a running proxy (ports never dialled):
    one merges to itself; two sum their load and keep every field of the format."""
    config = listener(route("c1"), clusters=[cluster("c1", 1, 2)])
    async with running(config) as server:
        statuses = [cluster_status(c) for c in server.clusters.clusters.values()]
    body = json.loads(json.dumps({"cluster_statuses": statuses}))
    assert merge_cluster_statuses([body]) == body
    other = copy.deepcopy(body)
    (c1,) = other["cluster_statuses"]
    c1["stats"]["upstream_rq_total"] = 4
    c1["host_statuses"][1].update(rq_active=2, health_flags="/failed_outlier_check")
    (merged,) = merge_cluster_statuses([body, other])["cluster_statuses"]
    assert list(merged) == list(body["cluster_statuses"][0])
    assert merged["stats"]["upstream_rq_total"] == 4
    first, second = merged["host_statuses"]
    assert list(second) == list(body["cluster_statuses"][0]["host_statuses"][1])
    assert (first["rq_active"], first["health_flags"]) == (0, "healthy")
    assert (second["rq_active"], second["health_flags"]) == (2, "/failed_outlier_check")
