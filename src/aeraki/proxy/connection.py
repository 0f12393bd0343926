"""The driver of one downstream (client) connection: bytes -> codec -> requests -> bytes.

Reference §3 (request path), §9 (heartbeats), §12 (idle timeout and close). Bad bytes
from a client close that connection alone, with a log line. Everything written to the
client during one event-loop tick leaves in a single write (DESIGN §4 rule 1).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from aeraki.codec.api import LocalError, MessageType, Metadata
from aeraki.errors import CodecError
from aeraki.proxy.request import ActiveRequest
from aeraki.proxy.writes import CoalescedWriter

if TYPE_CHECKING:
    from aeraki.proxy.filters.api import EncoderFilter
    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.upstream.connection import UpstreamConnection

__all__ = ["DownstreamConnection"]

log = logging.getLogger(__name__)

_REQUEST = MessageType.REQUEST
_ONEWAY = MessageType.ONEWAY
_HEARTBEAT = MessageType.HEARTBEAT


class DownstreamConnection(CoalescedWriter, asyncio.Protocol):
    """One accepted client connection on a listener."""

    def __init__(self, listener: ListenerRuntime) -> None:
        self.listener = listener
        self.codec = listener.codec_cls(listener.codec_side)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.active: set[ActiveRequest] = set()
        self.is_closing = False
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._last_read = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look-alikes.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.listener.on_connection_open(self)
        idle = self.listener.config.proxy.idle_timeout
        if idle:
            self._last_read = self._loop.time()
            self._idle_timer = self._loop.call_later(idle, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._idle_timer is not None:  # only the idle check reads it
            self._last_read = self._loop.time()
        listener = self.listener
        try:
            messages = self.codec.decode(data)
        except CodecError as exc:
            listener.stats.request_decoding_error += 1
            log.warning(
                "listener %s: closing connection from %s: %s", listener.name, self.peer, exc
            )
            self._close_now(local=True)
            return
        stats = listener.stats
        for md in messages:
            stats.request_decoding_success += 1
            message_type = md.message_type
            if message_type is _REQUEST or message_type is _ONEWAY:
                self._start_request(md)
            elif message_type is _HEARTBEAT:
                stats.request_event += 1
                self._answer_heartbeat(md)
            else:
                log.debug(
                    "listener %s: %s from client %s dropped",
                    listener.name,
                    message_type.name,
                    self.peer,
                )

    def _answer_heartbeat(self, md: Metadata) -> None:
        try:
            self.write(self.codec.heartbeat_reply(md))
        except CodecError as exc:
            log.warning("listener %s: cannot answer heartbeat: %s", self.listener.name, exc)

    def _start_request(self, md: Metadata) -> None:
        md.strings["x-meta-protocol-application-protocol"] = self.listener.application_protocol
        request = ActiveRequest(self, md)
        self.active.add(request)
        self.listener.stats.request_active += 1
        request.start()

    def eof_received(self) -> bool | None:
        # A half-close from the client: answers to requests in flight can still be written
        # (fixes §33.28, where the reference aborted them); close once they are done.
        if not self.active:
            return None  # close the transport
        self.is_closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        stats = self.listener.stats
        for request in list(self.active):
            stats.cx_destroy_remote_with_active_rq += 1
            request.abandon()
        self.listener.on_connection_closed(self)

    def pause_writing(self) -> None:
        # The client reads slower than upstreams answer: stop taking new requests from it.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # -- replies ------------------------------------------------------------------------
    def send_response(
        self, request: ActiveRequest, response: Metadata, upstream: UpstreamConnection
    ) -> None:
        """Write ``response`` for ``request`` (encoder filters, mutation, id restore)."""
        listener = self.listener
        stats = listener.stats
        route = request.route
        # A copy per request (encoder filters may add to it); a plain route has nothing to copy.
        rule = route.response_mutation if route is not None else None
        mutation = dict(rule) if rule else {}
        encoders: list[EncoderFilter] = listener.encoder_filters
        for encoder in encoders:
            encoder.on_response(request, response, mutation)
        original_id = request.metadata.request_id
        restore = None if request.upstream_id == original_id else original_id
        if mutation or restore is not None:
            try:
                data = upstream.codec.encode(response, mutation, request_id=restore)
            except CodecError as exc:
                # The response is still a valid message: forward it as received.
                log.warning("listener %s: cannot encode response: %s", listener.name, exc)
                data = response.origin
        else:
            data = response.origin
        stats.response += 1
        if response.response_status == 0:
            stats.response_success += 1
        else:
            stats.response_error += 1
        if self.transport is None:
            stats.response_error_caused_connection_close += 1
        else:
            self.write(data)
        request.complete()

    def send_local_reply(self, request_md: Metadata, error: LocalError) -> None:
        """Write a protocol-format error reply for ``request_md``."""
        stats = self.listener.stats
        stats.local_response_business_exception += 1
        try:
            data = self.codec.on_error(request_md, error)
        except CodecError as exc:
            log.warning("listener %s: cannot render local reply: %s", self.listener.name, exc)
            return
        self.write(data)

    def after_flush(self) -> None:
        transport = self.transport
        if self.is_closing and not self.active and transport is not None:
            transport.close()

    # -- lifecycle ----------------------------------------------------------------------
    def on_request_done(self, request: ActiveRequest) -> None:
        """A request ended (answered, failed, timed out or abandoned)."""
        if request in self.active:
            self.active.discard(request)
            stats = self.listener.stats
            stats.request_active -= 1
            stats.request += 1
            if not request.is_oneway:
                stats.request_twoway += 1
        if self.is_closing and not self.active and not self._out and self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        idle = self.listener.config.proxy.idle_timeout
        assert idle is not None
        remaining = self._last_read + idle - self._loop.time()
        if remaining > 0:
            self._idle_timer = self._loop.call_later(remaining, self._check_idle)
            return
        self._idle_timer = None
        self.listener.stats.idle_timeout += 1
        log.info("listener %s: closing idle connection from %s", self.listener.name, self.peer)
        self._close_now(local=True)

    def _close_now(self, *, local: bool) -> None:
        stats = self.listener.stats
        for request in list(self.active):
            if local:
                stats.cx_destroy_local_with_active_rq += 1
            request.abandon()
        if self.transport is not None:
            self.transport.abort()

    def close_when_idle(self) -> None:
        """Graceful shutdown: finish requests in flight, then close."""
        self.is_closing = True
        if not self.active and not self._out and self.transport is not None:
            self.transport.close()

    def __repr__(self) -> str:
        return f"<DownstreamConnection {self.peer} active={len(self.active)}>"
