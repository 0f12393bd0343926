"""Bounded fuzzing of every codec in ``make test``, with the oracle of ``make fuzz``.

Every family of ``tests/codec/corpus.py`` — Thrift in each transport x protocol, Dubbo,
minirpc, the test FakeCodec — gets Hypothesis-driven structure-aware mutants of its samples,
pure random bytes, and valid streams cut into arbitrary reads. ``check_input``
(``benchmarks/fuzz_engine.py``) raises a ``Finding`` naming the broken invariant: an exception
other than CodecError, a result that depends on chunking, a message cut shorter than its
length field or returned before its last byte, an encode that is not byte-exact or loses a
mutation or id, a local reply that does not decode as an answer to its request.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeraki.codec.api import ErrorType, LocalError, Side
from aeraki.errors import CodecError
from aeraki.testing.fake_codec import FakeCodec
from benchmarks.fuzz_engine import Input, check_input, make_input
from tests.codec.corpus import CODECS, Family, families

FAMILIES = families()
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
family_params = pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])


def _cuts(size: int, cuts: list[int]) -> tuple[int, ...]:
    return tuple(sorted({c % size for c in cuts if size and c % size})) if size else ()


def test_the_corpus_covers_every_codec_and_thrift_family() -> None:
    assert {f.codec_name for f in FAMILIES} == set(CODECS)
    thrift = {f.name for f in FAMILIES if f.codec_name == "thrift"}
    assert thrift == {
        f"thrift/{t}-{p}" for t in ("framed", "unframed", "header") for p in ("binary", "compact")
    }


@family_params
@FUZZ
@given(seed=st.integers(0, 2**64 - 1))
def test_structure_aware_mutants(family: Family, seed: int) -> None:
    rng = random.Random(seed)
    check_input(make_input(rng, family, FAMILIES), rng)


@family_params
@FUZZ
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    side=st.sampled_from(list(Side)),
)
def test_random_bytes(family: Family, data: bytes, cuts: list[int], side: Side) -> None:
    check_input(Input(family, side, data, _cuts(len(data), cuts), "random"), random.Random(0))


@family_params
@FUZZ
@given(
    data=st.data(),
    flips=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=6),
    keep=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 2**16), max_size=8),
)
def test_flipped_and_truncated_samples(
    family: Family,
    data: st.DataObject,
    flips: list[tuple[int, int]],
    keep: int,
    cuts: list[int],
) -> None:
    side = data.draw(st.sampled_from([Side.REQUEST, Side.RESPONSE]))
    sample = bytearray(data.draw(st.sampled_from(_pool(family, side))))
    for where, byte in flips:
        sample[where % len(sample)] = byte
    mutated = bytes(sample[: keep % (len(sample) + 1)] if keep % 3 == 0 else sample)
    check_input(
        Input(family, side, mutated, _cuts(len(mutated), cuts), "hypothesis"), random.Random(0)
    )


@family_params
@FUZZ
@given(data=st.data(), cuts=st.lists(st.integers(0, 2**16), max_size=12), seed=st.integers(0, 99))
def test_valid_streams_decode_whole_however_they_are_cut(
    family: Family, data: st.DataObject, cuts: list[int], seed: int
) -> None:
    side = data.draw(st.sampled_from([Side.REQUEST, Side.RESPONSE]))
    messages = data.draw(st.lists(st.sampled_from(_pool(family, side)), min_size=1, max_size=4))
    stream = b"".join(messages)
    outcome = check_input(
        Input(family, side, stream, _cuts(len(stream), cuts), "valid"), random.Random(seed)
    )
    assert (outcome.verdict, outcome.messages) == ("messages", len(messages))


def _pool(family: Family, side: Side) -> tuple[bytes, ...]:
    return family.requests if side is Side.REQUEST else family.responses


def test_fake_codec_refuses_out_of_range_request_ids_with_codec_error() -> None:
    """Found by ``make fuzz``: ``struct.error`` escaped FakeCodec.encode for ids >= 2**64."""
    (md,) = FakeCodec(Side.REQUEST).decode(_fake().requests[0])
    for bad in (-1, 1 << 64):
        with pytest.raises(CodecError, match="does not fit in 64 bits"):
            FakeCodec(Side.REQUEST).encode(md, {}, request_id=bad)


def test_fake_codec_measures_header_lengths_in_bytes() -> None:
    """Found by ``make fuzz``: a 32,769-character non-ASCII value passed the (character)
    length check, then ``struct.error`` escaped; a long local-reply message did the same."""
    (md,) = FakeCodec(Side.REQUEST).decode(_fake().requests[0])
    with pytest.raises(CodecError, match="exceeds 65535 bytes"):
        FakeCodec(Side.REQUEST).encode(md, {"x": "é" * 0x8001})
    reply = FakeCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.UNSPECIFIED, "é" * 0x8001))
    (got,) = FakeCodec(Side.RESPONSE).decode(reply)
    assert got.get_string("error-message") == "é" * 0x7FFF  # cut to the field, whole chars


def _fake() -> Family:
    return next(f for f in FAMILIES if f.codec is FakeCodec)
