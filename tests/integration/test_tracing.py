"""Tracing end to end: a real ``aeraki proxy`` process between real clients and servers, its
spans exported over OTLP/gRPC to the test suite's receiver.

* a raw Dubbo frame with a ``traceparent`` attachment: the span's parent is the client's span,
  and the Java provider (asked ``getAttachment``) saw the proxy's span as its parent;
* B3 multi attachments in, B3 out to the provider;
* an Apache thrift THeader call with a ``traceparent`` header;
* unsampled requests create no span (counted at the receiver behind a forced request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

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
from tests.integration.peers.dubbo import (
    DEFAULT_INTERFACE,
    DubboFrame,
    DubboProvider,
    raw_exchange,
    request_frame,
)
from tests.integration.peers.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.integration.peers.procs import LOOPBACK, ProcessGroup
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServerCache

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
SERVER_KIND = 2


def _tracing(**sampling: Any) -> dict[str, Any]:
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": OTEL,
                "grpc_service": {"envoy_grpc": {"cluster_name": "otlp"}},
                "service_name": "aeraki-it",
            },
        },
        **sampling,
    }


def _traced(listener: dict[str, Any], tracing: dict[str, Any]) -> dict[str, Any]:
    listener["filter_chains"][0]["filters"][0]["typed_config"]["tracing"] = tracing
    return listener


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as r:
        yield r


@pytest.fixture
async def proxy(
    peers: ProcessGroup,
    tmp_path: Path,
    receiver: OtlpReceiver,
    dubbo_provider: DubboProvider,
    thrift_servers: ThriftServerCache,
    monkeypatch: pytest.MonkeyPatch,
) -> AerakiProxy:
    # Batches leave every 50 ms instead of Envoy's 5 s (the SDK's own setting, inherited).
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    return await _start_proxy(peers, tmp_path, receiver, dubbo_provider, thrift_servers)


async def _start_proxy(
    peers: ProcessGroup,
    tmp_path: Path,
    receiver: OtlpReceiver,
    dubbo_provider: DubboProvider,
    thrift_servers: ThriftServerCache,
) -> AerakiProxy:
    thrift = thrift_servers.get("apache", "header", "binary")
    listeners = [
        _traced(meta_listener("dubbo", new_port(), "dubbo", [meta_route("dubbo")]), _tracing()),
        _traced(
            meta_listener("dubbo-unsampled", new_port(), "dubbo", [meta_route("dubbo")]),
            _tracing(random_sampling={"value": 0}),
        ),
        _traced(meta_listener("thrift", new_port(), "thrift", [meta_route("thrift")]), _tracing()),
    ]
    clusters = [
        static_cluster("dubbo", [dubbo_provider.port]),
        static_cluster("thrift", [thrift.port]),
        static_cluster("otlp", [receiver.port]),
    ]
    config = bootstrap(listeners, clusters, new_port())
    return await asyncio.to_thread(start_aeraki_proxy, peers, config, tmp_path)


def _string_reply(frame: DubboFrame) -> str:
    """The value of an OK response carrying one Hessian2 string (short or medium form)."""
    body = frame.body
    assert (frame.status, body[0]) == (20, 0x91), frame  # OK, RESPONSE_VALUE
    tag = body[1]
    if tag < 0x20:
        return body[2 : 2 + tag].decode()
    assert 0x30 <= tag <= 0x33, frame
    n = ((tag - 0x30) << 8) + body[2]
    return body[3 : 3 + n].decode()


async def _ask_attachment(port: int, key: str, attachments: dict[str, str]) -> str:
    """What the Java provider received as attachment ``key`` through the proxy."""
    frame = request_frame(1, "getAttachment", [key], attachments=attachments)
    (reply,) = await asyncio.to_thread(raw_exchange, LOOPBACK, port, [frame], replies=1)
    return _string_reply(reply)


async def test_dubbo_span_parent_is_the_client_and_the_provider_sees_the_proxy_span(
    proxy: AerakiProxy, receiver: OtlpReceiver, dubbo_provider: DubboProvider
) -> None:
    sent = f"00-{TID}-{SID}-01"
    seen = await _ask_attachment(proxy.ports["dubbo"], "traceparent", {"traceparent": sent})
    (span,) = await receiver.wait_spans(1)
    assert (span.trace_id, span.parent_span_id, span.kind) == (TID, SID, SERVER_KIND)
    assert seen == f"00-{TID}-{span.span_id}-01"
    assert span.name == f"ingress {DEFAULT_INTERFACE}/getAttachment"
    attrs = span.attributes
    assert attrs["rpc.system"] == "dubbo"
    assert attrs["upstream_cluster"] == "dubbo"
    assert attrs["upstream_host"] == f"{LOOPBACK}:{dubbo_provider.port}"
    assert attrs["request metadata: traceparent"] == sent
    assert attrs["response_status"] == "OK"
    assert span.resource["service.name"] == "aeraki-it"


async def test_dubbo_b3_in_and_out(proxy: AerakiProxy, receiver: OtlpReceiver) -> None:
    b3 = {"x-b3-traceid": TID, "x-b3-spanid": SID, "x-b3-sampled": "1"}
    seen = await _ask_attachment(proxy.ports["dubbo"], "x-b3-spanid", b3)
    (span,) = await receiver.wait_spans(1)
    assert (span.trace_id, span.parent_span_id) == (TID, SID)
    assert seen == span.span_id


async def test_thrift_theader_span_parent_is_the_client(
    proxy: AerakiProxy, receiver: OtlpReceiver
) -> None:
    def call() -> str:
        with make_thrift_client("apache", "header", "binary", LOOPBACK, proxy.ports["thrift"]) as c:
            transport = cast(Any, c)._oprot.trans
            transport.set_header(b"traceparent", f"00-{TID}-{SID}-01".encode())
            return c.echo("traced")

    assert await asyncio.to_thread(call) == "traced"
    (span,) = await receiver.wait_spans(1)
    assert (span.trace_id, span.parent_span_id) == (TID, SID)
    assert span.name.startswith("ingress ")
    assert span.name.endswith("echo")
    assert span.attributes["rpc.system"] == "thrift"
    assert span.attributes["upstream_cluster"] == "thrift"


async def test_unsampled_requests_create_no_span(
    proxy: AerakiProxy, receiver: OtlpReceiver
) -> None:
    frames = [request_frame(i, "whoami") for i in range(1, 31)]
    forced = request_frame(99, "whoami", attachments={"x-envoy-force-trace": "yes"})
    port = proxy.ports["dubbo-unsampled"]
    replies = await asyncio.to_thread(raw_exchange, LOOPBACK, port, frames, replies=30)
    assert {r.request_id for r in replies} == set(range(1, 31))
    await asyncio.to_thread(raw_exchange, LOOPBACK, port, [forced], replies=1)
    # The forced request ended last; its span arriving means any earlier span was sent too.
    spans: list[ReceivedSpan] = await receiver.wait_for(
        lambda got: any("request metadata: x-envoy-force-trace" in s.attributes for s in got)
    )
    assert len(spans) == 1
    assert spans[0].attributes["guid:x-request-id"][14] == "a"  # service-forced, packed


async def test_spans_held_at_shutdown_are_sent_before_the_proxy_exits(
    peers: ProcessGroup,
    tmp_path: Path,
    receiver: OtlpReceiver,
    dubbo_provider: DubboProvider,
    thrift_servers: ThriftServerCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A flush interval far beyond the wait: only the exit flush can deliver the span.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    proxy = await _start_proxy(peers, tmp_path, receiver, dubbo_provider, thrift_servers)
    frame = request_frame(7, "whoami", attachments={"traceparent": f"00-{TID}-{SID}-01"})
    await asyncio.to_thread(raw_exchange, LOOPBACK, proxy.ports["dubbo"], [frame], replies=1)
    assert receiver.spans == []
    assert await asyncio.to_thread(proxy.process.stop) == 0  # SIGTERM: drain, flush, exit
    (span,) = await receiver.wait_spans(1)
    assert (span.trace_id, span.parent_span_id) == (TID, SID)
