"""Decoding: byte tables per transport x protocol, metadata, chunking, laziness, big messages."""

from __future__ import annotations

from typing import Any

import pytest
from thrift.Thrift import TMessageType, TType

from aeraki.codec.api import MessageType, ResponseStatus, Side
from aeraki.codec.thrift import ThriftCodec
from aeraki.errors import CodecError
from tests.codec.thrift import wire


def _empty_struct(proto: Any) -> None:
    proto.writeStructBegin("args")
    proto.writeFieldStop()
    proto.writeStructEnd()


#: CALL "hi", seqid 1, empty args, as Apache Thrift writes it (header_size, bytes).
BYTE_TABLE = {
    ("framed", "binary"): (18, "0000000f800100010000000268690000000100"),
    ("framed", "compact"): (10, "0000000782210102686900"),
    ("unframed", "binary"): (14, "800100010000000268690000000100"),
    ("unframed", "compact"): (6, "82210102686900"),
    ("header", "binary"): (
        32,
        "0000001d0fff000000000001000100000000800100010000000268690000000100",
    ),
    ("header", "compact"): (24, "000000150fff00000000000100010200000082210102686900"),
}


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
def test_byte_table(transport: str, protocol: str) -> None:
    header_size, hex_bytes = BYTE_TABLE[(transport, protocol)]
    sample = bytes.fromhex(hex_bytes)
    apache = wire.apache_message(transport, protocol, "hi", TMessageType.CALL, 1, _empty_struct)
    assert apache == sample
    (md,) = ThriftCodec(Side.REQUEST).decode(sample)
    assert md.message_type is MessageType.REQUEST
    assert md.request_id == 1
    assert md.strings == {"method": "hi"}
    assert md.operation_name == "hi"
    assert (md.header_size, md.body_size) == (header_size, len(sample) - header_size)
    assert md.origin is sample


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
def test_requests_metadata(transport: str, protocol: str) -> None:
    plain, multiplexed, oneway = wire.requests_for(transport, protocol)
    codec = ThriftCodec(Side.REQUEST)
    first, second, third = codec.decode(plain + multiplexed + oneway)
    assert (first.message_type, first.request_id) == (MessageType.REQUEST, 5)
    assert first.get_string("method") == "sayHello"
    assert not first.has_string("service")
    assert (second.get_string("service"), second.get_string("method")) == ("Hello", "sayHello")
    assert second.operation_name == "Hello/sayHello"
    assert (third.message_type, third.get_string("method")) == (MessageType.ONEWAY, "ping")
    assert third.request_id == 0xFFFFFFFE  # seqid -2 as unsigned 32-bit
    for md, sample in zip((first, second, third), (plain, multiplexed, oneway), strict=True):
        assert md.origin == sample
        assert md.header_size + md.body_size == len(sample)


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
def test_responses_metadata(transport: str, protocol: str) -> None:
    ok, declared, exception = ThriftCodec(Side.RESPONSE).decode(
        b"".join(wire.responses_for(transport, protocol))
    )
    assert (ok.message_type, ok.response_status) == (MessageType.RESPONSE, ResponseStatus.OK)
    # An IDL-declared exception is a normal REPLY (§28.3): status stays OK.
    assert (declared.message_type, declared.response_status) == (
        MessageType.RESPONSE,
        ResponseStatus.OK,
    )
    assert (exception.message_type, exception.response_status) == (
        MessageType.ERROR,
        ResponseStatus.ERROR,
    )
    assert [md.request_id for md in (ok, declared, exception)] == [5, 6, 7]


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
def test_split_at_every_offset(transport: str, protocol: str) -> None:
    stream = b"".join(wire.requests_for(transport, protocol))
    expected = [md.origin for md in ThriftCodec(Side.REQUEST).decode(stream)]
    for cut in range(len(stream) + 1):
        codec = ThriftCodec(Side.REQUEST)
        got = codec.decode(stream[:cut]) + codec.decode(stream[cut:])
        assert [md.origin for md in got] == expected


def test_smallest_unframed_compact_message_is_not_held_back() -> None:
    message = bytes.fromhex("8221000000")  # compact CALL, seqid 0, empty name, STOP
    codec = ThriftCodec(Side.REQUEST)
    out = [md for byte in message for md in codec.decode(bytes([byte]))]
    assert len(out) == 1
    assert out[0].origin == message
    assert not out[0].has_string("method")


def test_framed_body_is_not_walked() -> None:
    """Lazy decode (DESIGN §4): a framed body is forwarded, never parsed."""
    begin = bytes.fromhex("80010001 00000002 6869 00000009".replace(" ", ""))
    frame = (len(begin) + 3).to_bytes(4, "big") + begin + b"\xee\xee\xee"  # 0xee: no type
    (md,) = ThriftCodec(Side.REQUEST).decode(frame)
    assert md.request_id == 9
    assert ThriftCodec(Side.REQUEST).encode(md, {}) is frame


def test_unframed_body_is_scanned() -> None:
    message = bytes.fromhex("80010001 00000002 6869 00000009 ee".replace(" ", ""))
    with pytest.raises(CodecError, match="unknown field type 238"):
        ThriftCodec(Side.REQUEST).decode(message)


def test_transport_is_fixed_after_detection() -> None:
    framed = wire.requests_for("framed", "binary")[0]
    unframed = wire.requests_for("unframed", "binary")[0]
    codec = ThriftCodec(Side.REQUEST)
    assert len(codec.decode(framed)) == 1
    with pytest.raises(CodecError, match="invalid frame length"):
        codec.decode(unframed)


def test_protocol_is_fixed_after_detection() -> None:
    codec = ThriftCodec(Side.REQUEST)
    codec.decode(wire.requests_for("framed", "binary")[0])
    with pytest.raises(CodecError, match="COMPACT message after BINARY"):
        codec.decode(wire.requests_for("framed", "compact")[0])


def _big_string(size: int) -> wire.Writer:
    def write(proto: Any) -> None:
        proto.writeStructBegin("args")
        proto.writeFieldBegin("data", TType.STRING, 1)
        proto.writeBinary(b"x" * size)
        proto.writeFieldEnd()
        proto.writeFieldBegin("n", TType.I32, 2)
        proto.writeI32(7)
        proto.writeFieldEnd()
        proto.writeFieldStop()
        proto.writeStructEnd()

    return write


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
def test_one_mebibyte_message_in_64k_reads(transport: str, protocol: str) -> None:
    sample = wire.apache_message(
        transport, protocol, "upload", TMessageType.CALL, 3, _big_string(1 << 20)
    )
    codec = ThriftCodec(Side.REQUEST)
    out = []
    for offset in range(0, len(sample), 65536):
        out += codec.decode(sample[offset : offset + 65536])
    assert len(out) == 1
    assert out[0].origin == sample
    assert out[0].body_size > 1 << 20
    assert codec.encode(out[0], {}) is out[0].origin


def _many_fields(count: int) -> wire.Writer:
    def write(proto: Any) -> None:
        proto.writeStructBegin("args")
        for index in range(count):
            proto.writeFieldBegin("f", TType.I32, index % 30000 + 1)
            proto.writeI32(index)
            proto.writeFieldEnd()
        proto.writeFieldStop()
        proto.writeStructEnd()

    return write


@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
def test_unframed_scan_resumes_instead_of_rescanning(protocol: str) -> None:
    sample = wire.apache_message(
        "unframed", protocol, "many", TMessageType.CALL, 1, _many_fields(50_000)
    )
    codec = ThriftCodec(Side.REQUEST)
    assert codec.decode(sample[: len(sample) // 2]) == []
    resume = codec._resume
    assert resume > len(sample) // 2 - 16  # scanning stopped at the last complete field
    out = []
    for offset in range(len(sample) // 2, len(sample), 4096):
        out += codec.decode(sample[offset : offset + 4096])
    assert [md.origin for md in out] == [sample]
    assert codec._resume == 0
