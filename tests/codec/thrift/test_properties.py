"""Hypothesis: random and mutated input raise only CodecError and always return; the
scanner finds the exact end of any struct Apache writes; ids and chunking round-trip."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.Thrift import TMessageType, TType

from aeraki.codec.api import Metadata, Side
from aeraki.codec.thrift import ThriftCodec
from aeraki.errors import CodecError
from tests.codec.thrift import wire

SAMPLES = [
    s for t, p in wire.MATRIX for s in wire.requests_for(t, p)[:2] + wire.responses_for(t, p)[:1]
]
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    TType.BOOL: st.booleans(),
    TType.BYTE: st.integers(-128, 127),
    TType.I16: st.integers(-(2**15), 2**15 - 1),
    TType.I32: st.integers(-(2**31), 2**31 - 1),
    TType.I64: st.integers(-(2**63), 2**63 - 1),
    TType.DOUBLE: st.floats(allow_nan=False),
    TType.STRING: st.text(max_size=20),
}


def _decode_chunked(side: Side, data: bytes, cuts: list[int]) -> list[Metadata]:
    codec = ThriftCodec(side)
    out: list[Metadata] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out += codec.decode(data[start:cut])
        start = cut
    return out


def _exercise(side: Side, data: bytes, cuts: list[int]) -> None:
    """Decode, then encode every message with a mutation and an id: only CodecError."""
    try:
        for md in _decode_chunked(side, data, cuts):
            codec = ThriftCodec(side)
            codec.encode(md, {"x-k": "v"}, request_id=md.request_id ^ 1)
            codec.encode(md, {})
    except CodecError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from(list(Side)), st.lists(st.integers(0, 300)))
def test_random_bytes_raise_only_codec_error(data: bytes, side: Side, cuts: list[int]) -> None:
    _exercise(side, data, cuts)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        index = draw(st.integers(0, len(data)))
        if action == "flip" and index < len(data):
            data[index] = draw(st.integers(0, 255))
        elif action == "insert":
            data[index:index] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[index : index + draw(st.integers(1, 4))]
    return bytes(data)


@settings(max_examples=500)
@given(mutated_samples(), st.sampled_from(list(Side)), st.lists(st.integers(0, 400)))
def test_mutated_frames_raise_only_codec_error(data: bytes, side: Side, cuts: list[int]) -> None:
    _exercise(side, data, cuts)


@given(st.sampled_from(wire.MATRIX), st.data())
def test_chunking_never_changes_the_result(pair: tuple[str, str], data: st.DataObject) -> None:
    transport, protocol = pair
    stream = b"".join(wire.requests_for(transport, protocol))
    cuts = data.draw(st.lists(st.integers(0, len(stream))))
    got = _decode_chunked(Side.REQUEST, stream, cuts)
    assert [md.origin for md in got] == wire.requests_for(transport, protocol)


@given(st.sampled_from(SAMPLES), st.integers(-(2**31), 2**32 - 1))
def test_request_id_rewrite_round_trips(sample: bytes, new_id: int) -> None:
    (md,) = ThriftCodec(Side.REQUEST).decode(sample)
    rewritten = ThriftCodec(Side.REQUEST).encode(md, {}, request_id=new_id)
    (again,) = ThriftCodec(Side.REQUEST).decode(rewritten)
    assert again.request_id == new_id & 0xFFFFFFFF
    assert ThriftCodec(Side.REQUEST).encode(again, {}, request_id=md.request_id) == sample


# -- generated structs: the skip-scanner must find exactly where Apache's writer stopped --
@st.composite
def typed_value(draw: st.DrawFn, depth: int = 0) -> tuple[int, Any]:
    kinds = list(_SCALARS) + ([TType.STRUCT, TType.LIST, TType.SET, TType.MAP] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    return kind, draw(_value_of(kind, depth))


def _value_of(kind: int, depth: int) -> st.SearchStrategy[Any]:
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == TType.STRUCT:
        field = st.tuples(st.integers(1, 400), typed_value(depth + 1))
        return st.lists(field, max_size=4, unique_by=lambda f: f[0])
    element = st.sampled_from([*_SCALARS, TType.STRUCT])
    if kind == TType.MAP:
        return st.tuples(st.sampled_from(list(_SCALARS)), element).flatmap(
            lambda kv: st.tuples(
                st.just(kv),
                st.lists(
                    st.tuples(_value_of(kv[0], depth + 1), _value_of(kv[1], depth + 1)),
                    max_size=17,
                ),
            )
        )
    return element.flatmap(
        lambda e: st.tuples(st.just(e), st.lists(_value_of(e, depth + 1), max_size=17))
    )


def _write(proto: Any, kind: int, value: Any) -> None:
    if kind == TType.STRUCT:
        proto.writeStructBegin("s")
        for fid, (fkind, fvalue) in value:
            proto.writeFieldBegin("f", fkind, fid)
            _write(proto, fkind, fvalue)
            proto.writeFieldEnd()
        proto.writeFieldStop()
        proto.writeStructEnd()
    elif kind == TType.MAP:
        (ktype, vtype), items = value
        proto.writeMapBegin(ktype, vtype, len(items))
        for key, item in items:
            _write(proto, ktype, key)
            _write(proto, vtype, item)
        proto.writeMapEnd()
    elif kind in (TType.LIST, TType.SET):
        etype, items = value
        begin = proto.writeListBegin if kind == TType.LIST else proto.writeSetBegin
        begin(etype, len(items))
        for item in items:
            _write(proto, etype, item)
        (proto.writeListEnd if kind == TType.LIST else proto.writeSetEnd)()
    else:
        writer = {
            TType.BOOL: proto.writeBool,
            TType.BYTE: proto.writeByte,
            TType.I16: proto.writeI16,
            TType.I32: proto.writeI32,
            TType.I64: proto.writeI64,
            TType.DOUBLE: proto.writeDouble,
            TType.STRING: proto.writeString,
        }[kind]
        writer(value)


@settings(max_examples=200)
@given(_value_of(TType.STRUCT, 0), st.sampled_from(wire.PROTOCOLS), st.integers(0, 2**31 - 1))
def test_scanner_finds_the_exact_end_of_any_struct(fields: Any, protocol: str, seqid: int) -> None:
    first = wire.apache_message(
        "unframed", protocol, "gen", TMessageType.CALL, seqid, lambda p: _write(p, 12, fields)
    )
    second = wire.requests_for("unframed", protocol)[0]
    out = ThriftCodec(Side.REQUEST).decode(first + second)
    assert [md.origin for md in out] == [first, second]
    assert out[0].request_id == seqid
    bytewise = ThriftCodec(Side.REQUEST)
    assert [md.origin for b in first for md in bytewise.decode(bytes([b]))] == [first]
