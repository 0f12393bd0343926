"""A real Prometheus scrapes two real proxy processes and its query API shows what real
Thrift and Dubbo calls did.

Topology, as two Istio sidecars would be::

    Apache Thrift (THeader) client --> [productpage proxy: OUTBOUND] --> [reviews proxy: INBOUND] --> Apache Thrift server
    Node apache-dubbo-js consumer  --> [productpage proxy: OUTBOUND] --> [reviews proxy: INBOUND] --> Java Hessian2 provider

Each proxy runs ``metadata_exchange`` and ``istio_stats`` with its own node metadata, so the
Istio metrics of each side name the other side's workload (learnt from the THeader headers /
Dubbo attachments the other proxy added). Prometheus (``scrape_interval: 1s``) scrapes both
``/stats/prometheus`` pages; every assertion is a PromQL query against its HTTP API, polled
(bounded) until the expected value appears.
"""

# ruff: noqa: E501

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.aeraki_proxy import (
    AerakiProxy,
    bootstrap,
    meta_listener,
    meta_route,
    new_port,
    start_aeraki_proxy,
    static_cluster,
)
from tests.integration.peers.dubbo import DubboCall, DubboProvider, dubbo_calls
from tests.integration.peers.procs import LOOPBACK, ProcessGroup
from tests.integration.peers.prometheus import Prometheus, prometheus_binary, start_prometheus
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServerCache

THRIFT_SERVICE = "echo.thrift.svc.cluster.local"
DUBBO_SERVICE = "demo.dubbo.svc.cluster.local"
THRIFT_OUT = f"outbound|9090||{THRIFT_SERVICE}"
DUBBO_OUT = f"outbound|20880||{DUBBO_SERVICE}"
THRIFT_IN = "inbound|9090||"
DUBBO_IN = "inbound|20880||"
ISTIO_STATS_TYPE = (
    "type.googleapis.com/aeraki.meta_protocol_proxy.filters.istio_stats.v1alpha.IstioStats"
)
PRODUCTPAGE = {
    "NAMESPACE": "bookinfo",
    "WORKLOAD_NAME": "productpage-v1",
    "LABELS": {"app": "productpage", "version": "v1"},
}
REVIEWS = {
    "NAMESPACE": "default",
    "WORKLOAD_NAME": "reviews-v2",
    "LABELS": {"app": "reviews", "version": "v2"},
}
N_ECHO, N_ADD, N_DUBBO = 7, 2, 5


def _sidecar_listener(
    name: str, port: int, protocol: str, cluster: str, direction: str, service: str
) -> dict[str, Any]:
    listener = meta_listener(name, port, protocol, [meta_route(cluster)])
    listener["traffic_direction"] = direction
    typed = listener["filter_chains"][0]["filters"][0]["typed_config"]
    typed["meta_protocol_filters"] = [
        {"name": "aeraki.meta_protocol.filters.metadata_exchange"},
        {
            "name": "aeraki.meta_protocol.filters.istio_stats",
            "config": {"@type": ISTIO_STATS_TYPE, "destination_service": service},
        },
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    return listener


def _node(node_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"id": node_id, "cluster": metadata["WORKLOAD_NAME"], "metadata": metadata}


@dataclass
class Mesh:
    productpage: AerakiProxy
    reviews: AerakiProxy
    prometheus: Prometheus


@pytest.fixture
def mesh(
    peers: ProcessGroup,
    tmp_path: Path,
    thrift_servers: ThriftServerCache,
    dubbo_provider: DubboProvider,
) -> Mesh:
    if prometheus_binary() is None:
        pytest.fail("prometheus not installed; run `make setup`")
    thrift = thrift_servers.get("apache", "header", "binary")
    thrift_in, dubbo_in = new_port(), new_port()
    reviews_config = bootstrap(
        [
            _sidecar_listener(
                "thrift-in", thrift_in, "thrift", THRIFT_IN, "INBOUND", THRIFT_SERVICE
            ),
            _sidecar_listener("dubbo-in", dubbo_in, "dubbo", DUBBO_IN, "INBOUND", DUBBO_SERVICE),
        ],
        [static_cluster(THRIFT_IN, [thrift.port]), static_cluster(DUBBO_IN, [dubbo_provider.port])],
        new_port(),
    )
    reviews_config["node"] = _node("sidecar~10.0.0.2~reviews-v2.default", REVIEWS)
    reviews = start_aeraki_proxy(peers, reviews_config, tmp_path, name="reviews")
    productpage_config = bootstrap(
        [
            _sidecar_listener(
                "thrift-out", new_port(), "thrift", THRIFT_OUT, "OUTBOUND", THRIFT_SERVICE
            ),
            _sidecar_listener(
                "dubbo-out", new_port(), "dubbo", DUBBO_OUT, "OUTBOUND", DUBBO_SERVICE
            ),
        ],
        [static_cluster(THRIFT_OUT, [thrift_in]), static_cluster(DUBBO_OUT, [dubbo_in])],
        new_port(),
    )
    productpage_config["node"] = _node("sidecar~10.0.0.1~productpage-v1.bookinfo", PRODUCTPAGE)
    productpage = start_aeraki_proxy(peers, productpage_config, tmp_path, name="productpage")
    prometheus = start_prometheus(
        peers,
        tmp_path / "prometheus",
        {
            "productpage": f"{LOOPBACK}:{productpage.admin_port}",
            "reviews": f"{LOOPBACK}:{reviews.admin_port}",
        },
    )
    return Mesh(productpage, reviews, prometheus)


def _send_traffic(mesh: Mesh) -> None:
    port = mesh.productpage.ports["thrift-out"]
    with make_thrift_client("apache", "header", "binary", LOOPBACK, port) as client:
        for i in range(N_ECHO):
            assert client.echo(f"hello-{i}") == f"hello-{i}"
        for i in range(N_ADD):
            assert client.add(i, 40) == i + 40
    calls = [
        *(DubboCall("sayHello", [f"u{i}"], {"want-attachments": "1"}) for i in range(N_DUBBO)),
        DubboCall("getAttachment", ["x-envoy-peer-metadata-id"], {"want-attachments": "1"}),
    ]
    results = dubbo_calls("node", LOOPBACK, mesh.productpage.ports["dubbo-out"], calls)
    assert all(r.ok for r in results), results
    assert results[0].value == "Hello u0, response from v1"
    # the provider got the client side's node in the request attachments ...
    assert results[-1].value == "sidecar~10.0.0.1~productpage-v1.bookinfo"
    # ... and the consumer the server side's node in the response attachments
    assert results[0].attachments.get("x-envoy-peer-metadata-id") == (
        "sidecar~10.0.0.2~reviews-v2.default"
    )


def test_prometheus_scrapes_proxy_and_istio_metrics(mesh: Mesh) -> None:
    prom = mesh.prometheus
    prom.wait_for('up{job="productpage"}', 1)
    prom.wait_for('up{job="reviews"}', 1)
    _send_traffic(mesh)

    # proxy metrics: labels, never names, carry listener, cluster, protocol and method
    requests = "aeraki_meta_protocol_requests_total"
    prom.wait_for(
        f'{requests}{{job="productpage",listener="thrift-out",protocol="thrift",cluster="{THRIFT_OUT}",method="echo",response_code="OK"}}',
        N_ECHO,
    )
    prom.wait_for(f'{requests}{{job="productpage",listener="thrift-out",method="add"}}', N_ADD)
    prom.wait_for(
        f'{requests}{{job="reviews",listener="dubbo-in",protocol="dubbo",method="sayHello"}}',
        N_DUBBO,
    )
    prom.wait_for(
        'aeraki_meta_protocol_request_duration_milliseconds_count{job="productpage",listener="dubbo-out",response_code="OK"}',
        N_DUBBO + 1,
    )
    prom.wait_for(
        'aeraki_meta_protocol_request_duration_milliseconds_bucket{job="reviews",listener="thrift-in",le="+Inf"}',
        N_ECHO + N_ADD,
    )
    prom.wait_for(
        'aeraki_meta_protocol_request_twoway_total{job="productpage",listener="thrift-out",stat_prefix="thrift-out"}',
        N_ECHO + N_ADD,
    )
    prom.wait_for(
        f'aeraki_cluster_upstream_rq_total{{job="reviews",cluster="{DUBBO_IN}"}}', N_DUBBO + 1
    )
    # one client connection, calls one at a time: one pooled upstream connection, reused
    prom.wait_for(
        f'aeraki_cluster_upstream_cx_total{{job="productpage",cluster="{THRIFT_OUT}"}}', 1
    )

    # Istio standard metrics, each side naming the other from the metadata exchange
    both = 'source_workload="productpage-v1",source_workload_namespace="bookinfo",source_app="productpage",destination_workload="reviews-v2",destination_workload_namespace="default",destination_app="reviews",destination_version="v2",response_code="0"'
    for reporter, job in (("destination", "reviews"), ("source", "productpage")):
        prom.wait_for(
            f'istio_requests_total{{job="{job}",reporter="{reporter}",request_protocol="thrift",destination_service="{THRIFT_SERVICE}",{both}}}',
            N_ECHO + N_ADD,
        )
        prom.wait_for(
            f'istio_requests_total{{job="{job}",reporter="{reporter}",request_protocol="dubbo",destination_service="{DUBBO_SERVICE}",{both}}}',
            N_DUBBO + 1,
        )
        prom.wait_for(
            f'istio_request_duration_milliseconds_count{{job="{job}",reporter="{reporter}",request_protocol="dubbo"}}',
            N_DUBBO + 1,
        )
    prom.wait_for('sum(istio_request_bytes_count{request_protocol="thrift"})', 2 * (N_ECHO + N_ADD))
    # sizes are real: every Dubbo response of the provider is well over 16 bytes (header)
    value = prom.value('istio_response_bytes_sum{job="reviews",request_protocol="dubbo"}')
    assert value is not None
    assert value > 16 * N_DUBBO
