"""The admin HTTP endpoint: ``/ready``, ``/config_dump``, ``/stats``, ``/clusters``.

A deliberately tiny HTTP/1.1 server on asyncio streams (GET only, one response per
connection): the admin port is for humans, probes and scrapers, not for load, and this
keeps the data plane free of a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aeraki.proxy.server import ProxyServer

__all__ = ["AdminServer"]

log = logging.getLogger(__name__)

#: An admin request line + headers larger than this is refused (no one needs more).
MAX_REQUEST_BYTES = 16 * 1024
#: Seconds a client may take to send its request.
READ_TIMEOUT = 5.0

Handler = Callable[["ProxyServer"], tuple[int, str, str]]


def _ready(proxy: ProxyServer) -> tuple[int, str, str]:
    if proxy.is_ready:
        return 200, "text/plain", "LIVE\n"
    return 503, "text/plain", "PRE_INITIALIZING\n" if not proxy.is_draining else "DRAINING\n"


def _config_dump(proxy: ProxyServer) -> tuple[int, str, str]:
    return 200, "application/json", json.dumps(proxy.config_dump(), indent=2) + "\n"


def _stats(proxy: ProxyServer) -> tuple[int, str, str]:
    lines = [f"{name}: {value}" for name, value in sorted(proxy.stats().items())]
    return 200, "text/plain", "\n".join(lines) + "\n"


def _stats_json(proxy: ProxyServer) -> tuple[int, str, str]:
    return 200, "application/json", json.dumps(proxy.stats(), indent=2, sort_keys=True) + "\n"


def _clusters(proxy: ProxyServer) -> tuple[int, str, str]:
    lines = []
    for cluster in proxy.clusters.clusters.values():
        for host in cluster.hosts:
            prefix = f"{cluster.name}::{host.key}"
            lines.append(f"{prefix}::health_flags::{'healthy' if host.healthy else 'failed'}")
            lines.append(f"{prefix}::weight::{host.weight}")
            lines.append(f"{prefix}::rq_active::{host.active_requests}")
    return 200, "text/plain", "\n".join(lines) + "\n"


ROUTES: dict[str, Handler] = {
    "/ready": _ready,
    "/config_dump": _config_dump,
    "/stats": _stats,
    "/stats?format=json": _stats_json,
    "/clusters": _clusters,
}


class AdminServer:
    """Serves :data:`ROUTES` for one proxy."""

    def __init__(self, proxy: ProxyServer) -> None:
        self.proxy = proxy
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind and serve."""
        self.server = await asyncio.start_server(self._handle, host, port)

    @property
    def port(self) -> int:
        """The bound port."""
        assert self.server is not None and self.server.sockets
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, content_type, body = self._dispatch(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, content_type, body = 400, "text/plain", "bad request\n"
        except ConnectionError:
            writer.close()
            return
        payload = body.encode()
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _dispatch(self, head: bytes) -> tuple[int, str, str]:
        if len(head) > MAX_REQUEST_BYTES:
            return 400, "text/plain", "request too large\n"
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return 405, "text/plain", "only GET is supported\n"
        handler = ROUTES.get(parts[1])
        if handler is None:
            known = " ".join(sorted(ROUTES))
            return 404, "text/plain", f"unknown path {parts[1]}; try: {known}\n"
        return handler(self.proxy)

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.close()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
