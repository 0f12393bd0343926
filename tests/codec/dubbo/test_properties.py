"""Hypothesis properties of the Dubbo codec: generated Hessian values are skipped exactly,
attachments survive decode/mutation/encode, and random or mutated bytes raise only CodecError
(sizes are bounded, so every example terminates quickly)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeraki.codec.api import Metadata, Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.hessian2 import skip_values
from aeraki.errors import CodecError
from tests.codec.dubbo import h2w
from tests.codec.dubbo.samples import REQUESTS, RESPONSES

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Four class definitions (0..3 fields) then one object: generated objects may use any of them.
CLASSES = [0, 1, 2, 3]
PRELUDE = b"".join(h2w.class_def(f"C{n}", [f"f{i}" for i in range(n)]) for n in CLASSES)
PRELUDE += h2w.obj(0, [])

_texts = st.text(max_size=40)
_leaves = st.one_of(
    st.just(h2w.null()),
    st.booleans().map(h2w.boolean),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["short", "I"])).map(
        lambda a: h2w.int_(a[0], form=a[1])
    ),
    st.tuples(st.integers(-(2**63), 2**63 - 1), st.sampled_from(["short", "L"])).map(
        lambda a: h2w.long_(a[0], form=a[1])
    ),
    st.floats(allow_nan=False).map(h2w.double),
    st.integers(-(2**63), 2**63 - 1).map(h2w.date_ms),
    st.integers(-(2**31), 2**31 - 1).map(h2w.date_minutes),
    st.tuples(st.binary(max_size=70), st.integers(1, 80)).map(
        lambda a: h2w.binary(a[0], chunk=a[1])
    ),
    st.tuples(_texts, st.integers(1, 50), st.sampled_from(["short", "S"])).map(
        lambda a: h2w.string(a[0], chunk=a[1], form=a[2])
    ),
    st.integers(0, 100).map(h2w.ref),
)


def _containers(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    types = st.sampled_from([None, "[int", "java.util.ArrayList", 0, 3])
    lists = st.tuples(st.lists(children, max_size=9), types, st.booleans()).map(
        lambda a: h2w.list_(a[0], type_=a[1], fixed=a[2])
    )
    maps = st.tuples(st.lists(st.tuples(children, children), max_size=5), types).map(
        lambda a: h2w.map_(a[0], type_=a[1])
    )
    objects = st.tuples(st.sampled_from(CLASSES), st.lists(children, min_size=3, max_size=3))
    return st.one_of(
        lists,
        maps,
        objects.map(lambda a: h2w.obj(a[0], a[1][: a[0]], long_form=a[0] == 2)),
    )


VALUES = st.recursive(_leaves, _containers, max_leaves=25)
_KEYS = st.text(alphabet="abcxyz-_.0é中😀", min_size=1, max_size=12)
ATTACHMENTS = st.dictionaries(_KEYS, _texts, max_size=6)


@SETTINGS
@given(VALUES)
def test_generated_values_are_skipped_exactly(value: bytes) -> None:
    data = value + b"\x90"
    assert skip_values(data, 0, 1, list(CLASSES)) == len(value)


def _decode_one(data: bytes, side: Side = Side.REQUEST) -> Metadata:
    out = DubboCodec(side).decode(data)
    assert len(out) == 1
    return out[0]


def _expected(attachments: dict[str, str], interface: str = h2w.SVC) -> dict[str, str]:
    """Attachments by lower-cased key (a later duplicate wins); the body's strings win."""
    expected = {key.lower(): value for key, value in attachments.items()}
    return expected | {"interface": interface, "method": "m", "version": "1.0.0"}


@SETTINGS
@given(st.lists(VALUES, max_size=4), ATTACHMENTS, ATTACHMENTS, st.integers(0, 2**64 - 1))
def test_requests_with_generated_args_round_trip_mutation(
    args: list[bytes], attachments: dict[str, str], mutation: dict[str, str], new_id: int
) -> None:
    frame = h2w.request(
        method="m",
        descriptor="Ljava/lang/Object;" * (len(args) + 1),
        args=(PRELUDE, *args),
        attachments=h2w.str_map(attachments),
    )
    md = _decode_one(frame)
    assert md.load_strings() == _expected(attachments)
    out = DubboCodec(Side.REQUEST).encode(md, mutation, request_id=new_id)
    again = _decode_one(out)
    assert again.request_id == new_id
    assert again.load_strings() == _expected(attachments | mutation)
    start = md.get("dubbo").attachments.start
    assert out[16:start] == frame[16:start]


@SETTINGS
@given(VALUES, ATTACHMENTS, ATTACHMENTS, st.sampled_from([0, 1, 3, 4]))
def test_responses_with_generated_values(
    value: bytes, attachments: dict[str, str], mutation: dict[str, str], result_type: int
) -> None:
    tail = h2w.str_map(attachments) if result_type >= 3 else b""
    frame = h2w.response(result_type, PRELUDE[:-1] + value, tail)
    md = _decode_one(frame, Side.RESPONSE)
    assert md.load_strings() == {k.lower(): v for k, v in (attachments if tail else {}).items()}
    out = DubboCodec(Side.RESPONSE).encode(md, mutation)
    expected = {k.lower(): v for k, v in (attachments | mutation).items()} if tail else {}
    assert _decode_one(out, Side.RESPONSE).load_strings() == expected


def _only_codec_error(data: bytes, cuts: list[int], side: Side) -> list[Metadata]:
    codec = DubboCodec(side)
    out: list[Metadata] = []
    try:
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            out += codec.decode(data[start:cut])
            start = max(start, cut)
        for md in out:
            md.load_strings()  # never raises: malformed deferred bytes load as nothing
            codec.encode(md, {"x-hypothesis": "1"}, request_id=5)
    except CodecError:
        return []
    return out


_SIDES = st.sampled_from([Side.REQUEST, Side.RESPONSE])


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4), _SIDES)
def test_random_bytes_raise_only_codec_error(data: bytes, cuts: list[int], side: Side) -> None:
    _only_codec_error(data, cuts, side)


@SETTINGS
@given(st.binary(max_size=200), st.integers(0, 3))
def test_random_request_bodies_raise_only_codec_error(body: bytes, strings: int) -> None:
    head = b"".join(h2w.string(s) for s in ["2.0.2", "a.B", "", "m", "Ljava/lang/Object;"])
    prefix = head[: [0, 7, 11, len(head)][strings]]
    _only_codec_error(h2w.frame(0xC2, 0, 1, prefix + body), [], Side.REQUEST)
    _only_codec_error(h2w.frame(0x02, 20, 1, body), [], Side.RESPONSE)


@SETTINGS
@given(
    st.sampled_from(
        [(Side.REQUEST, f) for f in REQUESTS] + [(Side.RESPONSE, f) for f in RESPONSES]
    ),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.lists(st.integers(0, 400), max_size=3),
    st.data(),
)
def test_mutated_frames_raise_only_codec_error(
    sample: tuple[Side, bytes], flips: list[tuple[int, int]], cuts: list[int], data: Any
) -> None:
    side, frame = sample
    mutated = bytearray(frame)
    for where, byte in flips:
        mutated[where % len(mutated)] = byte
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    _only_codec_error(bytes(mutated), cuts, side)
