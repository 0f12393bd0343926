"""Metadata exchange and Istio standard metrics through two real proxies (fake codec, real
loopback TCP): client -> OUTBOUND proxy of workload ``productpage`` -> INBOUND proxy of
workload ``reviews`` -> upstream. Each proxy learns the other's workload from the
``x-envoy-peer-metadata`` property the other one added, and labels its metrics with both."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap import ConfigErrors, bootstrap_from_dict
from aeraki.proxy.config import ProxyConfig
from aeraki.proxy.filters.istio_stats import ISTIO_LABELS, node_labels
from aeraki.proxy.filters.metadata_exchange import (
    PEER_METADATA,
    PEER_METADATA_ID,
    decode_peer_metadata,
    encode_local_metadata,
)
from aeraki.proxy.observe import prometheus
from aeraki.proxy.server import ProxyServer
from aeraki.xds.gen.meta_protocol_proxy.filters.istio_stats.v1alpha import istio_stats_pb2
from aeraki.xds.gen.meta_protocol_proxy.filters.metadata_exchange.v1alpha import (
    metadata_exchange_pb2,
)
from tests.proxy.filters.helpers import running, with_filters
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, listener, route
from tests.proxy.observe.promtext import Family, parse
from tests.proxy.test_bootstrap import base, tc

MX = "aeraki.meta_protocol.filters.metadata_exchange"
STATS = "aeraki.meta_protocol.filters.istio_stats"
SERVICE = "reviews.default.svc.cluster.local"
OUT_CLUSTER = f"outbound|9080||{SERVICE}"

PRODUCTPAGE: dict[str, Any] = {
    "NAME": "productpage-v1-abc",
    "NAMESPACE": "bookinfo",
    "WORKLOAD_NAME": "productpage-v1",
    "CLUSTER_ID": "Kubernetes",
    "LABELS": {"app": "productpage", "version": "v1"},
    "NOT_FLAT": "dropped",
}
REVIEWS: dict[str, Any] = {
    "NAMESPACE": "default",
    "WORKLOAD_NAME": "reviews-v2",
    "LABELS": {
        "app": "reviews",
        "version": "v2",
        "service.istio.io/canonical-name": "reviews",
        "service.istio.io/canonical-revision": "v2",
    },
}


def _sidecar(
    config: ProxyConfig, direction: str, node_id: str, metadata: dict[str, Any]
) -> ProxyConfig:
    config = with_filters(
        config,
        (MX, metadata_exchange_pb2.MetadataExchange()),
        (STATS, istio_stats_pb2.IstioStats(destination_service=SERVICE)),
    )
    first = dataclasses.replace(config.listeners[0], traffic_direction=direction)
    return dataclasses.replace(config, listeners=(first,), node_id=node_id, node_metadata=metadata)


@asynccontextmanager
async def mesh(
    out_direction: str = "OUTBOUND",
) -> AsyncIterator[tuple[ProxyServer, ProxyServer, FakeUpstream]]:
    """Upstream, the INBOUND proxy in front of it and the client-side proxy in front of that."""
    up = await FakeUpstream("reviews").start()
    async with AsyncExitStack() as stack:
        inbound_config = listener(route("local"), clusters=[cluster("local", up.port)])
        inbound = await stack.enter_async_context(
            running(_sidecar(inbound_config, "INBOUND", "sidecar~10.0.0.2~reviews", REVIEWS))
        )
        out_config = listener(
            route(OUT_CLUSTER),
            clusters=[cluster(OUT_CLUSTER, inbound.listeners[0].port)],
        )
        outbound = await stack.enter_async_context(
            running(_sidecar(out_config, out_direction, "sidecar~10.0.0.1~pp", PRODUCTPAGE))
        )
        yield outbound, inbound, up
    up.close()


def _istio(server: ProxyServer) -> dict[str, Family]:
    return {k: v for k, v in parse(prometheus.render(server)).items() if k.startswith("istio_")}


def test_local_metadata_keeps_only_flat_node_keys_and_round_trips() -> None:
    value = encode_local_metadata(PRODUCTPAGE)
    assert decode_peer_metadata(value) == {k: v for k, v in PRODUCTPAGE.items() if k != "NOT_FLAT"}
    assert decode_peer_metadata(value.rstrip("=")) == decode_peer_metadata(value)
    assert encode_local_metadata({"OTHER": "x"}) == ""


def test_bad_peer_metadata_reads_as_an_unknown_node() -> None:
    for bad in ("", "***", "aGVsbG8gd29ybGQ=", "AAAA"):
        assert node_labels(decode_peer_metadata(bad)) == ("unknown",) * 5 + ("unknown", "latest")


def test_node_labels_default_canonical_names_from_the_workload() -> None:
    assert node_labels(PRODUCTPAGE) == (
        "productpage-v1",
        "bookinfo",
        "Kubernetes",
        "productpage",
        "v1",
        "productpage-v1",
        "latest",
    )
    assert node_labels(REVIEWS)[5:] == ("reviews", "v2")


async def test_each_side_carries_its_node_to_the_other() -> None:
    async with mesh() as (outbound, _inbound, up):
        client = await FakeClient().connect(outbound.listeners[0].port)
        reply = await client.call(1, {"method": "get"})
        await client.close()
    (request,) = up.received
    assert decode_peer_metadata(request.get_string(PEER_METADATA))["WORKLOAD_NAME"] == (
        "productpage-v1"
    )
    assert request.get_string(PEER_METADATA_ID) == "sidecar~10.0.0.1~pp"
    # the INBOUND proxy answered with its own node (the client sees it too, as in Istio)
    assert decode_peer_metadata(reply.get_string(PEER_METADATA))["WORKLOAD_NAME"] == "reviews-v2"
    assert reply.get_string(PEER_METADATA_ID) == "sidecar~10.0.0.2~reviews"


async def test_both_reporters_label_source_and_destination() -> None:
    async with mesh() as (outbound, inbound, _up):
        client = await FakeClient().connect(outbound.listeners[0].port)
        for i in range(4):
            await client.call(i, {"method": "get"})
        await client.call(9, {"method": "get", "fail-on": "reviews"})
        await client.close()
        source, destination = _istio(outbound), _istio(inbound)
    expected = {
        "source_workload": "productpage-v1",
        "source_workload_namespace": "bookinfo",
        "source_app": "productpage",
        "source_canonical_service": "productpage-v1",
        "destination_workload": "reviews-v2",
        "destination_service_namespace": "default",
        "destination_workload_namespace": "default",
        "destination_cluster": "unknown",
        "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2",
        "destination_service": SERVICE,
        "request_protocol": "fake",
    }
    for families, reporter in ((source, "source"), (destination, "destination")):
        requests = families["istio_requests_total"]
        assert requests.kind == "counter"
        assert requests.value(**expected, reporter=reporter, response_code="0") == 4
        assert requests.value(**expected, reporter=reporter, response_code="1") == 1
        (_, labels, _) = requests.samples[0]
        assert tuple(labels) == ISTIO_LABELS  # every label, in Aeraki's order
        for name in (
            "istio_request_duration_milliseconds",
            "istio_request_bytes",
            "istio_response_bytes",
        ):
            assert families[name].kind == "histogram"
            assert families[name].value("_count", reporter=reporter, response_code="0") == 4
        assert families["istio_request_bytes"].value("_sum", response_code="0") > 0


async def test_a_listener_without_direction_exchanges_nothing() -> None:
    async with mesh(out_direction="UNSPECIFIED") as (outbound, inbound, up):
        client = await FakeClient().connect(outbound.listeners[0].port)
        await client.call(1, {"method": "get"})
        await client.close()
        source, destination = _istio(outbound), _istio(inbound)
    assert not up.received[0].has_string(PEER_METADATA)
    # the inbound side knows nothing of its peer; the client side still learns the server's
    assert destination["istio_requests_total"].value(source_workload="unknown") == 1
    assert (
        source["istio_requests_total"].value(reporter="source", destination_workload="reviews-v2")
        == 1
    )


def test_bootstrap_takes_the_filters_and_the_traffic_direction() -> None:
    data = base()
    data["node"]["metadata"] = {"WORKLOAD_NAME": "reviews-v2"}
    data["static_resources"]["listeners"][0]["traffic_direction"] = "INBOUND"
    tc(data)["meta_protocol_filters"] = [
        {"name": MX},
        {
            "name": STATS,
            "config": {
                "@type": "type.googleapis.com/aeraki.meta_protocol_proxy.filters.istio_stats."
                "v1alpha.IstioStats",
                "destination_service": SERVICE,
            },
        },
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    config = bootstrap_from_dict(data)
    (only,) = config.listeners
    assert only.traffic_direction == "INBOUND"
    assert [f.name for f in only.proxy.filters] == [
        MX,
        STATS,
        "aeraki.meta_protocol.filters.router",
    ]
    assert only.proxy.filters[1].config.destination_service == SERVICE
    assert config.node_metadata == {"WORKLOAD_NAME": "reviews-v2"}


def test_bootstrap_refuses_unknown_istio_stats_fields() -> None:
    data = base()
    tc(data)["meta_protocol_filters"] = [
        {
            "name": STATS,
            "config": {
                "@type": "type.googleapis.com/aeraki.meta_protocol_proxy.filters.istio_stats."
                "v1alpha.IstioStats",
                "destination_service": SERVICE,
                "no_such_field": 1,
            },
        },
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    with pytest.raises((ConfigErrors, ConfigError)) as caught:
        bootstrap_from_dict(data)
    assert "no_such_field" in str(caught.value)
