"""An independent little Hessian 2.0 writer for tests, plus Dubbo frame builders.

Written from the Hessian 2.0 serialization spec, separately from the codec's own writer, so
tests do not check the codec against itself. Each function returns the bytes of one value;
containers take already-encoded values.
"""

from __future__ import annotations

import struct

MAGIC = b"\xda\xbb"
SVC = "org.apache.dubbo.samples.api.GreetingsService"
ATTACHMENTS = {
    "path": SVC,
    "interface": SVC,
    "version": "1.0.0",
    "timeout": "3000",
    "x-user": "jason",
}


def null() -> bytes:
    return b"N"


def boolean(value: bool) -> bytes:
    return b"T" if value else b"F"


def int_(value: int, *, form: str = "short") -> bytes:
    """Hessian int; ``form="I"`` forces the 5-byte form."""
    if form == "short":
        if -16 <= value <= 47:
            return bytes([0x90 + value])
        if -2048 <= value <= 2047:
            return bytes([0xC8 + (value >> 8), value & 0xFF])
        if -262144 <= value <= 262143:
            return bytes([0xD4 + (value >> 16), (value >> 8) & 0xFF, value & 0xFF])
    return b"I" + struct.pack(">i", value)


def long_(value: int, *, form: str = "short") -> bytes:
    if form == "short":
        if -8 <= value <= 15:
            return bytes([0xE0 + value])
        if -2048 <= value <= 2047:
            return bytes([0xF8 + (value >> 8), value & 0xFF])
        if -262144 <= value <= 262143:
            return bytes([0x3C + (value >> 16), (value >> 8) & 0xFF, value & 0xFF])
        if -(2**31) <= value < 2**31:
            return b"Y" + struct.pack(">i", value)
    return b"L" + struct.pack(">q", value)


def double(value: float) -> bytes:
    if value == 0.0:
        return b"\x5b"
    if value == 1.0:
        return b"\x5c"
    if value.is_integer() and -128 <= value <= 127:
        return b"\x5d" + struct.pack(">b", int(value))
    if value.is_integer() and -32768 <= value <= 32767:
        return b"\x5e" + struct.pack(">h", int(value))
    return b"D" + struct.pack(">d", value)


def date_ms(millis: int) -> bytes:
    return b"\x4a" + struct.pack(">q", millis)


def date_minutes(minutes: int) -> bytes:
    return b"\x4b" + struct.pack(">i", minutes)


def _units(text: str) -> list[str]:
    """``text`` as UTF-16 code units (astral characters become two surrogates)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            out += [chr(0xD800 + (code >> 10)), chr(0xDC00 + (code & 0x3FF))]
        else:
            out.append(ch)
    return out


def string(text: str, *, chunk: int = 0x8000, form: str = "short") -> bytes:
    """Hessian string (CESU-8 like Java); ``chunk`` sets the 'R' chunk size in units,
    ``form="S"`` forces the 'S' form for the last chunk."""
    units = _units(text)
    parts = []
    while len(units) > chunk:
        piece, units = units[:chunk], units[chunk:]
        parts.append(b"R" + struct.pack(">H", len(piece)) + _cesu(piece))
    n = len(units)
    if form == "short" and n <= 31:
        parts.append(bytes([n]) + _cesu(units))
    elif form == "short" and n <= 1023:
        parts.append(bytes([0x30 + (n >> 8), n & 0xFF]) + _cesu(units))
    else:
        parts.append(b"S" + struct.pack(">H", n) + _cesu(units))
    return b"".join(parts)


def _cesu(units: list[str]) -> bytes:
    return "".join(units).encode("utf-8", "surrogatepass")


def binary(data: bytes, *, chunk: int = 0x8000) -> bytes:
    parts = []
    while len(data) > chunk:
        piece, data = data[:chunk], data[chunk:]
        parts.append(b"A" + struct.pack(">H", len(piece)) + piece)
    n = len(data)
    if n <= 15:
        parts.append(bytes([0x20 + n]) + data)
    elif n <= 1023:
        parts.append(bytes([0x34 + (n >> 8), n & 0xFF]) + data)
    else:
        parts.append(b"B" + struct.pack(">H", n) + data)
    return b"".join(parts)


def list_(items: list[bytes], *, type_: str | int | None = None, fixed: bool = True) -> bytes:
    body = b"".join(items)
    type_bytes = b"" if type_ is None else _type(type_)
    if not fixed:
        return (b"U" + type_bytes if type_ is not None else b"W") + body + b"Z"
    if len(items) <= 7:
        tag = (0x70 if type_ is not None else 0x78) + len(items)
        return bytes([tag]) + type_bytes + body
    if type_ is not None:
        return b"V" + type_bytes + int_(len(items)) + body
    return b"X" + int_(len(items)) + body


def _type(type_: str | int) -> bytes:
    return int_(type_) if isinstance(type_, int) else string(type_)


def map_(pairs: list[tuple[bytes, bytes]], *, type_: str | int | None = None) -> bytes:
    body = b"".join(k + v for k, v in pairs)
    head = b"H" if type_ is None else b"M" + _type(type_)
    return head + body + b"Z"


def str_map(entries: dict[str, str]) -> bytes:
    return map_([(string(k), string(v)) for k, v in entries.items()])


def class_def(name: str, fields: list[str]) -> bytes:
    return b"C" + string(name) + int_(len(fields)) + b"".join(string(f) for f in fields)


def obj(index: int, values: list[bytes], *, long_form: bool = False) -> bytes:
    if index <= 15 and not long_form:
        return bytes([0x60 + index]) + b"".join(values)
    return b"O" + int_(index) + b"".join(values)


def ref(index: int) -> bytes:
    return b"Q" + int_(index)


def frame(flag: int, status: int, request_id: int, body: bytes) -> bytes:
    return MAGIC + struct.pack(">BBQi", flag, status, request_id, len(body)) + body


def request(
    *,
    request_id: int = 1,
    two_way: bool = True,
    interface: str = SVC,
    method: str = "sayHi",
    version: str = "1.0.0",
    descriptor: str = "Ljava/lang/String;",
    args: tuple[bytes, ...] = (b"\x05world",),
    attachments: bytes | None = None,
    dubbo_version: str = "2.0.2",
) -> bytes:
    """A Dubbo request frame; ``attachments`` defaults to :data:`ATTACHMENTS`."""
    body = b"".join(
        [
            string(dubbo_version),
            string(interface),
            string(version),
            string(method),
            string(descriptor),
            *args,
            str_map(ATTACHMENTS) if attachments is None else attachments,
        ]
    )
    return frame(0xC2 if two_way else 0x82, 0, request_id, body)


def response(
    result_type: int,
    value: bytes = b"",
    attachments: bytes = b"",
    *,
    request_id: int = 1,
    status: int = 20,
) -> bytes:
    return frame(0x02, status, request_id, int_(result_type) + value + attachments)


def heartbeat_request(request_id: int = 9) -> bytes:
    return frame(0xE2, 0, request_id, b"N")


def heartbeat_response(request_id: int = 9) -> bytes:
    return frame(0x22, 20, request_id, b"N")
