"""Microbenchmark: what metrics cost a request (µs per request, best of several runs).

Rows (each the per-request call the proxy makes, on a warm label child):

* ``request metrics observer`` — :class:`~aeraki.proxy.observe.metrics.RequestMetrics`, on
  every listener: requests by cluster/method/code + the duration histogram;
* ``istio_stats outbound`` / ``inbound`` — the filter's ``on_response`` (peer labels cached by
  the ``x-envoy-peer-metadata`` value; four metrics);
* ``metadata_exchange outbound`` — adding the two properties to the request mutation;
* ``dubbo re-encode for the exchange`` — what that mutation then costs the Dubbo codec (the
  request's attachment map rewritten), against forwarding the frame untouched.

The exposition itself runs only when scraped (it reads the counters and histograms).

    .venv/bin/python -m benchmarks.metrics_cost [--requests 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, cast

from aeraki.codec.api import Metadata, Side
from aeraki.codec.dubbo.codec import DubboCodec
from aeraki.proxy.filters.istio_stats import IstioStatsFilter, node_labels
from aeraki.proxy.filters.metadata_exchange import (
    PEER_METADATA,
    OutboundExchange,
    local_properties,
)
from aeraki.proxy.observe.metrics import RequestMetrics
from aeraki.proxy.request import ActiveRequest
from benchmarks import wire

NODE: dict[str, Any] = {
    "NAMESPACE": "default",
    "WORKLOAD_NAME": "reviews-v2",
    "CLUSTER_ID": "Kubernetes",
    "LABELS": {"app": "reviews", "version": "v2"},
}


class _Request:
    """The attributes of ``ActiveRequest`` the metrics read: a successful call."""

    def __init__(self, metadata: Metadata, response: Metadata) -> None:
        self.metadata = metadata
        self.response = response
        self.local_error = None
        self.cluster_name = "outbound|9090||echo.default.svc.cluster.local"
        self.mutation: dict[str, str] = {}
        now = time.monotonic()
        self.started = now - 0.0012
        self.ended = now


def _best(call: Callable[[], object], requests: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(requests):
            call()
        best = min(best, time.perf_counter() - start)
    return best / requests * 1e6


def _messages() -> tuple[Metadata, Metadata]:
    peer = local_properties("sidecar~10.0.0.1~pp", NODE)[PEER_METADATA]
    request = Metadata(origin=b"x" * 140)
    request.put_string("method", "echo")
    request.put_string(PEER_METADATA, peer)
    response = Metadata(origin=b"y" * 130)
    response.put_string(PEER_METADATA, peer)
    return request, response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n, repeat = args.requests, args.repeat
    md, response = _messages()
    request = cast(ActiveRequest, _Request(md, response))
    observer = RequestMetrics()
    local = node_labels(NODE)
    outbound = IstioStatsFilter(local, inbound=False, destination_service="", protocol="dubbo")
    inbound = IstioStatsFilter(local, inbound=True, destination_service="echo", protocol="dubbo")
    exchange = OutboundExchange(local_properties("sidecar~10.0.0.2~reviews", NODE))
    codec = DubboCodec(Side.REQUEST)
    (frame,) = codec.decode(wire.dubbo_echo_request(7))
    mutation = exchange.properties
    rows = [
        ("request metrics observer", lambda: observer.on_request_done(request)),
        ("istio_stats outbound", lambda: outbound.on_response(request, response, {})),
        ("istio_stats inbound", lambda: inbound.on_response(request, response, {})),
        ("metadata_exchange outbound", lambda: exchange.on_request(request)),
        ("dubbo forward untouched", lambda: codec.encode(frame, {})),
        ("dubbo re-encode for the exchange", lambda: codec.encode(frame, mutation)),
    ]
    print(f"metrics cost, best of {repeat} × {n} requests")
    for name, call in rows:
        print(f"  {name:34} {_best(call, n, repeat):6.2f} µs/request")


if __name__ == "__main__":
    main()
