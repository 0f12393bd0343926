"""Tracing through the real proxy core (fake codec, loopback TCP) into a real OTLP/gRPC
receiver: span parents from W3C and B3 context, context injected upstream, no span for an
unsampled request, and the ending of each request on its span."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from aeraki.proxy.config import (
    OtlpProviderConfig,
    ProxyConfig,
    RetryOn,
    RetryPolicyConfig,
    TracingConfig,
)
from aeraki.proxy.observe.tracing import RequestTracer, flush_all
from tests.integration.peers.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.proxy.filters.helpers import running
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, is_error, listener, route

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind
STATUS_ERROR = 2


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as r:
        yield r


def traced(
    config: ProxyConfig, receiver: OtlpReceiver, direction: str = "UNSPECIFIED", **sampling: int
) -> ProxyConfig:
    """``config`` with its listener traced into ``receiver`` (cluster "otlp")."""
    tracing = TracingConfig(
        provider=OtlpProviderConfig(cluster="otlp", service_name="svc"), **sampling
    )
    first = config.listeners[0]
    proxy = dataclasses.replace(first.proxy, tracing=tracing)
    listener_config = dataclasses.replace(first, proxy=proxy, traffic_direction=direction)
    return dataclasses.replace(
        config,
        listeners=(listener_config,),
        clusters=(*config.clusters, cluster("otlp", receiver.port)),
    )


async def exported(receiver: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    """Flush (off the loop: the exporter calls the receiver served by this loop) and wait."""
    assert await asyncio.to_thread(flush_all)
    return await receiver.wait_spans(count)


async def test_parent_from_traceparent_and_the_upstream_sees_the_proxy_span(
    receiver: OtlpReceiver,
) -> None:
    up = await FakeUpstream("v1").start()
    config = traced(listener(route("c"), clusters=[cluster("c", up.port)]), receiver)
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        reply = await client.call(
            1, {"traceparent": f"00-{TID}-{SID}-01", "tracestate": "k=v", "method": "m"}
        )
        assert reply.get_string("server") == "v1"
        (span,) = await exported(receiver, 1)
        await client.close()
    assert (span.trace_id, span.parent_span_id, span.kind) == (TID, SID, SERVER)
    seen = up.received[0]
    assert seen.get_string("traceparent") == f"00-{TID}-{span.span_id}-01"
    assert seen.get_string("tracestate") == "k=v"
    rid = seen.get_string("x-request-id")
    assert (len(rid), rid[14]) == (36, "9")
    attrs = span.attributes
    assert attrs["guid:x-request-id"] == rid
    assert attrs["rpc.system"] == "fake"
    assert attrs["upstream_cluster"] == attrs["upstream_cluster.name"] == "c"
    assert attrs["upstream_host"] == f"127.0.0.1:{up.port}"
    assert (attrs["attempts"], attrs["retry_count"]) == (1, 0)
    assert attrs["response_status"] == "OK"
    assert attrs["request metadata: method"] == "m"
    assert attrs["response metadata: server"] == "v1"
    assert attrs["peer.address"] == "127.0.0.1"
    assert "error" not in attrs
    assert span.resource["service.name"] == "svc"
    assert span.start_ns <= span.end_ns
    up.close()


async def test_b3_multi_in_and_out(receiver: OtlpReceiver) -> None:
    up = await FakeUpstream("v1").start()
    config = traced(listener(route("c"), clusters=[cluster("c", up.port)]), receiver)
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        await client.call(2, {"x-b3-traceid": TID[16:], "x-b3-spanid": SID, "x-b3-sampled": "1"})
        (span,) = await exported(receiver, 1)
        await client.close()
    assert (span.trace_id, span.parent_span_id) == ("0" * 16 + TID[16:], SID)
    seen = up.received[0]
    assert seen.get_string("x-b3-traceid") == TID[16:]
    assert seen.get_string("x-b3-spanid") == span.span_id
    assert seen.get_string("x-b3-parentspanid") == SID
    assert seen.get_string("x-b3-sampled") == "1"
    assert seen.get_string("traceparent") == f"00-{span.trace_id}-{span.span_id}-01"
    up.close()


async def test_unsampled_requests_create_no_span_and_are_forwarded_untouched(
    receiver: OtlpReceiver,
) -> None:
    up = await FakeUpstream("v1").start()
    config = traced(
        listener(route("c"), clusters=[cluster("c", up.port)]), receiver, random_sampling=0
    )
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        for i in range(20):
            await client.call(i, {"seq": str(i)})
        # A caller that says "not sampled" is obeyed even when sampled here.
        await client.call(20, {"traceparent": f"00-{TID}-{SID}-00", "x-envoy-force-trace": "1"})
        # A forced request is traced; once its span arrives, any earlier one would have too.
        await client.call(21, {"x-envoy-force-trace": "1"})
        spans = await exported(receiver, 1)
        await client.close()
    assert len(spans) == 1
    assert spans[0].attributes["request metadata: x-envoy-force-trace"] == "1"
    assert spans[0].attributes["guid:x-request-id"][14] == "a"
    assert spans[0].parent_span_id == ""
    for md in up.received[:20]:
        assert not md.has_string("traceparent")
        assert not md.has_string("x-request-id")
    assert up.received[20].get_string("traceparent") == f"00-{TID}-{SID}-00"
    up.close()


async def test_local_reply_ends_the_span_with_the_error(receiver: OtlpReceiver) -> None:
    config = traced(listener(route("missing")), receiver)
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        reply = await client.call(3, {"method": "m"})
        assert is_error(reply, "CLUSTER_NOT_FOUND")
        (span,) = await exported(receiver, 1)
        await client.close()
    assert span.kind == SERVER
    assert span.name.startswith("ingress")
    assert span.status_code == STATUS_ERROR
    assert span.attributes["error"] is True
    assert span.attributes["local_error"] == "CLUSTER_NOT_FOUND"
    assert "unknown cluster" in span.attributes["local_error.message"]
    assert span.attributes["attempts"] == 0


async def test_spans_of_a_proxy_that_is_gone_still_arrive(receiver: OtlpReceiver) -> None:
    """The provider does not keep its proxy alive; when the proxy is collected, the provider
    flushes what it holds (here: a span the 5 s flush interval would not have sent yet)."""
    up = await FakeUpstream("v1").start()
    config = traced(listener(route("c"), clusters=[cluster("c", up.port)]), receiver)
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        await client.call(4, {"method": "m"})
        await client.close()
        clusters = weakref.ref(server.clusters)
    del server
    gc.collect()
    assert clusters() is None
    (span,) = await receiver.wait_spans(1)
    assert span.attributes["request metadata: method"] == "m"
    up.close()


@pytest.mark.parametrize(
    ("direction", "kind", "name"),
    [("OUTBOUND", CLIENT, "egress m"), ("INBOUND", SERVER, "ingress m")],
)
async def test_listener_direction_names_the_span_and_its_kind(
    receiver: OtlpReceiver, direction: str, kind: int, name: str
) -> None:
    up = await FakeUpstream("v1").start()
    config = traced(listener(route("c"), clusters=[cluster("c", up.port)]), receiver, direction)
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        await client.call(5, {"method": "m"})
        (span,) = await exported(receiver, 1)
        await client.close()
    assert (span.kind, span.name) == (kind, name)
    up.close()


async def test_bootstrap_provider_serves_a_tracing_block_without_one(
    receiver: OtlpReceiver,
) -> None:
    up = await FakeUpstream("v1").start()
    config = traced(listener(route("c"), clusters=[cluster("c", up.port)]), receiver)
    first = config.listeners[0]
    tracing = dataclasses.replace(first.proxy.tracing or TracingConfig(), provider=None)
    bare = dataclasses.replace(first, proxy=dataclasses.replace(first.proxy, tracing=tracing))
    config = dataclasses.replace(
        config,
        listeners=(bare,),
        tracing_provider=OtlpProviderConfig(cluster="otlp", service_name="from-bootstrap"),
    )
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        await client.call(6, {"method": "m"})
        (span,) = await exported(receiver, 1)
        await client.close()
    assert span.resource["service.name"] == "from-bootstrap"
    assert up.received[0].get_string("traceparent").split("-")[2] == span.span_id
    up.close()


async def test_tracing_without_any_provider_changes_nothing(receiver: OtlpReceiver) -> None:
    up = await FakeUpstream("v1").start()
    config = listener(route("c"), clusters=[cluster("c", up.port)])
    first = config.listeners[0]
    proxy = dataclasses.replace(first.proxy, tracing=TracingConfig())
    config = dataclasses.replace(config, listeners=(dataclasses.replace(first, proxy=proxy),))
    async with running(config) as server:
        runtime = server.listeners[0].runtime
        hooks = (*runtime.observers, *runtime.decoder_filters)
        assert not any(isinstance(hook, RequestTracer) for hook in hooks)
        client = await FakeClient().connect(server.listeners[0].port)
        await client.call(7, {"method": "m"})
        await client.close()
    assert not up.received[0].has_string("traceparent")
    up.close()


async def test_retries_are_counted_on_the_span(receiver: OtlpReceiver) -> None:
    v1, v2 = await FakeUpstream("v1").start(), await FakeUpstream("v2").start()
    policy = RetryPolicyConfig(num_retries=1, retry_on=RetryOn.ERROR_RESPONSE)
    config = traced(
        listener(route("c", retry_policy=policy), clusters=[cluster("c", v1.port, v2.port)]),
        receiver,
    )
    async with running(config) as server:
        client = await FakeClient().connect(server.listeners[0].port)
        # Round robin over two hosts: one of two requests starts on v1, fails, moves to v2.
        replies = [await client.call(i, {"fail-on": "v1"}) for i in (8, 9)]
        spans = await exported(receiver, 2)
        await client.close()
    assert [r.get_string("server") for r in replies] == ["v2", "v2"]
    assert {s.attributes["upstream_host"] for s in spans} == {f"127.0.0.1:{v2.port}"}
    assert sorted(s.attributes["retry_count"] for s in spans)[-1] == 1
    assert all(s.attributes["attempts"] == s.attributes["retry_count"] + 1 for s in spans)
    v1.close()
    v2.close()


async def test_the_next_proxy_follows_the_decision_and_continues_the_trace(
    receiver: OtlpReceiver,
) -> None:
    """Client side samples 100 %, server side 0 %: the server side still traces the request
    (the decision travels packed in x-request-id) and its span is the client side's child."""
    up = await FakeUpstream("server").start()
    inbound = traced(
        listener(route("app"), clusters=[cluster("app", up.port)]),
        receiver,
        "INBOUND",
        random_sampling=0,
    )
    async with running(inbound) as server_side:
        outbound = traced(
            listener(route("mesh"), clusters=[cluster("mesh", server_side.listeners[0].port)]),
            receiver,
            "OUTBOUND",
        )
        async with running(outbound) as client_side:
            client = await FakeClient().connect(client_side.listeners[0].port)
            reply = await client.call(10, {"method": "m", "traceparent": f"00-{TID}-{SID}-01"})
            assert reply.get_string("server") == "server"
            spans = await exported(receiver, 2)
            await client.close()
    by_kind = {s.kind: s for s in spans}
    egress, ingress = by_kind[CLIENT], by_kind[SERVER]
    assert (egress.trace_id, egress.parent_span_id) == (TID, SID)
    assert (ingress.trace_id, ingress.parent_span_id) == (TID, egress.span_id)
    rid = egress.attributes["guid:x-request-id"]
    assert ingress.attributes["guid:x-request-id"] == rid
    assert up.received[0].get_string("traceparent") == f"00-{TID}-{ingress.span_id}-01"
    assert up.received[0].get_string("x-request-id") == rid
    up.close()
