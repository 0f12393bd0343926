"""check_codec over every transport x protocol, with samples written by real Thrift libs."""

from __future__ import annotations

import pytest

from aeraki.codec.registry import resolve_codec
from aeraki.codec.thrift import ThriftCodec
from aeraki.testing.conformance import check_codec
from tests.codec.thrift import wire

GARBAGE = [
    b"GET / HTTP/1.1\r\n\r\n",
    b"\x00\x00\x00\x00\x80\x01\x00\x01",  # zero frame length
    b"\x7f\xff\xff\xff\x80\x01\x00\x01",  # frame length over the cap
    b"\x80\x02\x00\x01\x00\x00\x00\x00",  # binary version 2
    b"\x82\x22\x00\x00",  # compact version 2
    b"\x00\x00\x00\x08\x0f\xff\x00\x00\x00\x00\x00\x00",  # header frame shorter than header
    b"\xff" * 64,
]


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
def test_check_codec_apache_samples(transport: str, protocol: str) -> None:
    check_codec(
        ThriftCodec,
        wire.requests_for(transport, protocol),
        wire.responses_for(transport, protocol),
        garbage=GARBAGE,
        mutations=300,
        seed=wire.MATRIX.index((transport, protocol)),
    )


@pytest.mark.parametrize("transport", ["framed", "unframed"])
@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
def test_check_codec_thriftpy2_samples(transport: str, protocol: str) -> None:
    samples = [wire.thriftpy2_call(transport, protocol, seqid) for seqid in (0, 1, 2**31 - 1)]
    check_codec(ThriftCodec, samples, garbage=GARBAGE, mutations=300)


def test_registry_name_resolves_to_the_codec() -> None:
    assert resolve_codec("aeraki.meta_protocol.codec.thrift") is ThriftCodec
    assert ThriftCodec.name == "aeraki.meta_protocol.codec.thrift"


def test_capabilities() -> None:
    caps = ThriftCodec.capabilities
    assert caps.request_ids
    assert caps.rewrites_request_id
    assert caps.response_mutation
    assert not caps.heartbeats
