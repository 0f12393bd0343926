"""An OTLP/gRPC trace receiver for tests: the real ``TraceService/Export`` (opentelemetry-proto)
served by grpc.aio on 127.0.0.1, keeping every span it is sent.

    async with otlp_receiver() as receiver:
        ... point a tracer at 127.0.0.1:receiver.port ...
        spans = await receiver.wait_spans(2)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc.aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.integration.peers.procs import LOOPBACK

__all__ = ["OtlpReceiver", "ReceivedSpan", "otlp_receiver"]

#: Bound on every wait for spans (export batches leave on the flush interval).
WAIT_TIMEOUT = 15.0


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived: ids in lower-case hex, attributes as plain values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0

    @classmethod
    def of(cls, span: trace_pb2.Span, resource: dict[str, Any]) -> ReceivedSpan:
        return cls(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            kind=span.kind,
            attributes={a.key: _value(a.value) for a in span.attributes},
            status_code=span.status.code,
            status_message=span.status.message,
            resource=resource,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
        )


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps the spans of every Export call, in arrival order."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exports = 0
        self.port = 0
        self._changed = asyncio.Condition()

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(ReceivedSpan.of(s, resource) for s in scope_spans.spans)
        self.exports += 1
        async with self._changed:
            self._changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool]) -> list[ReceivedSpan]:
        """The spans once ``predicate(spans)`` holds (bounded by :data:`WAIT_TIMEOUT`)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: predicate(self.spans)), WAIT_TIMEOUT
            )
        return list(self.spans)

    async def wait_spans(self, count: int) -> list[ReceivedSpan]:
        """The spans once at least ``count`` have arrived (bounded wait)."""
        return await self.wait_for(lambda spans: len(spans) >= count)


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """A running receiver on a free 127.0.0.1 port, stopped on exit."""
    receiver = OtlpReceiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    receiver.port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    try:
        yield receiver
    finally:
        await server.stop(0)
