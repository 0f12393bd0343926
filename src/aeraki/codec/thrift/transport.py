"""Thrift transports: detection, framed length prefix, THeader parse and write.

Layouts (reference ``meta-protocol-proxy.md`` §28.1)::

    unframed  <message>
    framed    <int32 frame length><message>
    header    <int32 frame length><u16 0x0FFF><u16 flags><int32 seq id><u16 header length/4>
              <varint protocol id><varint #transforms><info blocks><zero padding><message>

Limits (each one bounds what a peer can make us buffer or loop over):

* :data:`MAX_FRAME_SIZE` 16,384,000 — Envoy's and Apache Thrift's default maximum frame; a
  larger length prefix is refused at once instead of buffering towards it.
* :data:`MAX_UNFRAMED_SIZE` — the same budget for unframed messages, whose end is only found
  by scanning; a struct that never ends fails once this many bytes are buffered.
* :data:`_HEADER_DETECT_MAX` 0x3FFFFFFF — the size bound §28.1 uses to *recognise* THeader;
  THeader frames are then held to :data:`MAX_FRAME_SIZE` like framed ones.
* THeader header length is a u16 count of 4-byte words (at most 262,140 bytes) by format.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from aeraki.codec.thrift.protocol import (
    Buf,
    NeedMore,
    Protocol,
    detect_protocol,
    read_varint,
    write_varint,
)
from aeraki.errors import CodecError

__all__ = [
    "HEADER_MAGIC",
    "MAX_FRAME_SIZE",
    "MAX_UNFRAMED_SIZE",
    "HeaderInfo",
    "Transport",
    "detect_transport",
    "frame",
    "parse_header",
    "write_header_frame",
]

MAX_FRAME_SIZE: Final = 16_384_000
MAX_UNFRAMED_SIZE: Final = MAX_FRAME_SIZE
HEADER_MAGIC: Final = 0x0FFF
_HEADER_DETECT_MAX: Final = 0x3FFFFFFF
_MAX_HEADER_BYTES: Final = 0xFFFF * 4
_INFO_KEY_VALUE: Final = 1

_I32 = struct.Struct(">i")
_SIZE_WORD = struct.Struct(">iH")
_HEADER_FIXED = struct.Struct(">iHHiH")  # length, magic, flags, seq id, header words
HEADER_FIXED_SIZE: Final = _HEADER_FIXED.size


class Transport(enum.Enum):
    """Thrift transports the codec detects (§28.1)."""

    UNFRAMED = "unframed"
    FRAMED = "framed"
    HEADER = "header"


def detect_transport(buf: Buf) -> Transport | None:
    """The transport of a connection from its first bytes, or None until enough arrived.

    Follows §28.1, except that a buffer starting with a protocol byte (0x80/0x82, i.e. a
    negative int32 size) is decided on 2 bytes: a complete unframed compact message can be
    5 bytes long, so waiting for 8 could wait forever.
    """
    if len(buf) < 2:
        return None
    if buf[0] & 0x80:
        if detect_protocol(buf, 0) is not None:
            return Transport.UNFRAMED
        raise _unknown(buf)
    if len(buf) < 6:
        return None
    size, word = _SIZE_WORD.unpack_from(buf, 0)
    if 0 < size <= _HEADER_DETECT_MAX and word == HEADER_MAGIC:
        return Transport.HEADER
    if 0 < size <= MAX_FRAME_SIZE and detect_protocol(buf, 4) is not None:
        return Transport.FRAMED
    raise _unknown(buf)


def _unknown(buf: Buf) -> CodecError:
    return CodecError(f"unknown thrift auto transport frame start {bytes(buf[:8]).hex()}")


def frame_size(buf: Buf, pos: int) -> int:
    """The checked int32 frame length at ``pos`` (framed and header transports)."""
    size: int = _I32.unpack_from(buf, pos)[0]
    if size <= 0 or size > MAX_FRAME_SIZE:
        raise CodecError(f"thrift: invalid frame length {size} (limit {MAX_FRAME_SIZE})")
    return size


def frame(payload: bytes) -> bytes:
    """``payload`` with a framed-transport length prefix."""
    if len(payload) > MAX_FRAME_SIZE:
        raise CodecError(f"thrift: frame of {len(payload)} bytes exceeds {MAX_FRAME_SIZE}")
    return _I32.pack(len(payload)) + payload


class HeaderInfo:
    """The THeader fields of one frame; offsets are relative to the frame start."""

    __slots__ = ("flags", "headers", "payload", "protocol", "seq_id")

    def __init__(
        self,
        flags: int,
        seq_id: int,
        protocol: Protocol,
        headers: list[tuple[bytes, bytes]],
        payload: int,
    ) -> None:
        self.flags = flags
        self.seq_id = seq_id
        self.protocol = protocol
        #: info key/value headers in wire order (raw bytes, re-emitted on mutation).
        self.headers = headers
        #: offset of the protocol message (first byte after the padding).
        self.payload = payload


def parse_header(buf: Buf, pos: int, frame_end: int) -> HeaderInfo:
    """Parse the THeader frame at ``pos`` whose bytes end at ``frame_end`` (all available)."""
    if pos + HEADER_FIXED_SIZE > frame_end:
        raise CodecError("thrift header: frame shorter than its fixed header")
    _, magic, flags, seq_id, words = _HEADER_FIXED.unpack_from(buf, pos)
    if magic != HEADER_MAGIC:
        raise CodecError(f"thrift header: bad magic {magic:#06x}")
    start = pos + HEADER_FIXED_SIZE
    header_end = start + words * 4
    if header_end > frame_end:
        raise CodecError("thrift header: header length runs past the frame")
    try:
        protocol_id, cursor = read_varint(buf, start, header_end)
        transforms, cursor = read_varint(buf, cursor, header_end)
        if transforms:
            raise CodecError("thrift header: transforms (compression) are not supported")
        headers = _read_info(buf, cursor, header_end)
    except NeedMore as exc:
        raise CodecError("thrift header: headers run past the header length") from exc
    if protocol_id not in (Protocol.BINARY, Protocol.COMPACT):
        raise CodecError(f"thrift header: unknown protocol id {protocol_id}")
    return HeaderInfo(flags, seq_id, Protocol(protocol_id), headers, header_end - pos)


def _read_info(buf: Buf, cursor: int, end: int) -> list[tuple[bytes, bytes]]:
    """Key/value info blocks; padding (0) or an unknown block type ends them (as Apache)."""
    headers: list[tuple[bytes, bytes]] = []
    while cursor < end:
        kind, cursor = read_varint(buf, cursor, end)
        if kind != _INFO_KEY_VALUE:
            break
        count, cursor = read_varint(buf, cursor, end)
        for _ in range(count):
            key, cursor = _read_string(buf, cursor, end)
            value, cursor = _read_string(buf, cursor, end)
            headers.append((key, value))
    return headers


def _read_string(buf: Buf, cursor: int, end: int) -> tuple[bytes, int]:
    size, cursor = read_varint(buf, cursor, end)
    stop = cursor + size
    if stop > end:
        raise NeedMore(stop)
    return bytes(buf[cursor:stop]), stop


def header_region(protocol: Protocol, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The variable THeader part: protocol id, no transforms, one key/value block, padding."""
    parts = [write_varint(int(protocol)), b"\x00"]
    if headers:
        parts += [b"\x01", write_varint(len(headers))]
        for key, value in headers:
            parts += [write_varint(len(key)), key, write_varint(len(value)), value]
    region = b"".join(parts)
    return region + b"\x00" * (-len(region) % 4)


def write_header_frame(flags: int, seq_id: int, region: bytes, payload: bytes) -> bytes:
    """A THeader frame around ``payload``; ``region`` is a padded :func:`header_region`."""
    if len(region) > _MAX_HEADER_BYTES or len(region) % 4:
        raise CodecError(f"thrift header: {len(region)} header bytes cannot be encoded")
    size = HEADER_FIXED_SIZE - 4 + len(region) + len(payload)
    if size > MAX_FRAME_SIZE:
        raise CodecError(f"thrift: frame of {size} bytes exceeds {MAX_FRAME_SIZE}")
    fixed = _HEADER_FIXED.pack(size, HEADER_MAGIC, flags, _signed(seq_id), len(region) // 4)
    return b"".join((fixed, region, payload))


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value
