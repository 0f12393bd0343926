"""A lazy Hessian 2.0 byte scanner, a string/int reader and a small writer (reference §27.8).

Why a scanner: the proxy needs the attachments that follow a Dubbo request's arguments, not the
arguments themselves. Building Python objects for them costs ~80 µs per request (DESIGN §4.2);
skipping them costs a few µs. :func:`skip_values` walks any Hessian 2.0 value without building
it: null, booleans, every int/long/double/date form, binary and strings (chunked too), typed and
untyped lists (fixed and variable length), typed ``M`` and untyped ``H`` maps, class
definitions ``C`` with objects ``O``/``0x60-0x6f`` and refs ``Q``.

Design notes:

* Dispatch is on the tag byte through tables: :data:`_FIXED` gives the whole size of
  fixed-width values (ints, longs, doubles, dates, null, booleans), which are skipped without
  a call; other tags go through :data:`_HANDLERS`.
* Nesting is kept on an explicit stack, not Python recursion, so a hostile frame cannot
  exhaust the interpreter stack; depth is still bounded by :data:`MAX_DEPTH` (1024 nested
  containers/objects — deeper than any real Dubbo payload and far below the memory a frame
  could claim).
* Class definitions are message-scoped: callers pass one ``classes`` list (the field count of
  each definition, in order) for a whole message body, as Hessian2Output resets per message.
* Hessian string lengths count UTF-16 code units. Java writes supplementary characters as
  two 3-byte surrogates (CESU-8); a 4-byte UTF-8 sequence is counted as 2 units as well.
  ASCII strings take a fast path (one slice and ``isascii``).

Callers work on one complete frame (``bytes``); running past its end raises ``IndexError`` or
``struct.error`` or returns a position beyond the frame, which the codec turns into
:class:`CodecError`. The writer side is :mod:`.hessian2_writer`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from aeraki.errors import CodecError

__all__ = [
    "MAX_DEPTH",
    "is_string_tag",
    "read_int",
    "read_string",
    "skip_string",
    "skip_type",
    "skip_values",
]

#: Deepest nesting of lists/maps/objects the scanner follows before refusing the frame.
MAX_DEPTH: Final = 1024

_U16: Final = struct.Struct(">H")
_I32: Final = struct.Struct(">i")

#: Whole size of fixed-width values by tag (0 = not fixed-width).
_FIXED: Final = bytearray(256)
for _tag, _size in (
    (0x4E, 1), (0x54, 1), (0x46, 1),  # N, T, F
    (0x49, 5), (0x59, 5), (0x4C, 9), (0x44, 9),  # I, Y, L, D
    (0x4A, 9), (0x4B, 5),  # dates J (ms), K (minutes)
    (0x5B, 1), (0x5C, 1), (0x5D, 2), (0x5E, 3), (0x5F, 5),  # compact doubles
):  # fmt: skip
    _FIXED[_tag] = _size
for _tag in range(0x80, 0xC0):  # int -16..47
    _FIXED[_tag] = 1
for _tag in range(0xC0, 0xD0):  # int, 2 bytes
    _FIXED[_tag] = 2
for _tag in range(0xD0, 0xD8):  # int, 3 bytes
    _FIXED[_tag] = 3
for _tag in range(0xD8, 0xF0):  # long -8..15
    _FIXED[_tag] = 1
for _tag in range(0xF0, 0x100):  # long, 2 bytes
    _FIXED[_tag] = 2
for _tag in range(0x38, 0x40):  # long, 3 bytes
    _FIXED[_tag] = 3

_STRING_TAGS: Final = frozenset([*range(0x00, 0x20), *range(0x30, 0x34), 0x52, 0x53])
_INT_TAGS: Final = frozenset([*range(0x80, 0xD8), 0x49])
#: UTF-8 continuation bytes, deleted to count characters.
_CONTINUATION: Final = bytes(range(0x80, 0xC0))
#: Everything but 4-byte UTF-8 leads, deleted to count supplementary characters.
_NOT_FOUR_LEAD: Final = bytes([*range(0xF0), *range(0xF8, 0x100)])
#: Length of the UTF-8 sequence a lead byte starts (garbage leads count 1).
_UTF8_LEN: Final = bytes(
    1 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4 if b < 0xF8 else 1
    for b in range(256)
)

LEAF: Final = -2  # handler result: a complete value, nothing nested
UNTIL_END: Final = -1  # handler result: values follow until 'Z'
NOT_A_VALUE: Final = -3  # handler result: a class definition; the value follows it


def is_string_tag(tag: int) -> bool:
    """Whether ``tag`` starts a Hessian string (any length form, chunked included)."""
    return tag in _STRING_TAGS


# -- strings ------------------------------------------------------------------------------


def _chunk_header(data: bytes, pos: int) -> tuple[int, int, bool]:
    """(units, data start, is final chunk) of the string chunk at ``pos``."""
    tag = data[pos]
    if tag < 0x20:
        return tag, pos + 1, True
    if 0x30 <= tag <= 0x33:
        return ((tag - 0x30) << 8) | data[pos + 1], pos + 2, True
    if tag == 0x53 or tag == 0x52:  # 'S' final, 'R' non-final chunk
        return _U16.unpack_from(data, pos + 1)[0], pos + 3, tag == 0x53
    raise CodecError(f"hessian2: expected a string, found tag 0x{tag:02x}")


def _skip_units(data: bytes, pos: int, units: int) -> int:
    """Position after ``units`` UTF-16 code units of UTF-8 text starting at ``pos``."""
    end = pos + units
    chunk = data[pos:end]
    if len(chunk) == units and chunk.isascii():
        return end
    remaining = units
    while remaining > 0:
        # Every unit takes at least one byte, so the next ``remaining`` bytes never overshoot;
        # count what they hold in C (translate), then finish a character cut at the edge.
        chunk = data[pos : pos + remaining]
        if len(chunk) < remaining:
            raise CodecError("hessian2: string runs past the end of the frame")
        remaining -= len(chunk.translate(None, _CONTINUATION))
        remaining -= len(chunk.translate(None, _NOT_FOUR_LEAD))
        pos = _finish_char(data, pos, pos + len(chunk))
    if remaining < 0:
        raise CodecError("hessian2: string length splits a supplementary character")
    if pos > len(data):
        raise CodecError("hessian2: string runs past the end of the frame")
    return pos


def _finish_char(data: bytes, start: int, pos: int) -> int:
    """Move ``pos`` past the rest of a multi-byte character begun before it (at ≥ start)."""
    lead = pos - 1
    while lead >= start and lead > pos - 4 and 0x80 <= data[lead] < 0xC0:
        lead -= 1
    if lead < start:
        return pos
    return max(pos, lead + _UTF8_LEN[data[lead]])


def skip_string(data: bytes, pos: int) -> int:
    """Position after the string (all chunks) at ``pos``."""
    while True:
        units, start, final = _chunk_header(data, pos)
        pos = _skip_units(data, start, units)
        if final:
            return pos


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    """The string at ``pos`` and the position after it; ``N`` (null) reads as ``""``."""
    tag = data[pos]
    if tag < 0x20:  # fast path: short string, usually ASCII
        end = pos + 1 + tag
        raw = data[pos + 1 : end]
        if len(raw) == tag and raw.isascii():
            return raw.decode("ascii"), end
    elif 0x30 <= tag <= 0x33:  # fast path: up to 1023 units (interface names, payloads)
        units = ((tag - 0x30) << 8) | data[pos + 1]
        end = pos + 2 + units
        raw = data[pos + 2 : end]
        if len(raw) == units and raw.isascii():
            return raw.decode("ascii"), end
    elif tag == 0x4E:
        return "", pos + 1
    pieces = []
    while True:
        units, start, final = _chunk_header(data, pos)
        pos = _skip_units(data, start, units)
        pieces.append(data[start:pos])
        if final:
            break
    return _decode_text(b"".join(pieces)), pos


def _decode_text(raw: bytes) -> str:
    """UTF-8 (or Java's CESU-8 surrogate pairs) to str; lone surrogates are refused."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:  # Java's CESU-8: surrogate pairs as two 3-byte sequences
        text = raw.decode("utf-8", "surrogatepass")
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeError as exc:
        raise CodecError(f"hessian2: string is not valid UTF-8: {exc}") from exc


# -- ints and types -------------------------------------------------------------------------


def read_int(data: bytes, pos: int) -> tuple[int, int]:
    """The Hessian int at ``pos`` (all four forms) and the position after it."""
    tag = data[pos]
    if 0x80 <= tag < 0xC0:
        return tag - 0x90, pos + 1
    if 0xC0 <= tag < 0xD0:
        return ((tag - 0xC8) << 8) | data[pos + 1], pos + 2
    if 0xD0 <= tag < 0xD8:
        return ((tag - 0xD4) << 16) | (data[pos + 1] << 8) | data[pos + 2], pos + 3
    if tag == 0x49:
        return _I32.unpack_from(data, pos + 1)[0], pos + 5
    raise CodecError(f"hessian2: expected an int, found tag 0x{tag:02x}")


def skip_type(data: bytes, pos: int) -> int:
    """Position after a list/map type: a type name string or an int type reference."""
    if data[pos] in _INT_TAGS:
        return read_int(data, pos)[1]
    return skip_string(data, pos)


def _count(data: bytes, pos: int) -> tuple[int, int]:
    value, pos = read_int(data, pos)
    if value < 0:
        raise CodecError(f"hessian2: negative length {value}")
    return value, pos


# -- the scanner ----------------------------------------------------------------------------

_Handler = Callable[[bytes, int, list[int]], tuple[int, int]]


def _h_string(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return skip_string(data, pos), LEAF


def _h_binary(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    while True:
        tag = data[pos]
        if 0x20 <= tag < 0x30:
            size, pos, final = tag - 0x20, pos + 1, True
        elif 0x34 <= tag < 0x38:
            size, pos, final = ((tag - 0x34) << 8) | data[pos + 1], pos + 2, True
        elif tag == 0x41 or tag == 0x42:  # 'A' non-final chunk, 'B' final chunk
            size, pos, final = _U16.unpack_from(data, pos + 1)[0], pos + 3, tag == 0x42
        else:
            raise CodecError(f"hessian2: expected a binary chunk, found tag 0x{tag:02x}")
        pos += size
        if pos > len(data):
            raise CodecError("hessian2: binary runs past the end of the frame")
        if final:
            return pos, LEAF


def _h_class_def(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    pos = skip_string(data, pos + 1)
    fields, pos = _count(data, pos)
    for _ in range(fields):
        pos = skip_string(data, pos)
    classes.append(fields)
    return pos, NOT_A_VALUE


def _fields_of(classes: list[int], index: int) -> int:
    if not 0 <= index < len(classes):
        raise CodecError(f"hessian2: object refers to undefined class #{index}")
    return classes[index]


def _h_object(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    index, pos = read_int(data, pos + 1)
    return pos, _fields_of(classes, index)


def _h_compact_object(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return pos + 1, _fields_of(classes, data[pos] - 0x60)


def _h_ref(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return read_int(data, pos + 1)[1], LEAF


def _h_typed_open(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return skip_type(data, pos + 1), UNTIL_END  # 'U' list, 'M' map


def _h_open(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return pos + 1, UNTIL_END  # 'W' list, 'H' map


def _h_typed_fixed(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return _count(data, skip_type(data, pos + 1))[::-1]  # 'V' type int


def _h_fixed(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return _count(data, pos + 1)[::-1]  # 'X' int


def _h_compact_typed(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return skip_type(data, pos + 1), data[pos] - 0x70


def _h_compact_untyped(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    return pos + 1, data[pos] - 0x78


def _h_invalid(data: bytes, pos: int, classes: list[int]) -> tuple[int, int]:
    raise CodecError(f"hessian2: unexpected tag 0x{data[pos]:02x} at offset {pos}")


def _build_handlers() -> list[_Handler]:
    table: list[_Handler] = [_h_invalid] * 256
    for tag in _STRING_TAGS:
        table[tag] = _h_string
    for tag in [*range(0x20, 0x30), *range(0x34, 0x38), 0x41, 0x42]:
        table[tag] = _h_binary
    for tag in range(0x60, 0x70):
        table[tag] = _h_compact_object
    for tag in range(0x70, 0x78):
        table[tag] = _h_compact_typed
    for tag in range(0x78, 0x80):
        table[tag] = _h_compact_untyped
    table[0x43] = _h_class_def  # 'C'
    table[0x4F] = _h_object  # 'O'
    table[0x51] = _h_ref  # 'Q'
    table[0x55] = table[0x4D] = _h_typed_open  # 'U', 'M'
    table[0x57] = table[0x48] = _h_open  # 'W', 'H'
    table[0x56] = _h_typed_fixed  # 'V'
    table[0x58] = _h_fixed  # 'X'
    return table


_HANDLERS: Final = _build_handlers()


def skip_values(data: bytes, pos: int, count: int, classes: list[int]) -> int:
    """Position after ``count`` consecutive Hessian values starting at ``pos``.

    ``classes`` collects the field count of each class definition met; pass the same list
    for every call on one message body so later objects resolve earlier definitions.
    """
    fixed, handlers = _FIXED, _HANDLERS
    stack: list[int] = []
    remaining = count  # values left in the current container; UNTIL_END: until 'Z'
    while True:
        if remaining == 0:
            if not stack:
                return pos
            remaining = stack.pop()
            continue
        tag = data[pos]
        if remaining > 0:
            remaining -= 1
        elif tag == 0x5A:  # 'Z' closes a variable-length list or map
            pos += 1
            remaining = stack.pop()
            continue
        size = fixed[tag]
        if size:
            pos += size
            continue
        if tag < 0x20:  # a short ASCII string, the usual argument: skipped inline (~0.25 µs)
            end = pos + 1 + tag
            if end <= len(data) and data[pos + 1 : end].isascii():
                pos = end
                continue
        pos, nested = handlers[tag](data, pos, classes)
        if nested == LEAF:
            continue
        if nested == NOT_A_VALUE:
            if remaining >= 0:
                remaining += 1  # the definition precedes the value it was counted for
            continue
        if len(stack) >= MAX_DEPTH:
            raise CodecError(f"hessian2: values nested deeper than {MAX_DEPTH}")
        stack.append(remaining)
        remaining = nested
