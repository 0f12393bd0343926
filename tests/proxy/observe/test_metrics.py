"""Request metrics: histogram buckets, response codes, the method cap, and the observer in a
running proxy (fake codec, real loopback TCP) read back through ``/stats/prometheus``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from aeraki.codec.api import MessageType, ResponseStatus
from aeraki.proxy.observe import prometheus
from aeraki.proxy.observe.metrics import (
    DURATION_BUCKETS_MS,
    OTHER_METHOD,
    Histogram,
    RequestMetrics,
)
from aeraki.proxy.server import ProxyServer
from tests.proxy.filters.helpers import running
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, exact, is_error, listener, route
from tests.proxy.observe.promtext import Family, parse

if TYPE_CHECKING:
    from aeraki.proxy.request import ActiveRequest


def test_histogram_bounds_are_inclusive_and_cumulative() -> None:
    histogram = Histogram((1.0, 5.0))
    for value in (0.2, 1.0, 1.01, 5.0, 7.0, 1e9):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 2]
    assert histogram.cumulative() == [2, 4, 6]
    assert histogram.count == 6
    assert histogram.sum == 0.2 + 1.0 + 1.01 + 5.0 + 7.0 + 1e9


def test_duration_buckets_are_envoys_defaults() -> None:
    assert DURATION_BUCKETS_MS[:4] == (0.5, 1, 5, 10)
    assert DURATION_BUCKETS_MS[-1] == 3600000
    assert list(DURATION_BUCKETS_MS) == sorted(DURATION_BUCKETS_MS)


def _runtime_metrics(server: ProxyServer) -> RequestMetrics:
    (metrics,) = [o for o in server.listeners[0].runtime.observers if isinstance(o, RequestMetrics)]
    return metrics


def _families(server: ProxyServer) -> dict[str, Family]:
    return parse(prometheus.render(server))


async def test_requests_counted_by_cluster_method_and_outcome() -> None:
    up = await FakeUpstream("a").start()
    config = listener(route("a", match=[exact("svc", "a")]), clusters=[cluster("a", up.port)])
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        for i in range(3):
            assert (await client.call(i, {"svc": "a", "method": "sayHello"})).get_string(
                "server"
            ) == "a"
        failed = await client.call(10, {"svc": "a", "method": "sayBye", "fail-on": "a"})
        assert failed.message_type is MessageType.ERROR
        assert is_error(
            await client.call(11, {"svc": "none", "method": "sayHello"}), "ROUTE_NOT_FOUND"
        )
        await client.close()
        families = _families(server)
    requests = families["aeraki_meta_protocol_requests_total"]
    assert requests.kind == "counter"
    base = {"listener": "fake", "stat_prefix": "test", "protocol": "fake"}
    assert requests.value(**base, cluster="a", method="sayHello", response_code="OK") == 3
    assert requests.value(**base, cluster="a", method="sayBye", response_code="ERROR") == 1
    assert (
        requests.value(**base, cluster="", method="sayHello", response_code="ROUTE_NOT_FOUND") == 1
    )
    duration = families["aeraki_meta_protocol_request_duration_milliseconds"]
    assert duration.kind == "histogram"
    assert duration.value("_count", cluster="a", response_code="OK") == 3
    assert duration.value("_bucket", cluster="a", response_code="OK", le="+Inf") == 3
    assert duration.value("_sum", cluster="a", response_code="OK") > 0
    up.close()


async def test_method_values_are_capped_per_listener() -> None:
    up = await FakeUpstream("a").start()
    async with running(listener(route("a"), clusters=[cluster("a", up.port)])) as server:
        _runtime_metrics(server).max_methods = 2
        client = await FakeClient().connect(server.listeners[0].port)
        for i, method in enumerate(["m1", "m2", "m3", "m4", "m1"]):
            await client.call(i, {"method": method})
        await client.close()
        requests = _families(server)["aeraki_meta_protocol_requests_total"]
    methods = {labels["method"]: v for _, labels, v in requests.samples}
    assert methods == {"m1": 2, "m2": 1, OTHER_METHOD: 2}
    up.close()


async def test_one_way_requests_are_counted_without_response() -> None:
    up = await FakeUpstream("a").start()
    async with running(listener(route("a"), clusters=[cluster("a", up.port)])) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        client.send(1, {"method": "notify"}, MessageType.ONEWAY)
        await up.wait_received(1)
        # the reply to a two-way request on the same connection comes after the one-way ended
        await client.call(2, {"method": "sayHello"})
        await client.close()
        requests = _families(server)["aeraki_meta_protocol_requests_total"]
    assert requests.value(method="notify", response_code="NONE") == 1
    up.close()


def _ended(cluster: str, method: str, ms: float) -> ActiveRequest:
    fake = SimpleNamespace(
        response=SimpleNamespace(response_status=ResponseStatus.OK),
        local_error=None,
        metadata=SimpleNamespace(strings={"method": method}),
        cluster_name=cluster,
        started=5.0,
        ended=5.0 + ms / 1000.0,
    )
    return cast("ActiveRequest", fake)


def test_requests_snapshot_and_shared_duration_histogram() -> None:
    metrics = RequestMetrics()
    for method, ms in (("a", 0.2), ("a", 3.0), ("b", 7.0)):
        metrics.on_request_done(_ended("c1", method, ms))
    snapshot = metrics.requests
    assert snapshot == {("c1", "a", "OK"): 2, ("c1", "b", "OK"): 1}
    metrics.on_request_done(_ended("c1", "a", 0.1))
    assert snapshot[("c1", "a", "OK")] == 2  # a copy: the exposition reads a stable view
    assert metrics.requests[("c1", "a", "OK")] == 3
    (histogram,) = metrics.durations.values()  # both methods of (c1, OK) share it
    assert sum(histogram.counts) == 4
    assert histogram.counts[0] == 2  # 0.2 and 0.1 ms <= 0.5
    assert histogram.sum == pytest.approx(10.3)
