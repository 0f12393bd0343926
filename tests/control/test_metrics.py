"""The control plane's ``/metrics`` page in the Prometheus text format: pushes and their
latency histogram, connected proxies, config errors and NACKs — with a real gRPC ADS client
that ACKs and another that NACKs, in process."""

from __future__ import annotations

import grpc

from aeraki.control.admin import admin_routes
from aeraki.control.push import CONTROL_HISTOGRAMS, CONTROL_METRICS
from aeraki.control.xds import CLUSTER_TYPE
from tests.control.test_runtime import Harness, harness  # noqa: F401  (fixture)
from tests.control.xds.client import AdsClient
from tests.proxy.observe.promtext import Family, parse


def _metrics(h: Harness) -> dict[str, Family]:
    status, content_type, body = admin_routes(h.plane)["/metrics"]()
    assert (status, content_type) == (200, "text/plain; version=0.0.4")
    return parse(body)  # strict: well-formed lines, each family declared once


def _nacks(h: Harness) -> int:
    return h.plane.server.stats.nacks_total


async def test_metrics_count_pushes_proxies_and_nacks(harness: Harness) -> None:  # noqa: F811
    await harness.wait(lambda: harness.plane.config is not None)
    harness.connect("good-proxy")
    await harness.wait(lambda: harness.plane.in_sync("good-proxy"))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{harness.plane.port}")
    bad = AdsClient(channel, "bad-proxy")
    try:
        bad.subscribe(CLUSTER_TYPE)
        bad.nack(await bad.recv(), "cluster x: unsupported field")
        await harness.wait(lambda: _nacks(harness) == 1)
        await harness.wait(lambda: harness.plane.metrics.proxies_connected == 2)
        families = _metrics(harness)
    finally:
        await bad.close()
        await channel.close()
    for spec in (*CONTROL_METRICS, *CONTROL_HISTOGRAMS):
        assert families[f"aeraki_control_{spec.name}"].kind == spec.kind
    pushes = families["aeraki_control_pushes_total"].value()
    assert pushes >= 1
    latency = families["aeraki_control_push_latency_seconds"]
    assert latency.value("_count") == pushes
    assert latency.value("_bucket", le="+Inf") == pushes
    assert latency.value("_sum") >= harness.plane.metrics.push_duration_seconds > 0
    assert families["aeraki_control_proxies_connected"].value() == 2
    assert families["aeraki_control_xds_nacks_total"].value() == 1
    assert families["aeraki_control_config_errors_total"].value() == 0
