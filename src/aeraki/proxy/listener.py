"""Listeners: accept connections and hold the per-listener runtime state.

A :class:`ListenerRuntime` is what every downstream connection of a listener reads per
message: the codec class, the compiled route table, the filters, the clusters and the
stats. The route table is swapped atomically (``set_route_table``), so a route update
applies to the next message on every open connection without disturbing it, while
in-flight requests keep the route they resolved (reference §15).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import Any

from aeraki.codec.api import Side
from aeraki.codec.registry import resolve_codec
from aeraki.proxy.config import ListenerConfig, OtlpProviderConfig
from aeraki.proxy.connection import DownstreamConnection
from aeraki.proxy.filters.api import (
    DecoderFilter,
    EncoderFilter,
    RequestObserver,
    build_filters,
)
from aeraki.proxy.observe.metrics import RequestMetrics
from aeraki.proxy.routing import RouteTable
from aeraki.proxy.stats import ListenerStats
from aeraki.proxy.upstream.cluster import ClusterManager

__all__ = ["Listener", "ListenerRuntime"]

log = logging.getLogger(__name__)


class ListenerRuntime:
    """Everything the connections of one listener share."""

    def __init__(
        self,
        config: ListenerConfig,
        clusters: ClusterManager,
        *,
        node_id: str = "",
        node_metadata: Mapping[str, Any] | None = None,
        tracing_provider: OtlpProviderConfig | None = None,
    ) -> None:
        proxy = config.proxy
        self.config = config
        self.name = config.name
        #: the proxy's own ``node`` (metadata exchange and Istio metrics label with it).
        self.node_id = node_id
        self.node_metadata: Mapping[str, Any] = node_metadata or {}
        self.application_protocol = proxy.application_protocol
        self.codec_cls = resolve_codec(proxy.codec)
        self.codec_side = Side.REQUEST
        self.multiplexed = proxy.multiplexing
        #: share one upstream connection per host among all clients when the codec can
        #: give requests unique ids; otherwise one per client connection (reference §5).
        self.rewrites_ids = self.codec_cls.capabilities.rewrites_request_id
        self.clusters = clusters
        self.stats = ListenerStats()
        self.route_table: RouteTable | None = (
            RouteTable.compile(proxy.route_table) if proxy.route_table is not None else None
        )
        self.decoder_filters: list[DecoderFilter] = []
        self.encoder_filters: list[EncoderFilter] = []
        self.decoder_filters, self.encoder_filters = build_filters(
            tuple((f.name, f.config) for f in proxy.filters), self
        )
        #: told about every request when it ends (access logs, metrics, tracing); empty
        #: costs the request path one truth test.
        self.observers: tuple[RequestObserver, ...] = (RequestMetrics(),)
        if proxy.access_logs:  # imported only by a proxy that logs
            from aeraki.proxy.observe.access_log import access_loggers

            self.observers += access_loggers(proxy.access_logs)
        if proxy.tracing is not None:  # the OpenTelemetry SDK loads only when tracing
            from aeraki.proxy.observe.tracing import RequestTracer

            tracer = RequestTracer.for_listener(proxy.tracing, self, tracing_provider)
            if tracer is not None:  # the first decoder filter: it decides and injects
                self.decoder_filters.insert(0, tracer)
                self.observers += (tracer,)
        self.connections: set[DownstreamConnection] = set()
        self._drained = asyncio.Event()
        self._drained.set()

    def set_route_table(self, table: RouteTable | None) -> None:
        """Swap in a new route table; the next message on every connection uses it."""
        self.route_table = table

    def shared_key(self, downstream: DownstreamConnection) -> object:
        """Key of the multiplexed upstream connection a request of ``downstream`` uses."""
        return None if self.rewrites_ids else downstream

    def on_connection_open(self, connection: DownstreamConnection) -> None:
        self.connections.add(connection)
        self.stats.cx_total += 1
        self.stats.cx_active += 1
        self._drained.clear()

    def on_connection_closed(self, connection: DownstreamConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.stats.cx_active -= 1
        if self.multiplexed and not self.rewrites_ids:
            for cluster in self.clusters.clusters.values():
                for pool in cluster.pools:
                    pool.drop_shared(connection)
        if not self.connections:
            self._drained.set()

    async def drain(self, grace: float) -> bool:
        """Let every connection finish its requests, then close it; ``False`` if
        ``grace`` seconds passed first (remaining connections are then closed at once)."""
        for connection in list(self.connections):
            connection.close_when_idle()
        try:
            await asyncio.wait_for(self._drained.wait(), grace)
            return True
        except TimeoutError:
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            return False


class Listener:
    """A listening socket feeding a :class:`ListenerRuntime`."""

    def __init__(self, runtime: ListenerRuntime) -> None:
        self.runtime = runtime
        self.server: asyncio.Server | None = None

    async def start(self, *, reuse_port: bool = False) -> None:
        """Bind and start accepting.

        Raises:
            OSError: the address cannot be bound (in use, not local, …).
        """
        address = self.runtime.config.address
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: DownstreamConnection(self.runtime),
            address.host,
            address.port,
            reuse_port=reuse_port or None,
            family=socket.AF_INET6 if ":" in address.host else socket.AF_INET,
            backlog=1024,
        )
        log.info("listener %s: accepting on %s", self.runtime.name, self.bound_address)

    @property
    def bound_address(self) -> str:
        """The bound ``host:port`` (useful with port 0)."""
        if self.server is None or not self.server.sockets:
            return ""
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def port(self) -> int:
        """The bound port."""
        assert self.server is not None and self.server.sockets
        return int(self.server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections carry on."""
        if self.server is not None:
            self.server.close()
