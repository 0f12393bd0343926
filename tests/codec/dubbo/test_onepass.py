"""The one-pass decode (``.onepass``) gives the metadata the general path gives, takes the
usual reads, leaves everything else to the general path, and its per-connection cache of a
request's leading strings never serves the wrong strings."""

from __future__ import annotations

from typing import cast

import pytest

from aeraki.codec.api import Metadata, Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.body import DubboFrame
from aeraki.codec.dubbo.onepass import FrameReader
from aeraki.errors import CodecError
from tests.codec.dubbo import h2w
from tests.codec.dubbo.samples import BAD_BODIES, REQUESTS, RESPONSES

#: Frames the one-pass path must leave to the general path (which decodes them).
GENERAL_ONLY: list[bytes] = [
    h2w.heartbeat_request(3),
    h2w.heartbeat_response(4),
    h2w.request(interface="中文.Service"),  # not ASCII
    h2w.request(interface="a" * 200),  # 0x30 form with a length byte ≥ 0x80
    h2w.request(method="m" * 2000),  # the 'S' form
    h2w.frame(0xC2, 0, 1, b"\x052.0.2N\x010\x01m\x00N"),  # a null interface
    h2w.frame(0xC2, 0, 1, b"".join(h2w.string(s) for s in ("2.0.2", "a.B", "", "m"))),  # ends
    h2w.response(1, h2w.string("v"), status=30),
    h2w.frame(0x02, 20, 1, h2w.int_(1, form="I") + h2w.string("v")),  # 5-byte int form
]
#: Frames the one-pass path must leave to the general path, which rejects them.
REJECTED: list[bytes] = [
    h2w.frame(0x06, 20, 1, h2w.int_(1) + h2w.string("v")),  # an OK response not in Hessian2
    h2w.frame(0x02, 20, 1, h2w.int_(6) + h2w.string("v")),  # result type 6
    h2w.frame(0x02, 20, 1, h2w.int_(-1) + h2w.string("v")),  # result type -1
    h2w.frame(0x02, 25, 1, h2w.int_(1) + h2w.string("v")),  # no such status
    h2w.frame(0xC6, 0, 1, b"".join(h2w.string(s) for s in ("2.0.2", "a.B", "", "m", ""))),
    h2w.frame(0xC2, 0, 1, h2w.string("2.0.2") + b"\x05a.B"),  # a string past the end
    h2w.frame(0xC2, 0, 1, b"0"),  # a two-byte string length cut by the end
    h2w.frame(0xC2, 0, 1, h2w.string("2.0.2") + b"\x31"),
]


def _snapshot(md: Metadata, codec: DubboCodec) -> tuple[object, ...]:
    """Everything a caller can see of ``md``, loading and encoding included."""
    info = md.get("dubbo")
    assert isinstance(info, DubboFrame)
    fields = (
        md.message_type,
        md.response_status,
        md.idempotent,
        md.request_id,
        md.stream_id,
        md.header_size,
        md.body_size,
        md.operation_name,
        md.origin,
        dict(md.strings),
        sorted(md.values),
        md.deferred is info,
        md.deferred is None,
        (info.flag, info.status, info.frame, info.body_at, info.result_type),
    )
    loaded = dict(md.load_strings())
    try:
        encoded: object = codec.encode(md, {"k": "v", "path": "p"}, request_id=77)
    except CodecError as exc:
        encoded = type(exc)
    return (*fields, loaded, encoded, codec.encode(md, {}) is md.origin)


def _general(data: bytes, side: Side) -> tuple[object, ...]:
    codec = DubboCodec(side)
    (md,) = codec.decode(cast(bytes, bytearray(data)))  # not bytes: never the one-pass path
    return _snapshot(md, codec)


def _one_pass(data: bytes, side: Side, codec: DubboCodec | None = None) -> tuple[object, ...]:
    codec = codec if codec is not None else DubboCodec(side)
    (md,) = codec.decode(data)
    return _snapshot(md, codec)


ALL = [(f, Side.REQUEST) for f in REQUESTS] + [(f, Side.RESPONSE) for f in RESPONSES]
ALL += [(f, Side.REQUEST if f[2] & 0x80 else Side.RESPONSE) for f in BAD_BODIES + GENERAL_ONLY]


@pytest.mark.parametrize(("data", "side"), ALL)
def test_both_paths_give_the_same_metadata(data: bytes, side: Side) -> None:
    assert _one_pass(data, side) == _general(data, side)


@pytest.mark.parametrize(("data", "side"), ALL)
def test_a_warm_cache_gives_the_same_metadata(data: bytes, side: Side) -> None:
    """The same frame twice on one connection (the second may come from the cache), and
    after another request whose strings differ."""
    codec = DubboCodec(side)
    first = _one_pass(data, side, codec)
    assert _one_pass(data, side, codec) == first == _general(data, side)
    codec.decode(h2w.request(interface="other.Iface", method="other"))
    assert _one_pass(data, side, codec) == first


def test_the_usual_reads_take_the_one_pass_path() -> None:
    reader = FrameReader()
    usual = [
        REQUESTS[0],
        REQUESTS[1],
        REQUESTS[3],
        REQUESTS[-1],
        h2w.request(interface="a" * 100),
        *RESPONSES[:10],
    ]
    for data in usual:
        assert reader.read(data) is not None, data


@pytest.mark.parametrize("data", GENERAL_ONLY)
def test_anything_else_is_left_to_the_general_path(data: bytes) -> None:
    assert FrameReader().read(data) is None


@pytest.mark.parametrize("data", REJECTED)
def test_what_the_general_path_rejects_is_left_to_it(data: bytes) -> None:
    assert FrameReader().read(data) is None
    with pytest.raises(CodecError):
        DubboCodec(Side.REQUEST).decode(data)  # the frame's bits say what it is, not the side


def test_partial_and_coalesced_reads_are_left_to_the_general_path() -> None:
    frame = REQUESTS[0]
    reader = FrameReader()
    assert reader.read(frame + frame) is None
    assert reader.read(frame[:-1]) is None
    assert reader.read(frame[:16]) is None
    codec = DubboCodec(Side.REQUEST)
    assert codec.decode(frame[:20]) == []
    assert [md.request_id for md in codec.decode(frame[20:] + frame)] == [1, 1]


def test_the_cache_needs_the_same_bytes_and_a_body_after_them() -> None:
    """A cached head is reused only for a frame with those exact bytes followed by more
    body; a frame ending right after them is read afresh (and left to the general path)."""
    reader = FrameReader()
    head = b"".join(h2w.string(s) for s in ("2.0.2", "a.B", "1", "m"))
    first = reader.read(h2w.frame(0xC2, 0, 1, head + h2w.string("I") + h2w.int_(1) + b"N"))
    assert first is not None
    assert first.operation_name == "a.B/m"
    assert reader.read(h2w.frame(0xC2, 0, 2, head)) is None
    longer = b"".join(h2w.string(s) for s in ("2.0.2", "a.B", "1", "mm"))
    second = reader.read(h2w.frame(0x82, 0, 3, longer + h2w.string("") + b"N"))
    assert second is not None
    assert (second.operation_name, second.strings["method"]) == ("a.B/mm", "mm")
    assert second.get("dubbo").body_at == 16 + len(longer)


def test_alternating_methods_on_one_connection() -> None:
    codec = DubboCodec(Side.REQUEST)
    frames = [h2w.request(request_id=i, method=f"m{i % 3}", version=f"{i % 2}") for i in range(12)]
    for i, data in enumerate(frames):
        (md,) = codec.decode(data)
        assert (md.request_id, md.strings["method"], md.strings["version"]) == (
            i,
            f"m{i % 3}",
            f"{i % 2}",
        )
        assert md.get_string("x-user") == "jason"
