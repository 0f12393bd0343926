"""THeader: routable info headers and mutation written back as headers (§28.1, §33.12)."""

from __future__ import annotations

import pytest
from thrift.Thrift import TMessageType

from aeraki.codec.api import Metadata, Side
from aeraki.codec.thrift import ThriftCodec
from tests.codec.thrift import wire


def _decode(sample: bytes, side: Side = Side.REQUEST) -> Metadata:
    (md,) = ThriftCodec(side).decode(sample)
    return md


@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
def test_info_headers_are_routable(protocol: str) -> None:
    md = _decode(wire.requests_for("header", protocol)[0])
    assert md.get_string("x-tenant") == "blue"
    assert md.get_string("X-TENANT") == "blue"
    assert md.get_string("trace") == "t-1"


def test_protocol_method_wins_over_a_header_named_method() -> None:
    sample = wire.apache_message(
        "header", "binary", "real", TMessageType.CALL, 1, wire.rich_args, {b"method": b"fake"}
    )
    assert _decode(sample).get_string("method") == "real"


@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
@pytest.mark.parametrize("side", list(Side))
def test_mutation_round_trip_through_apache(protocol: str, side: Side) -> None:
    sample = (
        wire.requests_for("header", protocol)[0]
        if side is Side.REQUEST
        else wire.responses_for("header", protocol)[0]
    )
    md = _decode(sample, side)
    mutated = ThriftCodec(side).encode(md, {"X-Tenant": "green", "x-route": "v2"})
    headers, name, _, seqid, _ = wire.read_header_frame(mutated)
    expected = dict(wire.read_header_frame(sample)[0])
    expected[b"X-Tenant"] = b"green"  # replaced on requests, added on responses
    expected[b"x-route"] = b"v2"
    assert headers == expected
    assert (name, seqid) == ("sayHello", 5)
    again = _decode(mutated, side)
    assert again.get_string("x-tenant") == "green"
    assert again.get_string("x-route") == "v2"
    # The protocol message itself is forwarded byte-exact behind the new headers.
    assert mutated[again.values["thrift"].offset :] == sample[md.values["thrift"].offset :]
    assert int.from_bytes(mutated[:4], "big") == len(mutated) - 4


def test_replaced_key_keeps_its_position() -> None:
    md = _decode(wire.requests_for("header", "binary")[0])
    mutated = ThriftCodec(Side.REQUEST).encode(md, {"x-tenant": "red"})
    assert list(wire.read_header_frame(mutated)[0]) == [b"x-tenant", b"trace"]


@pytest.mark.parametrize("size", range(8))
def test_padding_for_every_header_length(size: int) -> None:
    md = _decode(wire.requests_for("header", "compact")[1])
    mutated = ThriftCodec(Side.REQUEST).encode(md, {"k": "v" * size})
    header_words = int.from_bytes(mutated[12:14], "big")
    payload = 14 + header_words * 4
    assert mutated[payload:] == md.origin[md.values["thrift"].offset :]
    headers, name, *_ = wire.read_header_frame(mutated)
    assert (headers, name) == ({b"k": b"v" * size}, "Hello:sayHello")


@pytest.mark.parametrize("transport", ["framed", "unframed"])
def test_mutation_without_headers_forwards_origin(transport: str) -> None:
    md = _decode(wire.requests_for(transport, "binary")[0])
    assert ThriftCodec(Side.REQUEST).encode(md, {"x-route": "v2"}) is md.origin


def test_empty_mutation_is_origin_itself() -> None:
    md = _decode(wire.requests_for("header", "binary")[0])
    assert ThriftCodec(Side.REQUEST).encode(md, {}) is md.origin


def test_non_ascii_header_values_round_trip() -> None:
    sample = wire.apache_message(
        "header", "binary", "m", TMessageType.CALL, 1, wire.rich_args, {b"k": b"\xff\xfe"}
    )
    md = _decode(sample)
    mutated = ThriftCodec(Side.REQUEST).encode(md, {"other": "é"})
    assert wire.read_header_frame(mutated)[0] == {b"k": b"\xff\xfe", b"other": "é".encode()}
