"""The tracing decision (reference §24) and trace-context parsing/writing, at unit level.

Sampling fractions are checked over 20,000 decisions with exact binomial bounds
(false-failure probability at most 1e-6 per assertion, any seed).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aeraki.codec.api import Metadata, Side
from aeraki.codec.dubbo.codec import DubboCodec
from aeraki.proxy.config import TracingConfig
from aeraki.proxy.observe.trace_context import (
    B3Form,
    ParentContext,
    extract,
    inject_keys,
    parse_b3_single,
    parse_traceparent,
)
from aeraki.proxy.observe.tracing import (
    CLIENT_FORCED,
    NOT_TRACEABLE,
    SAMPLING,
    SERVICE_FORCED,
    RequestTracer,
    Sampler,
    new_request_id,
)
from tests.integration.peers.dubbo import request_frame
from tests.proxy.upstream.lb.helpers import assert_binomial

N = 20_000
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


def traced_share(config: TracingConfig, strings: dict[str, str]) -> tuple[int, set[int]]:
    sampler = Sampler(config)
    reasons = [sampler.decide(dict(strings))[0] for _ in range(N)]
    return sum(1 for r in reasons if r), set(reasons)


@pytest.mark.parametrize(
    ("random_pct", "overall_pct", "expected"),
    [
        (25.0, 100.0, 0.25),
        (1.0, 100.0, 0.01),
        (100.0, 10.0, 0.10),
        # One stable_random serves both draws: 50 % then 20 % keeps 20 %, not 10 %.
        (50.0, 20.0, 0.20),
        (20.0, 50.0, 0.20),
        (0.0, 100.0, 0.0),
    ],
)
def test_random_and_overall_sampling(
    random_pct: float, overall_pct: float, expected: float
) -> None:
    config = TracingConfig(
        random_sampling=round(random_pct * 100), overall_sampling=round(overall_pct * 100)
    )
    count, reasons = traced_share(config, {})
    assert_binomial(count, N, expected, f"random {random_pct} overall {overall_pct}")
    assert reasons <= {NOT_TRACEABLE, SAMPLING}


def test_client_sampling_forces_with_its_own_draw() -> None:
    config = TracingConfig(client_sampling=30, random_sampling=0)
    count, reasons = traced_share(config, {"x-client-trace-id": "c-1"})
    assert_binomial(count, N, 0.30, "client sampling 30 %")
    assert reasons == {NOT_TRACEABLE, CLIENT_FORCED}
    # An empty x-client-trace-id is not a client id.
    assert traced_share(config, {"x-client-trace-id": ""})[0] == 0


def test_force_trace_bypasses_random_but_not_overall_sampling() -> None:
    forced = {"x-envoy-force-trace": "1"}
    count, reasons = traced_share(TracingConfig(random_sampling=0), forced)
    assert (count, reasons) == (N, {SERVICE_FORCED})
    count, _ = traced_share(TracingConfig(random_sampling=0, overall_sampling=1000), forced)
    assert_binomial(count, N, 0.10, "forced under 10 % overall")


@pytest.mark.parametrize(
    ("char", "reason"),
    [("9", SAMPLING), ("a", SERVICE_FORCED), ("b", CLIENT_FORCED), ("4", NOT_TRACEABLE)],
)
def test_incoming_request_id_decision_is_followed(char: str, reason: int) -> None:
    rid = f"12345678-90ab-{char}def-8123-456789abcdef"
    # Percentages do not matter for a request that carries a decision.
    for config in (TracingConfig(random_sampling=0, overall_sampling=0), TracingConfig()):
        assert Sampler(config).decide({"x-request-id": rid}) == (reason, rid)


def test_corrupted_request_id_is_not_traced() -> None:
    assert Sampler(TracingConfig()).decide({"x-request-id": "not-a-uuid"})[0] == NOT_TRACEABLE


@pytest.mark.parametrize("reason", [SAMPLING, SERVICE_FORCED, CLIENT_FORCED])
def test_new_request_id_packs_reason_and_stable_random(reason: int) -> None:
    rid = new_request_id(0xDEADBEEF, reason)
    assert len(rid) == 36
    assert [rid[i] for i in (8, 13, 18, 23)] == ["-"] * 4
    assert rid[19] in "89ab"
    # Read back as an incoming id, it carries the same decision; its stable_random is the
    # first 32 bits (Envoy: int(uuid[0:8], 16) % 10000).
    assert Sampler(TracingConfig()).decide({"x-request-id": rid})[0] == reason
    assert int(rid[:8], 16) == 0xDEADBEEF


def test_generated_id_agrees_with_the_decision() -> None:
    sampler = Sampler(TracingConfig(random_sampling=3000))
    ids = [rid for reason, rid in (sampler.decide({}) for _ in range(2000)) if reason]
    assert ids
    assert all(int(rid[:8], 16) % 10_000 < 3000 and rid[14] == "9" for rid in ids)


# -- trace context ------------------------------------------------------------------------------
def test_traceparent_parsing() -> None:
    parent = parse_traceparent(f"00-{TID}-{SID}-01", "k=v")
    assert parent == ParentContext(int(TID, 16), int(SID, 16), True, "k=v")
    unsampled = parse_traceparent(f"00-{TID}-{SID}-00")
    assert unsampled is not None
    assert unsampled.sampled is False
    # A future version is read by its first four fields.
    assert parse_traceparent(f"01-{TID}-{SID}-01-extra") is not None
    for bad in (
        f"ff-{TID}-{SID}-01",
        f"00-{'0' * 32}-{SID}-01",
        f"00-{TID}-{'0' * 16}-01",
        f"00-{TID.upper()}-{SID}-01",
        f"00-{TID}-{SID}-01-extra",
        f"00-{TID}-{SID}",
        "garbage",
    ):
        assert parse_traceparent(bad) is None, bad


def test_b3_single_parsing() -> None:
    assert parse_b3_single(f"{TID}-{SID}-1-{'1' * 16}") == ParentContext(
        int(TID, 16), int(SID, 16), True, b3=B3Form.SINGLE
    )
    short = parse_b3_single(f"{TID[16:]}-{SID}")
    assert short is not None
    assert (short.sampled, short.trace_id_hex_len) == (None, 16)
    debug = parse_b3_single(f"{TID}-{SID}-d")
    assert debug is not None
    assert debug.sampled is True
    for bad in ("0", "1", f"{TID}-{SID}-x", f"{TID}", f"{TID}-{SID}-1-{SID}-9"):
        assert parse_b3_single(bad) is None, bad


def test_extract_prefers_w3c_then_b3_single_then_multi() -> None:
    multi = {"x-b3-traceid": TID, "x-b3-spanid": SID, "x-b3-sampled": "0"}
    got = extract(multi)
    assert got is not None
    assert (got.b3, got.sampled) == (B3Form.MULTI, False)
    debug = extract({**multi, "x-b3-flags": "1"})
    assert debug is not None
    assert debug.sampled is True
    single = extract({**multi, "b3": f"{TID}-{'2' * 16}-1"})
    assert single is not None
    assert (single.b3, single.span_id) == (B3Form.SINGLE, int("2" * 16, 16))
    w3c = extract({**multi, "b3": "x", "traceparent": f"00-{TID}-{'3' * 16}-01"})
    assert w3c is not None
    assert (w3c.b3, w3c.span_id) == (B3Form.NONE, int("3" * 16, 16))
    # An invalid traceparent falls back to B3; nothing valid at all is no parent.
    fallback = extract({**multi, "traceparent": "bad"})
    assert fallback is not None
    assert fallback.b3 is B3Form.MULTI
    assert extract({"traceparent": "bad", "x-b3-traceid": "zz"}) is None
    assert extract({}) is None


def test_inject_w3c_always_and_b3_in_the_form_received() -> None:
    trace_id, span_id = int(TID, 16), 0xABC
    assert inject_keys(trace_id, span_id, None) == [("traceparent", f"00-{TID}-{span_id:016x}-01")]
    w3c = ParentContext(trace_id, int(SID, 16), True, "vendor=1")
    assert dict(inject_keys(trace_id, span_id, w3c))["tracestate"] == "vendor=1"
    multi = ParentContext(trace_id, int(SID, 16), None, b3=B3Form.MULTI, trace_id_hex_len=32)
    assert dict(inject_keys(trace_id, span_id, multi)) == {
        "traceparent": f"00-{TID}-{span_id:016x}-01",
        "x-b3-traceid": TID,
        "x-b3-spanid": f"{span_id:016x}",
        "x-b3-parentspanid": SID,
        "x-b3-sampled": "1",
    }
    short = ParentContext(int(TID[16:], 16), 1, True, b3=B3Form.SINGLE, trace_id_hex_len=16)
    assert dict(inject_keys(int(TID[16:], 16), span_id, short))["b3"] == (
        f"{TID[16:]}-{span_id:016x}-1-{1:016x}"
    )


# -- deferred properties (Dubbo attachments) ------------------------------------------------------
class _Downstream:
    peer = "127.0.0.1:40000"


class _Request:
    """What the tracer reads of an ``ActiveRequest``."""

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self.downstream = _Downstream()
        self.started = self.ended = time.monotonic()
        self.mutation: dict[str, str] = {}
        self.cluster_name = "c"
        self.last_host = None
        self.attempts = 1
        self.response: Metadata | None = Metadata()
        self.local_error = None
        self.is_oneway = False


def _dubbo_request(attachments: dict[str, str]) -> Any:
    (md,) = DubboCodec(Side.REQUEST).decode(request_frame(1, "whoami", attachments=attachments))
    assert md.deferred is not None  # attachments are deferred by the codec
    return _Request(md)


def _memory_tracer(random_sampling: int) -> tuple[RequestTracer, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    config = TracingConfig(random_sampling=random_sampling)
    tracer = RequestTracer(config, provider.get_tracer("t"), direction="ingress", protocol="dubbo")
    return tracer, memory


def test_unsampled_dubbo_request_does_not_load_its_attachments() -> None:
    tracer, memory = _memory_tracer(0)
    request = _dubbo_request({"k": "v"})
    tracer.on_request(request)
    tracer.on_request_done(request)
    assert request.metadata.deferred is not None
    assert (request.mutation, memory.get_finished_spans()) == ({}, ())


@pytest.mark.parametrize("key", ["x-request-id", "X-Request-Id"])
def test_dubbo_decision_in_attachments_is_still_followed(key: str) -> None:
    tracer, memory = _memory_tracer(0)
    rid = "12345678-90ab-9def-8123-456789abcdef"
    request = _dubbo_request({key: rid, "traceparent": f"00-{TID}-{SID}-01"})
    tracer.on_request(request)
    tracer.on_request_done(request)
    (span,) = memory.get_finished_spans()
    assert span.context is not None
    assert span.parent is not None
    assert (span.context.trace_id, span.parent.span_id) == (int(TID, 16), int(SID, 16))
    assert request.mutation["traceparent"] == f"00-{TID}-{span.context.span_id:016x}-01"
    assert "x-request-id" not in request.mutation  # the client's id travels as it was


def test_sampled_dubbo_request_loads_attachments_for_its_parent() -> None:
    tracer, memory = _memory_tracer(10_000)
    request = _dubbo_request({"traceparent": f"00-{TID}-{SID}-01"})
    tracer.on_request(request)
    tracer.on_request_done(request)
    (span,) = memory.get_finished_spans()
    assert span.parent is not None
    assert span.parent.span_id == int(SID, 16)
    assert request.mutation["x-request-id"][14] == "9"
