"""One-pass decode of the usual Dubbo read: exactly one plain request or OK response.

Why: nearly every read holds one whole two-way request (downstream side) or one status-20
response (upstream side), and the general path of :mod:`.codec` spends most of its ~2.6 µs
per request in calls and re-checks (header check, frame parse, four string reads). This
module takes only the happy case:

* a Hessian2 request (two-way or one-way) whose four leading strings (dubbo version,
  interface, service version, method) are in a short form (tags ``0x00-0x1f``,
  ``0x30-0x33``), ASCII, and followed by more body;
* a Hessian2 status-20 response whose result type is a one-byte int (``0x90-0x95``).

Anything else (a partial or extra frame, an event, another status, a long, null or
non-ASCII string) returns ``None`` and goes the general way, which decodes or rejects it with
its usual errors. The metadata is the same whichever path ran (tests compare them field by
field), so callers cannot tell.

A connection's requests nearly always repeat the same strings (one consumer calling one
method), so a reader remembers the bytes of the last request's strings and what they read
as: a request starting with the same bytes reuses them after one ``startswith`` (the parse
depends on those bytes alone). One reader per codec instance, as its connection's cache.
"""

from __future__ import annotations

from typing import Final

from aeraki.codec.api import MessageType, Metadata, ResponseStatus
from aeraki.codec.dubbo.body import FRAME_KEY, DubboFrame
from aeraki.codec.dubbo.framing import (
    FLAG_REQUEST,
    FLAG_TWO_WAY,
    HEADER,
    HEADER_SIZE,
    HESSIAN2,
    MAGIC,
    MAX_BODY,
    STATUS_OK,
)

__all__ = ["FrameReader"]

#: Header flags of the requests read here: Hessian2, two-way or one-way (not events).
_PLAIN_REQUESTS: Final = {
    FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2: MessageType.REQUEST,
    FLAG_REQUEST | HESSIAN2: MessageType.ONEWAY,
}
#: Flag bits of a response read here that must equal HESSIAN2: no request or event bit
#: (the two-way bit means nothing on a response; the general path ignores it too).
_RESPONSE_FLAG_MASK: Final = 0xFF & ~FLAG_TWO_WAY
#: One-byte Hessian ints 0..5 (``0x90 + n``): the result types.
_RESULT_INT_0: Final = 0x90
_RESULT_EXCEPTION: Final = frozenset({0, 3})
_RESPONSE: Final = MessageType.RESPONSE
_ERROR: Final = MessageType.ERROR
_STATUS_ERROR: Final = ResponseStatus.ERROR


class FrameReader:
    """Reads one-frame reads in one pass (:meth:`read`); remembers the last request's
    leading strings (see the module docstring)."""

    __slots__ = ("_head", "_strings")

    def __init__(self) -> None:
        #: the bytes of the last request's four strings (from offset 16), and what they read
        #: as: interface, method, service version, operation name.
        self._head = b""
        self._strings: tuple[str, str, str, str] = ("", "", "", "")

    def read(self, data: bytes) -> Metadata | None:
        """``data`` decoded if it is exactly one frame of the kinds above, else ``None``."""
        size = len(data)
        if size <= HEADER_SIZE:
            return None
        magic, flag, status, request_id, length = HEADER.unpack_from(data)
        if magic != MAGIC or length != size - HEADER_SIZE or length > MAX_BODY:
            return None
        message_type = _PLAIN_REQUESTS.get(flag)
        if message_type is not None:
            head = self._head
            body_at = HEADER_SIZE + len(head)
            if not (head and data.startswith(head, HEADER_SIZE) and body_at < size):
                body_at = self._read_strings(data)
                if not body_at:
                    return None
            interface, method, version, operation = self._strings
            md = Metadata(message_type, request_id, data)
            md.header_size = HEADER_SIZE
            md.body_size = length
            md.strings = {"interface": interface, "method": method, "version": version}
            md.operation_name = operation
            md.deferred = info = DubboFrame(flag, 0, data, body_at)
            md.values = {FRAME_KEY: info}
            return md
        if flag & _RESPONSE_FLAG_MASK != HESSIAN2 or status != STATUS_OK:
            return None
        result_type = data[HEADER_SIZE] - _RESULT_INT_0
        if not 0 <= result_type <= 5:
            return None
        if result_type in _RESULT_EXCEPTION:
            md = Metadata(_ERROR, request_id, data)
            md.response_status = _STATUS_ERROR
        else:
            md = Metadata(_RESPONSE, request_id, data)
        md.header_size = HEADER_SIZE
        md.body_size = length
        info = DubboFrame(flag, status, data, HEADER_SIZE + 1, result_type)
        md.values = {FRAME_KEY: info}
        if result_type >= 3:
            md.deferred = info
        return md

    def _read_strings(self, data: bytes) -> int:
        """Read the four strings of the request ``data`` into the cache: the offset after
        them, or 0 when they are not all short ASCII strings followed by more body."""
        pos = HEADER_SIZE
        size = len(data)
        bounds: list[int] = []
        try:
            for _ in range(4):
                tag = data[pos]
                if tag < 0x20:
                    start = pos + 1
                    pos = start + tag
                elif 0x30 <= tag <= 0x33:
                    start = pos + 2
                    pos = start + (((tag - 0x30) << 8) | data[pos + 1])  # may be past the end
                else:
                    return 0
                if pos >= size:  # a string past the end; or nothing after the method
                    return 0
                bounds += (start - HEADER_SIZE, pos - HEADER_SIZE)
        except IndexError:  # a two-byte length cut by the end of the frame
            return 0
        head = data[HEADER_SIZE:pos]
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return 0
        interface = text[bounds[2] : bounds[3]]
        method = text[bounds[6] : bounds[7]]
        version = text[bounds[4] : bounds[5]]
        self._head = head
        self._strings = (interface, method, version, f"{interface}/{method}")
        return pos
