"""A tiny admin HTTP/1.1 server shared by the proxy and the control plane.

GET (or HEAD) only, one response per connection, handlers are plain functions returning
``(status, content type, body)``: the admin port is for humans, probes and scrapers, not for
load, and this keeps both planes free of a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

__all__ = ["AdminHttpServer", "Handler", "Response"]

#: An admin request line + headers larger than this is refused (no one needs more).
MAX_REQUEST_BYTES = 16 * 1024
#: Seconds a client may take to send its request.
READ_TIMEOUT = 5.0

Response = tuple[int, str, str]
Handler = Callable[[], Response]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class AdminHttpServer:
    """Serves ``routes`` (exact path, query included, -> handler)."""

    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self.routes = dict(routes)
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind and serve.

        Raises:
            OSError: the address cannot be bound.
        """
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

    def _dispatch(self, head: bytes) -> Response:
        if len(head) > MAX_REQUEST_BYTES:
            return 400, "text/plain", "request too large\n"
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return 405, "text/plain", "only GET is supported\n"
        handler = self.routes.get(parts[1])
        if handler is None:
            known = " ".join(sorted(self.routes))
            return 404, "text/plain", f"unknown path {parts[1]}; try: {known}\n"
        return handler()

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.close()
