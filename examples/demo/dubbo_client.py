"""A minimal blocking Dubbo 2 consumer for the demo: one connection, one call at a time.

Requests are built by :func:`tests.integration.peers.dubbo.request_frame` (a Hessian2 request
encoder written independently of ``src/``); responses are framed and parsed by our own
:class:`~aeraki.codec.dubbo.DubboCodec` on the response side, and the String result is read
with its Hessian2 string reader.
"""

from __future__ import annotations

import contextlib
import socket

from aeraki.codec.api import MessageType, Metadata, Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.codec import FRAME_KEY, DubboFrame
from aeraki.codec.dubbo.hessian2 import read_string
from aeraki.errors import CodecError
from tests.integration.peers.dubbo import DEFAULT_INTERFACE, request_frame

__all__ = ["DubboClient", "DubboError", "parse_string_result"]

#: Upper bound on reads for one response (each read blocks at most the socket timeout).
MAX_READS = 1024
_STATUS_NAMES = {
    30: "CLIENT_TIMEOUT",
    31: "SERVER_TIMEOUT",
    40: "BAD_REQUEST",
    50: "BAD_RESPONSE",
    60: "SERVICE_NOT_FOUND",
    70: "SERVICE_ERROR",
    80: "SERVER_ERROR",
    90: "CLIENT_ERROR",
    100: "SERVER_THREADPOOL_EXHAUSTED",
}


class DubboError(Exception):
    """The call failed: an error status, an exception result, or a broken response."""


def parse_string_result(md: Metadata) -> str:
    """The String value of a decoded response; :class:`DubboError` for anything else."""
    frame = md.get(FRAME_KEY)
    if not isinstance(frame, DubboFrame):
        raise DubboError("not a Dubbo frame")
    if frame.status != 20:
        name = _STATUS_NAMES.get(frame.status, "?")
        detail = ""
        with contextlib.suppress(CodecError, IndexError):  # error frames carry a message
            detail, _ = read_string(md.origin, 16)
        raise DubboError(f"status {frame.status} {name}: {detail}".rstrip(": "))
    if md.message_type is MessageType.ERROR:
        raise DubboError(f"provider raised an exception (result type {frame.result_type})")
    if frame.result_type not in (1, 4):
        raise DubboError(f"expected a value, got result type {frame.result_type}")
    try:
        value, _ = read_string(md.origin, frame.result_end)
    except (CodecError, IndexError) as exc:
        raise DubboError(f"result is not a string: {exc}") from exc
    return value


class DubboClient:
    """``call(method, *args)`` over one TCP connection; a context manager closes it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        interface: str = DEFAULT_INTERFACE,
    ) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._codec = DubboCodec(Side.RESPONSE)
        self._interface = interface
        self._next_id = 1

    def call(self, method: str, *args: str | int | bool) -> str:
        """Invoke ``method`` and return its String result (raises :class:`DubboError`)."""
        request_id = self._next_id
        self._next_id += 1
        self._sock.sendall(request_frame(request_id, method, args, interface=self._interface))
        for _ in range(MAX_READS):
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the proxy")
            try:
                messages = self._codec.decode(data)
            except CodecError as exc:
                raise DubboError(f"undecodable response: {exc}") from exc
            for md in messages:
                if md.message_type is MessageType.HEARTBEAT:
                    continue
                if md.request_id != request_id:
                    raise DubboError(f"response id {md.request_id}, expected {request_id}")
                return parse_string_result(md)
        raise DubboError(f"no complete response after {MAX_READS} reads")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> DubboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
