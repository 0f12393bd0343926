"""The Dubbo 2 frame header: 16 bytes in front of every message (reference §27.1).

Layout (big-endian)::

    0  u16  magic 0xDABB
    2  u8   flag: 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization id
    3  u8   status (responses; see §27.3)
    4  u64  request id (Java long, carried as unsigned)
    12 i32  body length, 0 ≤ len ≤ 16 MiB

The size cap is checked as soon as the header is complete, so a garbage length is refused at
once instead of making the connection buffer up to 2 GiB.
"""

from __future__ import annotations

import struct
from typing import Final

from aeraki.errors import CodecError

__all__ = [
    "FLAG_EVENT",
    "FLAG_REQUEST",
    "FLAG_TWO_WAY",
    "HEADER",
    "HEADER_SIZE",
    "HESSIAN2",
    "MAGIC",
    "MAX_BODY",
    "STATUS_BAD_RESPONSE",
    "RETRIABLE_STATUSES",
    "STATUS_OK",
    "STATUS_SERVER_ERROR",
    "STATUS_SERVER_TIMEOUT",
    "STATUS_SERVICE_NOT_FOUND",
    "STATUS_THREADPOOL_EXHAUSTED",
    "VALID_STATUSES",
    "build_frame",
    "check_header",
    "patch_request_id",
]

MAGIC: Final = 0xDABB
HEADER: Final = struct.Struct(">HBBQi")
HEADER_SIZE: Final = 16
_REQUEST_ID: Final = struct.Struct(">Q")
_BODY_LENGTH: Final = struct.Struct(">i")

FLAG_REQUEST: Final = 0x80
FLAG_TWO_WAY: Final = 0x40
FLAG_EVENT: Final = 0x20
SERIALIZATION_MASK: Final = 0x1F
HESSIAN2: Final = 2

#: Largest body accepted (§27.1): 16 MiB, as the reference and Dubbo's default payload limit.
MAX_BODY: Final = 16 * 1024 * 1024

STATUS_OK: Final = 20
STATUS_CLIENT_TIMEOUT: Final = 30
STATUS_SERVER_TIMEOUT: Final = 31
STATUS_BAD_REQUEST: Final = 40
STATUS_BAD_RESPONSE: Final = 50
STATUS_SERVICE_NOT_FOUND: Final = 60
STATUS_SERVICE_ERROR: Final = 70
STATUS_SERVER_ERROR: Final = 80
STATUS_CLIENT_ERROR: Final = 90
STATUS_THREADPOOL_EXHAUSTED: Final = 100

#: Statuses a response may carry (§27.3). 80 (SERVER_ERROR) is included: the reference
#: rejects it, which turns an ordinary provider error into a decode failure (§33 item 3).
VALID_STATUSES: Final = frozenset(
    {
        STATUS_OK,
        STATUS_CLIENT_TIMEOUT,
        STATUS_SERVER_TIMEOUT,
        STATUS_BAD_REQUEST,
        STATUS_BAD_RESPONSE,
        STATUS_SERVICE_NOT_FOUND,
        STATUS_SERVICE_ERROR,
        STATUS_SERVER_ERROR,
        STATUS_CLIENT_ERROR,
        STATUS_THREADPOOL_EXHAUSTED,
    }
)

#: Statuses another provider may not repeat (what Dubbo's own failover cluster retries):
#: the provider timed out, does not export the service, or has no thread free.
RETRIABLE_STATUSES: Final = frozenset(
    {STATUS_SERVER_TIMEOUT, STATUS_SERVICE_NOT_FOUND, STATUS_THREADPOOL_EXHAUSTED}
)


def check_header(magic: int, flag: int, status: int, length: int) -> None:
    """Refuse a header that is not Dubbo's (§27.1, §27.3).

    Non-event requests must use Hessian2 (id 2): the body is parsed. Responses are checked
    for a known status; their serialization id is checked by the body parser, and only when
    it parses (status 20, not an event).
    """
    if magic != MAGIC:
        raise CodecError(f"dubbo: invalid magic number 0x{magic:04x}")
    if length < 0 or length > MAX_BODY:
        raise CodecError(f"dubbo: invalid body length {length} (limit {MAX_BODY})")
    if flag & FLAG_REQUEST:
        if not flag & FLAG_EVENT and flag & SERIALIZATION_MASK != HESSIAN2:
            raise CodecError(
                f"dubbo: unsupported serialization id {flag & SERIALIZATION_MASK} (need 2)"
            )
    elif status not in VALID_STATUSES:
        raise CodecError(f"dubbo: invalid response status {status}")


def build_frame(flag: int, status: int, request_id: int, body: bytes) -> bytes:
    """A whole frame: header for ``body`` followed by ``body``."""
    if len(body) > MAX_BODY:
        raise CodecError(f"dubbo: body of {len(body)} bytes exceeds {MAX_BODY}")
    return HEADER.pack(MAGIC, flag, status, _check_id(request_id), len(body)) + body


def patch_request_id(frame: bytes, request_id: int) -> bytes:
    """``frame`` with header bytes 4..12 replaced by ``request_id`` (shared upstreams)."""
    return frame[:4] + _REQUEST_ID.pack(_check_id(request_id)) + frame[12:]


def patch_body_length(frame_head: bytes, length: int) -> bytes:
    """The first 16 bytes of a frame with a new body length (after a body rewrite, §27.6)."""
    if length > MAX_BODY:
        raise CodecError(f"dubbo: rewritten body of {length} bytes exceeds {MAX_BODY}")
    return frame_head[:12] + _BODY_LENGTH.pack(length)


def _check_id(request_id: int) -> int:
    if not 0 <= request_id < 1 << 64:
        raise CodecError(f"dubbo: request id {request_id} does not fit in 64 bits")
    return request_id
