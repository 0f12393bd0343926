"""Thrift binary (strict) and compact protocols: message begin, skip-scanner, writers.

Only what a proxy needs (reference ``meta-protocol-proxy.md`` §28.2, DESIGN §4 "parse
lazily"): the message begin (name, type, sequence id) is parsed; the struct that follows is
never turned into Python values. For unframed transport the end of a message is found by
:func:`skip_struct`, which walks the wire layout by offsets only, jumping over fixed-width
runs (strings, lists of numbers) in one step.

All readers take ``buf`` (``bytes`` or ``bytearray``) and absolute offsets. Running out of
bytes raises :class:`NeedMore` (with the smallest buffer length worth retrying at); bytes
that break the protocol raise :class:`~aeraki.errors.CodecError`.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from aeraki.errors import CodecError

__all__ = [
    "MESSAGE_CALL",
    "MESSAGE_EXCEPTION",
    "MESSAGE_ONEWAY",
    "MESSAGE_REPLY",
    "MAX_DEPTH",
    "MessageBegin",
    "NeedMore",
    "Protocol",
    "application_exception",
    "detect_protocol",
    "parse_message_begin",
    "rewrite_seqid",
    "skip_struct",
    "write_varint",
]

Buf = bytes | bytearray

# Message types (§28.2).
MESSAGE_CALL: Final = 1
MESSAGE_REPLY: Final = 2
MESSAGE_EXCEPTION: Final = 3
MESSAGE_ONEWAY: Final = 4

#: Nesting limit for structs/containers. Apache Thrift's readers default to 64 too; without a
#: limit a hostile peer could make the recursive scanner raise RecursionError.
MAX_DEPTH: Final = 64
#: Longest varint accepted (a 64-bit value needs 10 bytes); longer is garbage, not "need more".
_MAX_VARINT_BYTES: Final = 10

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_BIN_HEAD = struct.Struct(">Hxbi")  # version 0x8001, (pad) type, name length
_BIN_ELEM = struct.Struct(">bi")  # list/set: element type, count
_BIN_MAP = struct.Struct(">bbi")  # map: key type, value type, count

_BINARY_VERSION: Final = 0x8001
_COMPACT_ID: Final = 0x82


class Protocol(enum.IntEnum):
    """Wire protocols; values are THeader protocol ids (§28.1)."""

    BINARY = 0
    COMPACT = 2


class NeedMore(Exception):
    """The buffer ends before the item does; retry once ``len(buf) >= need``."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.need = need


def detect_protocol(buf: Buf, pos: int) -> Protocol | None:
    """The protocol whose message start is at ``buf[pos:pos+2]``, or None (§28.1)."""
    first = buf[pos]
    if first == 0x80 and buf[pos + 1] == 0x01:
        return Protocol.BINARY
    if first == _COMPACT_ID and buf[pos + 1] & 0x1F == 0x01:
        return Protocol.COMPACT
    return None


class MessageBegin:
    """What the proxy reads from a message: name, type, sequence id and where they are."""

    __slots__ = ("body", "message_type", "name", "seqid", "seqid_end", "seqid_pos")

    def __init__(
        self, name: str, message_type: int, seqid: int, seqid_pos: int, seqid_end: int, body: int
    ) -> None:
        self.name = name
        self.message_type = message_type
        #: the sequence id as an unsigned 32-bit value (negative int32s wrap, §28.3).
        self.seqid = seqid
        self.seqid_pos = seqid_pos
        self.seqid_end = seqid_end
        #: offset of the first byte after the message begin (the struct).
        self.body = body


def parse_message_begin(buf: Buf, pos: int, protocol: Protocol, end: int) -> MessageBegin:
    """Parse the message begin at ``pos``; bytes at or after ``end`` are not available.

    Raises NeedMore when ``end`` comes first, CodecError for a bad version or length.
    """
    if protocol is Protocol.BINARY:
        return _binary_begin(buf, pos, end)
    return _compact_begin(buf, pos, end)


def _binary_begin(buf: Buf, pos: int, end: int) -> MessageBegin:
    if pos + 8 > end:
        raise NeedMore(pos + 8)
    version, mtype, size = _BIN_HEAD.unpack_from(buf, pos)
    if version != _BINARY_VERSION:
        raise CodecError(f"thrift binary: bad version {version:#06x}")
    if size < 0 or size > end - pos:
        if size < 0 or size > 0xFFFFFF:
            raise CodecError(f"thrift binary: bad method name length {size}")
        raise NeedMore(pos + 12 + size)
    name_end = pos + 8 + size
    if name_end + 4 > end:
        raise NeedMore(name_end + 4)
    (seqid,) = _U32.unpack_from(buf, name_end)
    name = _text(buf[pos + 8 : name_end])
    return MessageBegin(name, mtype, seqid, name_end, name_end + 4, name_end + 4)


def _compact_begin(buf: Buf, pos: int, end: int) -> MessageBegin:
    if pos + 2 > end:
        raise NeedMore(pos + 2)
    head = buf[pos + 1]
    if buf[pos] != _COMPACT_ID or head & 0x1F != 0x01:
        raise CodecError(
            f"thrift compact: bad protocol id/version {bytes(buf[pos : pos + 2]).hex()}"
        )
    seqid, seqid_end = read_varint(buf, pos + 2, end)
    if seqid > 0xFFFFFFFF:
        raise CodecError(f"thrift compact: sequence id {seqid} does not fit 32 bits")
    size, name_pos = read_varint(buf, seqid_end, end)
    if size > 0xFFFFFF:
        raise CodecError(f"thrift compact: bad method name length {size}")
    body = name_pos + size
    if body > end:
        raise NeedMore(body)
    return MessageBegin(_text(buf[name_pos:body]), head >> 5, seqid, pos + 2, seqid_end, body)


def _text(raw: Buf) -> str:
    # surrogateescape never fails and round-trips any bytes exactly (no UnicodeDecodeError).
    return bytes(raw).decode("utf-8", "surrogateescape")


def read_varint(buf: Buf, pos: int, end: int) -> tuple[int, int]:
    """An unsigned LEB128 varint at ``pos``: (value, next offset)."""
    result = shift = 0
    for index in range(pos, pos + _MAX_VARINT_BYTES):
        if index >= end:
            raise NeedMore(index + 1)
        byte = buf[index]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, index + 1
        shift += 7
    raise CodecError("thrift compact: varint longer than 10 bytes")


def write_varint(value: int) -> bytes:
    """Unsigned LEB128 encoding of a non-negative ``value``."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def rewrite_seqid(message: bytes, begin: MessageBegin, protocol: Protocol, seqid: int) -> bytes:
    """``message`` (offsets of ``begin`` relative to it) with the sequence id replaced.

    Binary keeps 4 bytes; compact writes an unsigned 32-bit varint, so the length may change.
    """
    value = seqid & 0xFFFFFFFF
    new = _U32.pack(value) if protocol is Protocol.BINARY else write_varint(value)
    return b"".join((message[: begin.seqid_pos], new, message[begin.seqid_end :]))


# -- skip scanner ---------------------------------------------------------------------------
# Binary field/element types (§28.2) -> fixed width; STRING 11, STRUCT 12, MAP 13, SET 14,
# LIST 15 are variable. UUID (16) is the newer 16-byte type.
_BIN_FIXED: Final = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8, 16: 16}
# Compact element types: BOOL 1/2 (1 byte in containers), BYTE 3, DOUBLE 7, UUID 13 fixed;
# I16/I32/I64 4/5/6 varints; BINARY 8; LIST 9, SET 10, MAP 11, STRUCT 12.
_CPT_FIXED: Final = {1: 1, 2: 1, 3: 1, 7: 8, 13: 16}
_CPT_VARINT: Final = frozenset({4, 5, 6})


def skip_struct(buf: Buf, pos: int, protocol: Protocol, mark: list[int] | None = None) -> int:
    """The offset just after the struct starting at ``pos`` (fields up to STOP).

    Running off the buffer (IndexError/struct.error from the readers) means "need more";
    a length that jumps past it raises NeedMore with the exact length needed, so the caller
    can refuse a message over its size cap before buffering it. Every element consumes at
    least one byte, so loops are bounded by the buffer length.

    ``mark[0]`` is kept at the start of the first top-level field not yet complete, so a
    caller can resume there when more bytes arrive instead of rescanning the whole message
    (without it, a message trickling in small reads would cost quadratic time).
    """
    end = len(buf)
    try:
        if protocol is Protocol.BINARY:
            return _skip_binary_struct(buf, pos, end, 0, mark)
        return _skip_compact_struct(buf, pos, end, 0, mark)
    except (IndexError, struct.error):
        raise NeedMore(end + 1) from None


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CodecError(f"thrift: nesting deeper than {MAX_DEPTH}")


def _jump(pos: int, end: int) -> int:
    if pos > end:
        raise NeedMore(pos)
    return pos


def _skip_binary_struct(
    buf: Buf, pos: int, end: int, depth: int, mark: list[int] | None = None
) -> int:
    _check_depth(depth)
    while True:
        if mark is not None:
            mark[0] = pos
        ftype = buf[pos]
        if ftype == 0:
            return pos + 1
        pos = _skip_binary_value(buf, pos + 3, end, ftype, depth + 1)


def _skip_binary_value(buf: Buf, pos: int, end: int, ftype: int, depth: int) -> int:
    width = _BIN_FIXED.get(ftype)
    if width is not None:
        return _jump(pos + width, end)
    if ftype == 11:
        (size,) = _I32.unpack_from(buf, pos)
        if size < 0:
            raise CodecError(f"thrift binary: negative string length {size}")
        return _jump(pos + 4 + size, end)
    if ftype == 12:
        return _skip_binary_struct(buf, pos, end, depth)
    if ftype == 13:
        ktype, vtype, count = _BIN_MAP.unpack_from(buf, pos)
        return _skip_binary_items(buf, pos + 6, end, (ktype, vtype), count, depth)
    if ftype in (14, 15):
        etype, count = _BIN_ELEM.unpack_from(buf, pos)
        return _skip_binary_items(buf, pos + 5, end, (etype,), count, depth)
    raise CodecError(f"thrift binary: unknown field type {ftype}")


def _skip_binary_items(
    buf: Buf, pos: int, end: int, types: tuple[int, ...], count: int, depth: int
) -> int:
    if count < 0:
        raise CodecError(f"thrift binary: negative container size {count}")
    _check_depth(depth)
    widths = [_BIN_FIXED.get(t) for t in types]
    if None not in widths:
        return _jump(pos + count * sum(w or 0 for w in widths), end)
    for t in types:
        if t not in _BIN_FIXED and t not in (11, 12, 13, 14, 15):
            raise CodecError(f"thrift binary: unknown element type {t}")
    for _ in range(count):
        for t in types:
            pos = _skip_binary_value(buf, pos, end, t, depth + 1)
    return pos


def _skip_varint(buf: Buf, pos: int) -> int:
    for index in range(pos, pos + _MAX_VARINT_BYTES):
        if buf[index] < 0x80:
            return index + 1
    raise CodecError("thrift compact: varint longer than 10 bytes")


def _skip_compact_struct(
    buf: Buf, pos: int, end: int, depth: int, mark: list[int] | None = None
) -> int:
    _check_depth(depth)
    while True:
        if mark is not None:
            mark[0] = pos
        head = buf[pos]
        if head == 0:
            return pos + 1
        pos += 1
        if head < 0x10:  # long form: zigzag i16 field id follows
            pos = _skip_varint(buf, pos)
        ctype = head & 0x0F
        if ctype in (1, 2):  # booleans live in the field header
            continue
        pos = _skip_compact_value(buf, pos, end, ctype, depth + 1)


def _skip_compact_value(buf: Buf, pos: int, end: int, ctype: int, depth: int) -> int:
    width = _CPT_FIXED.get(ctype)
    if width is not None:
        return _jump(pos + width, end)
    if ctype in _CPT_VARINT:
        return _skip_varint(buf, pos)
    if ctype == 8:
        size, pos = read_varint(buf, pos, end)
        return _jump(pos + size, end)
    if ctype == 12:
        return _skip_compact_struct(buf, pos, end, depth)
    if ctype in (9, 10):
        head = buf[pos]
        count, pos = (head >> 4, pos + 1)
        if count == 15:
            count, pos = read_varint(buf, pos, end)
        return _skip_compact_items(buf, pos, end, (head & 0x0F,), count, depth)
    if ctype == 11:
        count, pos = read_varint(buf, pos, end)
        if count == 0:
            return pos
        kinds = buf[pos]
        return _skip_compact_items(buf, pos + 1, end, (kinds >> 4, kinds & 0x0F), count, depth)
    raise CodecError(f"thrift compact: unknown field type {ctype}")


def _skip_compact_items(
    buf: Buf, pos: int, end: int, types: tuple[int, ...], count: int, depth: int
) -> int:
    _check_depth(depth)
    widths = [_CPT_FIXED.get(t) for t in types]
    if None not in widths:
        return _jump(pos + count * sum(w or 0 for w in widths), end)
    for t in types:
        if t not in _CPT_FIXED and t not in _CPT_VARINT and t not in (8, 9, 10, 11, 12):
            raise CodecError(f"thrift compact: unknown element type {t}")
    for _ in range(count):
        for t in types:
            pos = _skip_compact_value(buf, pos, end, t, depth + 1)
    return pos


# -- writers ----------------------------------------------------------------------------------
def application_exception(
    protocol: Protocol, name: str, seqid: int, message: str, exc_type: int
) -> bytes:
    """A complete EXCEPTION message carrying a TApplicationException (§28.5).

    Struct: field 1 STRING ``message``, field 2 I32 ``type``, STOP.
    """
    raw_name = name.encode("utf-8", "surrogateescape")
    text = message.encode("utf-8", "surrogateescape")
    value = seqid & 0xFFFFFFFF
    if protocol is Protocol.BINARY:
        return b"".join(
            (
                _U32.pack((_BINARY_VERSION << 16) | MESSAGE_EXCEPTION),
                _I32.pack(len(raw_name)),
                raw_name,
                _U32.pack(value),
                b"\x0b\x00\x01",
                _I32.pack(len(text)),
                text,
                b"\x08\x00\x02",
                _I32.pack(exc_type),
                b"\x00",
            )
        )
    return b"".join(
        (
            bytes((_COMPACT_ID, (MESSAGE_EXCEPTION << 5) | 0x01)),
            write_varint(value),
            write_varint(len(raw_name)),
            raw_name,
            b"\x18",  # delta 1, BINARY
            write_varint(len(text)),
            text,
            b"\x15",  # delta 1, I32
            write_varint((exc_type << 1) ^ (exc_type >> 31)),
            b"\x00",
        )
    )
