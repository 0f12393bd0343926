"""Microbenchmark: what tracing costs a request (µs per request, best of several runs).

The tracer runs twice per request: as the first decoder filter (decide; if traced, start the
span and write the context into the upstream request) and as a request observer (end the
span). Rows:

* ``unsampled`` — tracing configured at 0 % (Thrift-like metadata, properties eager);
* ``unsampled dubbo (+attachments)`` — the same on a freshly decoded Dubbo request: the
  decision reads ``x-request-id``, so the deferred attachments are scanned (decode-only cost
  subtracted);
* ``sampled`` — 100 %: span start with attributes, context injection, end, hand-off to the
  batch processor (export itself runs in the processor's thread and is not counted).

    .venv/bin/python -m benchmarks.tracing_cost [--requests 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from aeraki.codec.api import Metadata, Side
from aeraki.codec.dubbo.codec import DubboCodec
from aeraki.proxy.config import TracingConfig
from aeraki.proxy.observe.tracing import RequestTracer
from tests.integration.peers.dubbo import request_frame


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Downstream:
    peer = "127.0.0.1:40000"


class _Request:
    """The attributes of ``ActiveRequest`` the tracer reads."""

    __slots__ = (
        "attempts",
        "cluster_name",
        "downstream",
        "ended",
        "is_oneway",
        "last_host",
        "local_error",
        "metadata",
        "mutation",
        "response",
        "started",
    )

    def __init__(self, metadata: Metadata, response: Metadata) -> None:
        self.metadata = metadata
        self.downstream = _Downstream()
        self.started = time.monotonic()
        self.ended = self.started + 0.0005
        self.mutation: dict[str, str] = {}
        self.cluster_name = "outbound|9090||echo"
        self.last_host = None
        self.attempts = 1
        self.response: Metadata | None = response
        self.local_error = None
        self.is_oneway = False


def _thrift_like() -> Metadata:
    md = Metadata(request_id=7, origin=b"x" * 120)
    md.operation_name = "Echo/echo"
    for key, value in (("method", "echo"), ("service", "Echo"), ("version", "v1"), ("a", "b")):
        md.put_string(key, value)
    return md


def _tracer(random_sampling: int) -> RequestTracer:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=1 << 16))
    config = TracingConfig(random_sampling=random_sampling)
    return RequestTracer(
        config, provider.get_tracer("bench"), direction="ingress", protocol="thrift"
    )


def _per_request(fn: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n, repeat = args.requests, args.repeat
    response = Metadata()
    rows: dict[str, float] = {}

    def run(tracer: RequestTracer, make: Callable[[], Metadata]) -> Callable[[int], None]:
        def loop(count: int) -> None:
            for _ in range(count):
                request: Any = _Request(make(), response)
                tracer.on_request(request)
                tracer.on_request_done(request)

        return loop

    def baseline(make: Callable[[], Metadata]) -> Callable[[int], None]:
        def loop(count: int) -> None:
            for _ in range(count):
                _Request(make(), response)

        return loop

    shared = _thrift_like()
    empty = _per_request(baseline(lambda: shared), n, repeat)
    rows["unsampled"] = _per_request(run(_tracer(0), lambda: shared), n, repeat) - empty

    frame = request_frame(
        1, "sayHello", ["world"], attachments={"k1": "v1", "k2": "v2", "trace-tag": "x"}
    )
    codec = DubboCodec(Side.REQUEST)

    def dubbo() -> Metadata:
        (md,) = codec.decode(frame)
        return md

    decoded = _per_request(baseline(dubbo), n, repeat)
    rows["unsampled dubbo (+attachments)"] = (
        _per_request(run(_tracer(0), dubbo), n, repeat) - decoded
    )
    rows["sampled"] = _per_request(run(_tracer(10_000), _thrift_like), n, repeat) - _per_request(
        baseline(_thrift_like), n, repeat
    )
    for name, micros in rows.items():
        print(f"{name:34} {micros:6.2f} µs/request")


if __name__ == "__main__":
    main()
