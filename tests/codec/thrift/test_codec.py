"""The one-pass decode of framed binary messages gives exactly what the general path gives.

Once a connection has shown framed binary, a read holding exactly one message is decoded by
``ThriftCodec._framed_binary`` and its ``ThriftMessage`` is built only when ``encode`` or
``on_error`` ask for it. These tests decode every sample twice — by a fresh codec (general
path: the first message of a connection always takes it) and by a codec that already saw one
(one-pass path, proved by making the general path's protocol check fail) — and compare the
metadata, the re-encoded bytes and the local replies; the reads the one-pass path must not
take (several, partial, malformed) must still decode or fail as before.
"""

from __future__ import annotations

import pytest
from thrift.Thrift import TMessageType

from aeraki.codec.api import ErrorType, LocalError, Metadata, Side
from aeraki.codec.thrift import ThriftCodec
from aeraki.codec.thrift.protocol import Protocol
from aeraki.errors import CodecError
from tests.codec.thrift import wire


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


_REQUESTS = wire.requests_for("framed", "binary")
_RESPONSES = wire.responses_for("framed", "binary")
_SAMPLES = {
    "call": _REQUESTS[0],
    "multiplexed call": _REQUESTS[1],
    "oneway, negative seqid": _REQUESTS[2],
    "reply": _RESPONSES[0],
    "reply with declared exception": _RESPONSES[1],
    "exception": _RESPONSES[2],
    "empty name": wire.apache_message("framed", "binary", "", TMessageType.CALL, 9, wire.rich_args),
    "non-utf8 name": _framed(bytes.fromhex("80010001000000020aff0000000300")),
}
_WARM_UP = wire.apache_message("framed", "binary", "warm", TMessageType.CALL, 1, wire.rich_args)


def _general(side: Side, data: bytes) -> list[Metadata]:
    """Decoded by the general path (the first read of a fresh codec)."""
    return ThriftCodec(side).decode(data)


def _warm(side: Side, monkeypatch: pytest.MonkeyPatch) -> ThriftCodec:
    """A codec past its first framed binary message whose general path now fails loudly."""
    codec = ThriftCodec(side)
    codec.decode(_WARM_UP)

    def general_path(*_: object) -> Protocol:
        raise AssertionError("the general path decoded a one-pass message")

    monkeypatch.setattr(codec, "_check_protocol", general_path)
    return codec


def _facts(md: Metadata) -> tuple[object, ...]:
    return (
        md.message_type,
        md.response_status,
        md.request_id,
        md.strings,
        md.operation_name,
        md.header_size,
        md.body_size,
        md.idempotent,
        md.deferred,
    )


@pytest.mark.parametrize("name", list(_SAMPLES))
@pytest.mark.parametrize("side", [Side.REQUEST, Side.RESPONSE])
def test_one_pass_metadata_equals_general_path(
    name: str, side: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = _SAMPLES[name]
    (expected,) = _general(side, sample)
    (md,) = _warm(side, monkeypatch).decode(sample)
    assert _facts(md) == _facts(expected)
    assert md.origin is sample


@pytest.mark.parametrize("name", list(_SAMPLES))
def test_one_pass_message_encodes_and_replies_like_general_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = _SAMPLES[name]
    general = ThriftCodec(Side.REQUEST)
    (expected,) = general.decode(sample)
    warm = _warm(Side.REQUEST, monkeypatch)
    (md,) = warm.decode(sample)
    assert warm.encode(md, {}) is sample
    for new_id in (expected.request_id, 77, 0xFFFFFFFF, -1):
        assert warm.encode(md, {}, request_id=new_id) == general.encode(
            expected, {}, request_id=new_id
        )
    error = LocalError(ErrorType.TIMEOUT, "too slow")
    assert warm.on_error(md, error) == general.on_error(expected, error)
    # A clone (mirrors) re-encodes the same way.
    assert warm.encode(md.clone(), {}, request_id=5) == general.encode(expected, {}, request_id=5)


def test_rewritten_seqid_is_read_back() -> None:
    codec = ThriftCodec(Side.REQUEST)
    codec.decode(_WARM_UP)
    (md,) = codec.decode(_SAMPLES["multiplexed call"])
    (again,) = ThriftCodec(Side.REQUEST).decode(codec.encode(md, {}, request_id=0x12345678))
    assert again.request_id == 0x12345678
    assert again.strings == md.strings


def test_reads_of_several_or_partial_messages_still_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = ThriftCodec(Side.REQUEST)
    codec.decode(_WARM_UP)
    first, second = _SAMPLES["call"], _SAMPLES["multiplexed call"]
    assert [md.request_id for md in codec.decode(first + second)] == [5, 6]
    assert codec.decode(first[:7]) == []
    assert [md.request_id for md in codec.decode(first[7:] + second[:3])] == [5]
    (md,) = codec.decode(second[3:])
    assert md.origin == second
    assert md.operation_name == "Hello/sayHello"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        # version 0x8002: not the binary protocol
        (_framed(bytes.fromhex("8002000100000000000000")), "unknown protocol"),
        # compact after binary
        (_framed(bytes.fromhex("82210102686900")), "COMPACT message after BINARY"),
        # message type 5 does not exist
        (_framed(bytes.fromhex("800100050000000268690000000100")), "unknown message type 5"),
        # the name runs past the frame
        (_framed(bytes.fromhex("80010001000000406869000000010000")), "runs past the end"),
        # a negative name length
        (_framed(bytes.fromhex("8001000180000000000000000000")), "bad method name length"),
    ],
)
def test_malformed_messages_fail_as_before(data: bytes, error: str) -> None:
    codec = ThriftCodec(Side.REQUEST)
    codec.decode(_WARM_UP)
    with pytest.raises(CodecError, match=error):
        codec.decode(data)
