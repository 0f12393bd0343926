"""The ADS gRPC server (grpc.aio): SotW and delta streams fed from a :class:`SnapshotCache`.

Plumbing only — the protocol rules live in :mod:`aeraki.control.xds.streams`. Each stream runs
one loop fed by an inbox that receives the client's requests (from a reader task) and a
"snapshot changed" mark (from the cache watch). The loop owns the stream's state, so no lock is
needed, and a burst of snapshot changes while the loop is busy collapses into one mark.

The server is protocol-agnostic: it serves whatever type URLs the snapshot holds (Envoy's LDS,
CDS, EDS, RDS and Aeraki's MetaProtocol routes alike) to whoever subscribes to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from aeraki.control.xds.cache import SnapshotCache
from aeraki.control.xds.streams import DeltaStream, Outcome, ProxyStatus, SotwStream

__all__ = ["XdsCallbacks", "XdsServer", "XdsStats"]

log = logging.getLogger(__name__)

_CHANGED = object()  # inbox mark: the stream's snapshot changed
_CLOSED = object()  # inbox mark: the client half-closed or the stream broke


class XdsCallbacks:
    """Hooks for the push pipeline and the status view; override what you need.

    Called on the event loop, inside the stream's loop: keep them short and never block.
    ``on_stream_open`` is where a push pipeline learns of a new node and builds its snapshot
    (the stream waits, answering nothing, until one is set).
    """

    def on_stream_open(self, status: ProxyStatus) -> None:
        """A stream sent its first request (its node is known)."""

    def on_stream_closed(self, status: ProxyStatus) -> None:
        """A stream ended (client gone, server stopping)."""

    def on_ack(self, status: ProxyStatus, type_url: str, version: str) -> None:
        """The proxy accepted ``version`` of ``type_url``."""

    def on_nack(self, status: ProxyStatus, type_url: str, version: str, reason: str) -> None:
        """The proxy rejected ``version`` of ``type_url`` and keeps its previous config."""


#: See ``XdsServer._send_slots``.
MAX_CONCURRENT_SENDS = 8


@dataclass(slots=True)
class XdsStats:
    """Counters of the server since it was created (names follow Envoy's style)."""

    streams_total: int = 0
    requests_total: int = 0
    responses_total: int = 0
    acks_total: int = 0
    nacks_total: int = 0
    stale_total: int = 0


class XdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """ADS over gRPC for every node in ``cache``.

    Args:
        cache: where the streams read their node's snapshot.
        callbacks: optional hooks (:class:`XdsCallbacks`).
    """

    def __init__(self, cache: SnapshotCache, callbacks: XdsCallbacks | None = None) -> None:
        self.cache = cache
        self.callbacks = callbacks or XdsCallbacks()
        self.stats = XdsStats()
        #: How many streams may build and send responses at the same time. A state-of-the-
        #: world response carries every subscribed resource (megabytes for 1,000 services);
        #: 100 proxies reconnecting at once would otherwise hold 100 such copies plus their
        #: gRPC buffers (about 200 MB measured). Sends are fast, so the wait is short.
        self._send_slots = asyncio.Semaphore(MAX_CONCURRENT_SENDS)
        self._streams: dict[int, SotwStream | DeltaStream] = {}
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self._port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the ADS service on an existing grpc.aio server (to share its port)."""
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, server)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = a free port) and return the bound port.

        Raises:
            RuntimeError: already started, or the address could not be bound.
        """
        if self._server is not None:
            raise RuntimeError("xDS server already started")
        server = grpc.aio.server()
        self.add_to_server(server)
        bound = server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise RuntimeError(f"xDS server could not bind {host}:{port}")
        await server.start()
        self._server, self._port = server, bound
        log.info("xds: serving ADS on %s:%d", host, bound)
        return bound

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening; open streams end after ``grace`` seconds (None = at once)."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    def proxies(self) -> list[ProxyStatus]:
        """Every connected stream whose node is known, by stream id."""
        return [s.status() for _, s in sorted(self._streams.items()) if s.node is not None]

    # --- gRPC methods ------------------------------------------------------------------------

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = SotwStream(next(self._ids), context.peer())
        async for resp in self._serve(stream, request_iterator):
            yield resp

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        stream = DeltaStream(next(self._ids), context.peer())
        async for resp in self._serve(stream, request_iterator):
            yield resp

    # --- the stream loop ---------------------------------------------------------------------

    async def _serve(self, stream: Any, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Run one stream: apply requests and snapshot changes, yield what is owed."""
        inbox: asyncio.Queue[object] = asyncio.Queue()
        changed = [False]  # a change mark is already queued (coalesce bursts)

        def wake(_key: str) -> None:
            if not changed[0]:
                changed[0] = True
                inbox.put_nowait(_CHANGED)

        reader = asyncio.create_task(_read(requests, inbox))
        unwatch: Callable[[], None] | None = None
        self.stats.streams_total += 1
        self._streams[stream.stream_id] = stream
        try:
            while (item := await inbox.get()) is not _CLOSED:
                if item is _CHANGED:
                    changed[0] = False
                else:
                    if stream.node is None:
                        unwatch = self._bind(stream, item, wake)
                    self._on_request(stream, item)
                snapshot = self.cache.get_snapshot(stream.node_key)
                if snapshot is None:
                    continue  # wait for the push pipeline to build this node's snapshot
                async with self._send_slots:  # bounds the responses alive at once (memory)
                    for resp in stream.responses(snapshot):
                        self.stats.responses_total += 1
                        yield resp
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if unwatch is not None:
                unwatch()
            del self._streams[stream.stream_id]
            if stream.node is not None:
                log.info("xds: %s stream closed for %s", stream.kind.value, stream.node.id)
                self.callbacks.on_stream_closed(stream.status())

    def _bind(self, stream: Any, req: Any, wake: Callable[[str], None]) -> Callable[[], None]:
        stream.bind(req.node, self.cache.node_key(req.node))
        log.info(
            "xds: %s stream from %s (node %r, key %r)",
            stream.kind.value,
            stream.peer,
            req.node.id,
            stream.node_key,
        )
        self.callbacks.on_stream_open(stream.status())
        return self.cache.watch(stream.node_key, wake)

    def _on_request(self, stream: Any, req: Any) -> None:
        self.stats.requests_total += 1
        outcome: Outcome = stream.on_request(req)
        if outcome is Outcome.STALE:
            self.stats.stale_total += 1
            return
        if outcome is Outcome.REQUEST:
            return
        type_status = stream.type_status(req.type_url)
        if outcome is Outcome.ACK:
            self.stats.acks_total += 1
            self.callbacks.on_ack(stream.status(), req.type_url, type_status.acked_version)
            return
        self.stats.nacks_total += 1
        reason = type_status.last_nack_reason
        log.warning(
            "xds: node %r rejected %s version %s: %s",
            stream.node.id,
            req.type_url,
            type_status.last_nack_version,
            reason,
        )
        self.callbacks.on_nack(stream.status(), req.type_url, type_status.last_nack_version, reason)


async def _read(requests: AsyncIterator[Any], inbox: asyncio.Queue[object]) -> None:
    """Move the client's requests into the stream's inbox; mark the end however it comes."""
    try:
        async for req in requests:
            inbox.put_nowait(req)
    except asyncio.CancelledError:
        raise
    except Exception:  # the client went away mid-read: end the stream quietly
        log.debug("xds: request stream ended", exc_info=True)
    finally:
        inbox.put_nowait(_CLOSED)
