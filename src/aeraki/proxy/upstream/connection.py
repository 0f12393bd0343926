"""One TCP connection to an upstream host, speaking the listener's codec.

Two modes, chosen by the listener's ``protocol.multiplexing`` (reference §5, §7):

* **exclusive** — one request in flight; the connection goes back to its pool's idle list
  when the response arrives. A request abandoned with its response outstanding closes the
  connection, so a stale response can never reach the next request (fixes §33.9).
* **multiplexed** — many requests in flight, responses matched by request id, out of order;
  every response in one read is processed (fixes §33.7).

Writes are coalesced: everything written during one event-loop tick goes out in a single
``transport.write`` (DESIGN §4 rule 1).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol, cast

from aeraki.codec.api import Codec, ErrorType, MessageType, Metadata, Side
from aeraki.errors import CodecError
from aeraki.proxy.writes import CoalescedWriter

if TYPE_CHECKING:
    from aeraki.proxy.upstream.host import Host
    from aeraki.proxy.upstream.pool import HostPool

__all__ = ["UpstreamConnection", "UpstreamRequest"]

log = logging.getLogger(__name__)

#: Bound once: an enum member lookup per response costs ~70 ns on CPython 3.11.
_HEARTBEAT = MessageType.HEARTBEAT


class UpstreamRequest(Protocol):
    """What an upstream connection needs from a request it carries."""

    def on_upstream_response(self, response: Metadata, connection: UpstreamConnection) -> None:
        """The response to this request arrived."""

    def on_upstream_failure(self, error_type: ErrorType, message: str) -> None:
        """The connection failed before the response arrived."""


class UpstreamConnection(CoalescedWriter, asyncio.Protocol):
    """A connection to ``host``; created by a :class:`HostPool`."""

    def __init__(self, pool: HostPool, codec_cls: type[Codec], *, multiplexed: bool) -> None:
        self.pool = pool
        self.host: Host = pool.host
        self.codec = codec_cls(Side.RESPONSE)
        self.is_multiplexed = multiplexed
        self.transport: asyncio.Transport | None = None
        self.is_closed = False
        #: exclusive mode: the request in flight (``None`` when idle).
        self.current: UpstreamRequest | None = None
        #: multiplexed mode: upstream request id -> request.
        self.inflight: dict[int, UpstreamRequest] = {}
        self._next_id = 0
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look-alikes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.codec.decode(data)
        except CodecError as exc:
            log.warning("upstream %s: bad response bytes: %s", self.host.key, exc)
            self._fail_all(ErrorType.BAD_RESPONSE, str(exc))
            self.close()
            return
        for response in messages:
            if response.message_type is _HEARTBEAT:
                continue  # upstream heartbeats are swallowed (§9)
            self._dispatch(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        self.transport = None
        self.pool.on_connection_closed(self)
        if self.current is not None or self.inflight:
            self.pool.stats.upstream_cx_destroy_with_active_rq += 1
            self._fail_all(
                ErrorType.UNSPECIFIED,
                f"meta protocol upstream request: remote connection failure '{self.host.key}'",
            )

    # -- sending ------------------------------------------------------------------------
    def next_request_id(self) -> int:
        """A fresh id for a request on this multiplexed connection (wraps below 2**31 so
        protocols with 32-bit ids such as Thrift accept it)."""
        self._next_id = self._next_id % 0x7FFFFFFF + 1
        while self._next_id in self.inflight:
            self._next_id = self._next_id % 0x7FFFFFFF + 1
        return self._next_id

    def send(self, request: UpstreamRequest, data: bytes, request_id: int | None) -> None:
        """Write ``data``; register ``request`` for its response unless ``request_id`` is
        ``None`` (one-way) — in exclusive mode a one-way request leaves the connection idle."""
        if request_id is not None:
            if self.is_multiplexed:
                self.inflight[request_id] = request
            else:
                self.current = request
        self.write(data)

    # -- receiving ----------------------------------------------------------------------
    def _dispatch(self, response: Metadata) -> None:
        if self.is_multiplexed:
            request = self.inflight.pop(response.request_id, None)
            if request is None:
                log.debug(
                    "upstream %s: response for unknown id %d dropped",
                    self.host.key,
                    response.request_id,
                )
                return
            request.on_upstream_response(response, self)
            # A retired pool's connection, or one past its request cap, closes with its
            # last response.
            if not self.inflight and (self.pool.is_retired or self in self.pool.draining):
                self.close()
            return
        request = self.current
        if request is None:
            log.warning("upstream %s: unsolicited response, closing", self.host.key)
            self.close()
            return
        self.current = None
        request.on_upstream_response(response, self)

    def abandon(self, request: UpstreamRequest, request_id: int | None) -> None:
        """``request`` no longer wants its response (timeout, client gone)."""
        if self.is_multiplexed:
            if request_id is not None:
                self.inflight.pop(request_id, None)
            return
        if self.current is request:
            self.current = None
            self.close()  # a late response must not reach the next request (§33.9)

    def _fail_all(self, error_type: ErrorType, message: str) -> None:
        waiting = list(self.inflight.values())
        self.inflight.clear()
        if self.current is not None:
            waiting.append(self.current)
            self.current = None
        for request in waiting:
            request.on_upstream_failure(error_type, message)

    def close(self) -> None:
        """Close now, dropping unsent bytes."""
        if self.transport is not None and not self.is_closed:
            self.is_closed = True
            self.transport.abort()

    @property
    def is_idle(self) -> bool:
        """Whether the connection carries nothing and can take a request."""
        return not self.is_closed and self.current is None and not self.inflight

    def __repr__(self) -> str:
        mode = "mux" if self.is_multiplexed else "exclusive"
        busy = len(self.inflight) if self.is_multiplexed else int(self.current is not None)
        return f"<UpstreamConnection {self.host.key} {mode} inflight={busy}>"
