"""Invalid input raises CodecError only, with a clear message; limits bound buffering."""

from __future__ import annotations

import struct

import pytest

from aeraki.codec.api import Side
from aeraki.codec.thrift import ThriftCodec
from aeraki.codec.thrift import codec as codec_module
from aeraki.codec.thrift.transport import MAX_FRAME_SIZE
from aeraki.errors import CodecError

_BEGIN = bytes.fromhex("80010001 00000001 6d 00000001".replace(" ", ""))  # binary CALL "m"


def _decode(data: bytes) -> None:
    ThriftCodec(Side.REQUEST).decode(data)


def test_unknown_transport_names_the_first_bytes() -> None:
    with pytest.raises(CodecError, match="frame start 474554202f204854"):
        _decode(b"GET / HTTP/1.1\r\n")


def test_frame_over_the_cap_fails_at_once() -> None:
    with pytest.raises(CodecError, match="unknown thrift auto transport"):
        _decode(struct.pack(">i", MAX_FRAME_SIZE + 1) + b"\x80\x01\x00\x01")


def test_frame_at_the_cap_waits_for_data() -> None:
    codec = ThriftCodec(Side.REQUEST)
    assert codec.decode(struct.pack(">i", MAX_FRAME_SIZE) + b"\x80\x01\x00\x01") == []


def test_later_frame_over_the_cap_fails() -> None:
    codec = ThriftCodec(Side.REQUEST)
    frame = struct.pack(">i", len(_BEGIN) + 1) + _BEGIN + b"\x00"
    assert len(codec.decode(frame)) == 1
    with pytest.raises(CodecError, match="invalid frame length"):
        codec.decode(struct.pack(">i", MAX_FRAME_SIZE + 1))


def test_unframed_string_longer_than_the_cap_fails_at_once() -> None:
    with pytest.raises(CodecError, match="unframed message exceeds 16384000 bytes"):
        _decode(_BEGIN + b"\x0b\x00\x01" + struct.pack(">i", MAX_FRAME_SIZE))


def test_unframed_struct_that_never_ends_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec_module, "MAX_UNFRAMED_SIZE", 4096)
    codec = ThriftCodec(Side.REQUEST)
    codec.decode(_BEGIN)
    field = b"\x08\x00\x01\x00\x00\x00\x07"  # I32 field, again and again
    for _ in range(4096 // len(field * 8) - 1):
        assert codec.decode(field * 8) == []
    with pytest.raises(CodecError, match="exceeds 4096 bytes"):
        codec.decode(field * 8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x0c\x00\x01" * 100, "nesting deeper than 64"),
        (b"\x0b\x00\x01\xff\xff\xff\xff", "negative string length"),
        (b"\x0f\x00\x01\x08\xff\xff\xff\xff", "negative container size"),
        (b"\x0f\x00\x01\x63\x00\x00\x00\x01\x00", "unknown element type 99"),
        (b"\x05\x00\x01", "unknown field type 5"),
    ],
)
def test_bad_binary_structs(body: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        _decode(_BEGIN + body)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes.fromhex("8221") + b"\xff" * 11, "varint longer than 10 bytes"),
        (bytes.fromhex("8221") + b"\xff\xff\xff\xff\x7f", "does not fit 32 bits"),
        (bytes.fromhex("82210000") + b"\x1c" * 100, "nesting deeper than 64"),
        (bytes.fromhex("8221000019ee"), "unknown element type 14"),
        (bytes.fromhex("822100001e"), "unknown field type 14"),
    ],
)
def test_bad_compact_messages(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        _decode(data)


def test_unknown_message_type() -> None:
    with pytest.raises(CodecError, match="unknown message type 5"):
        _decode(bytes.fromhex("800100050000000000000000") + b"\x00")


def test_message_begin_past_the_frame() -> None:
    with pytest.raises(CodecError, match="runs past the end of its frame"):
        _decode(struct.pack(">i", 6) + _BEGIN[:6])


def _header_frame(region: bytes, payload: bytes = _BEGIN + b"\x00") -> bytes:
    fixed = struct.pack(">HHiH", 0x0FFF, 0, 1, len(region) // 4)
    body = fixed + region + payload
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize(
    ("region", "message"),
    [
        (b"\x00\x01\x01\x00", "transforms"),
        (b"\x05\x00\x00\x00", "unknown protocol id 5"),
        (b"\x00\x00\x01\x05", "headers run past the header length"),
        (b"\x02\x00\x00\x00", "declares COMPACT, message is BINARY"),
    ],
)
def test_bad_header_frames(region: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        _decode(_header_frame(region))


def test_header_length_past_the_frame() -> None:
    frame = bytearray(_header_frame(b"\x00\x00\x00\x00"))
    frame[12:14] = b"\x01\x00"
    with pytest.raises(CodecError, match="header length runs past the frame"):
        _decode(bytes(frame))
