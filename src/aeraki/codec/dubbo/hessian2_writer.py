"""The few Hessian 2.0 values the codec writes (reference §27.6-§27.7): ints and strings.

Strings are written as Java's Hessian2Output writes them, so Java consumers read them back:
lengths in UTF-16 code units, supplementary characters as two 3-byte surrogates (CESU-8),
chunks of 32768 units (``R`` … final ``S``/compact).
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["encode_int", "encode_string"]

_U16: Final = struct.Struct(">H")
_I32: Final = struct.Struct(">i")


def encode_int(value: int) -> bytes:
    """Hessian int in its shortest form."""
    if -0x10 <= value <= 0x2F:
        return bytes((value + 0x90,))
    if -0x800 <= value <= 0x7FF:
        return bytes((0xC8 + (value >> 8), value & 0xFF))
    if -0x40000 <= value <= 0x3FFFF:
        return bytes((0xD4 + (value >> 16), (value >> 8) & 0xFF, value & 0xFF))
    return b"I" + _I32.pack(value)


def encode_string(text: str) -> bytes:
    """Hessian string as Java writes it: UTF-16 unit lengths, CESU-8 for astral characters,
    chunks of 32768 units (``R`` … ``S``)."""
    if not text.isascii():
        text = "".join(
            ch
            if ch <= "\uffff"
            else chr(0xD7C0 + (ord(ch) >> 10)) + chr(0xDC00 + (ord(ch) & 0x3FF))
            for ch in text
        )
    parts = []
    while len(text) > 0x8000:
        parts += [b"R\x80\x00", text[:0x8000].encode("utf-8", "surrogatepass")]
        text = text[0x8000:]
    units, raw = len(text), text.encode("utf-8", "surrogatepass")
    if units < 0x20:
        parts += [bytes((units,)), raw]
    elif units < 0x400:
        parts += [bytes((0x30 + (units >> 8), units & 0xFF)), raw]
    else:
        parts += [b"S" + _U16.pack(units), raw]
    return b"".join(parts)
