"""The ``/stats/prometheus`` page: names, labels and escaping, served on the admin port."""

from __future__ import annotations

import asyncio
import dataclasses

from aeraki.metrics import Histogram, MetricSpec
from aeraki.proxy.config import AdminConfig, SocketAddress
from aeraki.proxy.observe.prometheus import (
    CONTENT_TYPE,
    Exposition,
    exported_name,
    label_text,
)
from aeraki.proxy.stats import CLUSTER_STATS, LISTENER_STATS
from tests.proxy.filters.helpers import LOCAL, local_config, running, with_filters
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, listener, route
from tests.proxy.observe.promtext import parse


def test_counters_get_total_once_and_dots_become_underscores() -> None:
    assert exported_name("p_", MetricSpec("request", "counter", "")) == "p_request_total"
    assert exported_name("p_", MetricSpec("rq_total", "counter", "")) == "p_rq_total"
    assert exported_name("p_", MetricSpec("cx_active", "gauge", "")) == "p_cx_active"
    assert exported_name("p_", MetricSpec("a.b", "gauge", "")) == "p_a_b"


def test_label_values_are_escaped() -> None:
    text = label_text(("a", "b"), ('say "hi"\\', "two\nlines"))
    assert text == 'a="say \\"hi\\"\\\\",b="two\\nlines"'
    out = Exposition()
    spec = MetricSpec("m_total", "counter", "help with \\ backslash")
    out.sample(spec, text, 3)
    histogram = Histogram((1.0,))
    histogram.observe(2.5)
    out.histogram(MetricSpec("h", "histogram", "h"), "", histogram)
    families = parse(out.text())
    assert families["m_total"].value(a='say "hi"\\', b="two\nlines") == 3
    assert families["h"].value("_bucket", le="1.0") == 0
    assert families["h"].value("_bucket", le="+Inf") == 1
    assert families["h"].value("_sum") == 2.5


async def _get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head, body


async def test_admin_page_has_every_listener_cluster_and_filter_stat() -> None:
    up = await FakeUpstream("a").start()
    config = with_filters(
        listener(route("a"), clusters=[cluster("a", up.port)]),
        (LOCAL, local_config({"stat_prefix": "x", "token_bucket": {"max_tokens": 5,
            "tokens_per_fill": 1, "fill_interval": "1s"}})),
    )  # fmt: skip
    config = dataclasses.replace(config, admin=AdminConfig(address=SocketAddress("127.0.0.1", 0)))
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        await client.call(1, {"method": "m"})
        await client.close()
        assert server.admin is not None
        head, body = await _get(server.admin.port, "/stats/prometheus")
    assert f"Content-Type: {CONTENT_TYPE}" in head
    families = parse(body)
    labels = {"listener": "fake", "stat_prefix": "test", "protocol": "fake"}
    for spec in LISTENER_STATS:
        name = exported_name("aeraki_meta_protocol_", spec)
        assert families[name].kind == spec.kind
    for spec in CLUSTER_STATS:
        assert exported_name("aeraki_cluster_", spec) in families
    assert families["aeraki_meta_protocol_request_total"].value(**labels) == 1
    assert families["aeraki_meta_protocol_local_rate_limit_ok_total"].value(**labels) == 1
    assert families["aeraki_cluster_upstream_rq_total"].value(cluster="a") == 1
    up.close()
