"""encode(..., request_id=N): sequence id rewrite for shared upstream connections."""

from __future__ import annotations

import pytest

from aeraki.codec.api import Metadata, Side
from aeraki.codec.thrift import ThriftCodec
from aeraki.errors import CodecError
from tests.codec.thrift import wire

IDS = [0, 1, 127, 128, 16384, 2**31 - 1, 2**31, 0xFFFFFFFE, 0xFFFFFFFF, -1, -(2**31)]


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def _decode(sample: bytes) -> Metadata:
    (md,) = ThriftCodec(Side.REQUEST).decode(sample)
    return md


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
@pytest.mark.parametrize("new_id", IDS)
def test_rewrite_read_by_apache(transport: str, protocol: str, new_id: int) -> None:
    sample = wire.requests_for(transport, protocol)[0]
    md = _decode(sample)
    rewritten = ThriftCodec(Side.REQUEST).encode(md, {}, request_id=new_id)
    again = _decode(rewritten)
    assert again.request_id == new_id & 0xFFFFFFFF
    assert again.strings == md.strings
    iprot = wire.apache_reader(transport, protocol, rewritten)
    assert iprot.readMessageBegin() == ("sayHello", 1, _signed(new_id))
    if transport == "header":
        assert iprot.trans.sequence_id == _signed(new_id)  # THeader's own seq id agrees
    # and back: the original bytes exactly
    assert ThriftCodec(Side.REQUEST).encode(again, {}, request_id=5) == sample


def test_compact_varint_growth_recomputes_frame_length() -> None:
    md = _decode(wire.requests_for("framed", "compact")[0])
    rewritten = ThriftCodec(Side.REQUEST).encode(md, {}, request_id=2**31)
    assert len(rewritten) == len(md.origin) + 4  # varint 1 byte -> 5 bytes
    assert int.from_bytes(rewritten[:4], "big") == len(rewritten) - 4


def test_same_id_is_origin_itself() -> None:
    md = _decode(wire.requests_for("framed", "binary")[0])
    assert ThriftCodec(Side.REQUEST).encode(md, {}, request_id=5) is md.origin


@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
def test_rewrite_and_mutation_together_on_header(protocol: str) -> None:
    md = _decode(wire.requests_for("header", protocol)[0])
    out = ThriftCodec(Side.REQUEST).encode(md, {"x-route": "v2"}, request_id=77)
    headers, name, _, seqid, proto = wire.read_header_frame(out)
    assert (headers[b"x-route"], name, seqid, proto.trans.sequence_id) == (
        b"v2",
        "sayHello",
        77,
        77,
    )


@pytest.mark.parametrize("bad", [2**32, -(2**31) - 1, 2**64])
def test_out_of_range_id_is_a_codec_error(bad: int) -> None:
    md = _decode(wire.requests_for("framed", "binary")[0])
    with pytest.raises(CodecError, match="does not fit"):
        ThriftCodec(Side.REQUEST).encode(md, {}, request_id=bad)


def test_metadata_from_another_codec_is_refused() -> None:
    with pytest.raises(CodecError, match="not decoded by the thrift codec"):
        ThriftCodec(Side.REQUEST).encode(Metadata(), {}, request_id=1)
