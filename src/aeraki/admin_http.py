"""A tiny admin HTTP/1.1 server shared by the proxy and the control plane.

GET (or HEAD) pages, one response per connection, handlers are plain functions returning
``(status, content type, body)`` (or a coroutine that does: the supervisor of several proxy
workers asks its workers before it answers): the admin port is for humans, probes and
scrapers, not for load, and this keeps both planes free of a web framework. A few *actions*
change state (the proxy's ``POST /logging?level=debug``, as Envoy's): POST only, so a scraper
or a browser's prefetch never triggers one, and they get the parsed query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["Action", "AdminHttpServer", "AsyncAction", "AsyncHandler", "Handler", "Response"]

#: An admin request line + headers larger than this is refused (no one needs more).
MAX_REQUEST_BYTES = 16 * 1024
#: Seconds a client may take to send its request.
READ_TIMEOUT = 5.0

Response = tuple[int, str, str]
Handler = Callable[[], Response]
#: A POST handler: gets the query string's parameters (last value of a repeated name wins).
Action = Callable[[Mapping[str, str]], Response]
#: Pages and actions that must wait for something (other processes) before they answer.
AsyncHandler = Callable[[], Awaitable[Response]]
AsyncAction = Callable[[Mapping[str, str]], Awaitable[Response]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class AdminHttpServer:
    """Serves ``routes`` (GET; exact path, query included, -> handler) and ``actions``
    (POST; path without the query -> action)."""

    def __init__(
        self,
        routes: Mapping[str, Handler | AsyncHandler],
        actions: Mapping[str, Action | AsyncAction] | None = None,
    ) -> None:
        self.routes: dict[str, Handler | AsyncHandler] = dict(routes)
        self.actions: dict[str, Action | AsyncAction] = dict(actions or {})
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
            answer = self._dispatch(head)
            if inspect.isawaitable(answer):
                answer = await answer
            status, content_type, body = answer
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

    def _dispatch(self, head: bytes) -> Response | Awaitable[Response]:
        if len(head) > MAX_REQUEST_BYTES:
            return 400, "text/plain", "request too large\n"
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) == 3 and parts[0] == "POST":
            return self._act(parts[1])
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return 405, "text/plain", "only GET (and POST for actions) is supported\n"
        handler = self.routes.get(parts[1])
        if handler is None:
            known = " ".join(sorted(self.routes))
            return 404, "text/plain", f"unknown path {parts[1]}; try: {known}\n"
        return handler()

    def _act(self, target: str) -> Response | Awaitable[Response]:
        path, _, query = target.partition("?")
        action = self.actions.get(path)
        if action is None:
            known = " ".join(sorted(self.actions)) or "none"
            return 404, "text/plain", f"unknown action {path}; POST actions: {known}\n"
        return action(dict(urllib.parse.parse_qsl(query, keep_blank_values=True)))

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.close()
