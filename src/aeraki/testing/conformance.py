"""``check_codec``: the conformance kit every codec passes, ours and users'.

It feeds sample messages to fresh codec instances in the ways a network delivers them —
whole, one byte at a time, several per read — and checks that the results agree; that
unchanged messages encode byte-exact; that local replies decode as replies to the right
request; that deferred properties (``Metadata.deferred``) never replace a key already present;
and that garbage and mutated frames raise only :class:`~aeraki.errors.CodecError`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from aeraki.codec.api import Codec, ErrorType, LocalError, MessageType, Metadata, Side
from aeraki.errors import CodecError

__all__ = ["check_codec"]

_REPLY_TYPES = frozenset({MessageType.RESPONSE, MessageType.ERROR})


def check_codec(
    codec_cls: type[Codec],
    requests: Sequence[bytes],
    responses: Sequence[bytes] = (),
    *,
    garbage: Iterable[bytes] = (),
    mutations: int = 200,
    seed: int = 0,
) -> None:
    """Assert that ``codec_cls`` honours the codec contract on the sample messages.

    Args:
        codec_cls: the codec class under test.
        requests: complete request messages (each exactly one message), as clients send them.
        responses: complete response messages, as servers send them.
        garbage: byte strings that are not valid messages; decoding them may raise only
            CodecError (or wait for more data).
        mutations: how many randomly mutated copies of the samples to try.
        seed: seed for the mutations, so a failure can be replayed.

    Raises:
        AssertionError: naming the check and the sample that failed.
    """
    for side, samples in ((Side.REQUEST, requests), (Side.RESPONSE, responses)):
        for index, sample in enumerate(samples):
            label = f"{codec_cls.__name__} {side.value} sample {index}"
            whole = _decode_all(codec_cls, side, [sample], label)
            assert len(whole) == 1, f"{label}: decoded {len(whole)} messages, expected 1"
            _check_same(whole, _decode_all(codec_cls, side, _bytewise(sample), label), label)
            _check_encode_identity(codec_cls, side, sample, whole[0], label)
            _check_deferred(_decode_all(codec_cls, side, [sample], label)[0], label)
            if side is Side.REQUEST and whole[0].message_type is MessageType.REQUEST:
                _check_local_reply(codec_cls, whole[0], label)
        if samples:
            label = f"{codec_cls.__name__} {side.value} samples in one read"
            together = _decode_all(codec_cls, side, [b"".join(samples)], label)
            assert len(together) == len(samples), (
                f"{label}: decoded {len(together)} messages from {len(samples)}"
            )
            for one, sample in zip(together, samples, strict=True):
                assert one.origin == sample, f"{label}: origin bytes differ from the sample"
    rng = random.Random(seed)
    corpus = [(Side.REQUEST, s) for s in requests] + [(Side.RESPONSE, s) for s in responses]
    for side, junk in [(Side.REQUEST, g) for g in garbage] + _mutants(corpus, mutations, rng):
        _expect_only_codec_error(codec_cls, side, junk)


def _decode_all(
    codec_cls: type[Codec], side: Side, chunks: Iterable[bytes], label: str
) -> list[Metadata]:
    codec = codec_cls(side)
    out: list[Metadata] = []
    for chunk in chunks:
        try:
            out.extend(codec.decode(chunk))
        except CodecError as exc:
            raise AssertionError(f"{label}: valid sample raised {exc!r}") from exc
    return out


def _bytewise(sample: bytes) -> list[bytes]:
    return [sample[i : i + 1] for i in range(len(sample))]


def _check_same(expected: list[Metadata], got: list[Metadata], label: str) -> None:
    assert len(got) == len(expected), f"{label}: byte-by-byte gave {len(got)} messages"
    for a, b in zip(expected, got, strict=True):
        assert (a.message_type, a.request_id, a.load_strings(), a.origin) == (
            b.message_type,
            b.request_id,
            b.load_strings(),
            b.origin,
        ), f"{label}: byte-by-byte decode differs: {a!r} vs {b!r}"


def _check_deferred(md: Metadata, label: str) -> None:
    """A deferred load adds keys but never replaces one already present (those are final:
    the route table reads them without loading)."""
    if md.deferred is None:
        return
    marked = dict.fromkeys(md.strings, "\x00check_codec")
    md.strings.update(marked)
    md.load_strings()
    assert md.deferred is None, f"{label}: load_strings left the load pending"
    replaced = sorted(k for k in marked if md.strings.get(k) != marked[k])
    assert not replaced, f"{label}: the deferred load replaced present keys {replaced}"


def _check_encode_identity(
    codec_cls: type[Codec], side: Side, sample: bytes, md: Metadata, label: str
) -> None:
    if md.message_type is MessageType.HEARTBEAT:
        return
    encoded = codec_cls(side).encode(md, {})
    assert encoded == sample, f"{label}: encode without mutation is not byte-exact"


def _check_local_reply(codec_cls: type[Codec], request: Metadata, label: str) -> None:
    for error_type in ErrorType:
        error = LocalError(error_type, f"conformance {error_type.name}")
        reply = codec_cls(Side.REQUEST).on_error(request, error)
        assert reply, f"{label}: on_error({error_type.name}) wrote nothing"
        decoded = _decode_all(codec_cls, Side.RESPONSE, [reply], f"{label} local reply")
        assert len(decoded) == 1, f"{label}: local reply is {len(decoded)} messages"
        assert decoded[0].message_type in _REPLY_TYPES, f"{label}: local reply type"
        if codec_cls.capabilities.request_ids:
            assert decoded[0].request_id == request.request_id, (
                f"{label}: local reply has id {decoded[0].request_id}, "
                f"request had {request.request_id}"
            )


def _mutants(
    corpus: list[tuple[Side, bytes]], count: int, rng: random.Random
) -> list[tuple[Side, bytes]]:
    if not corpus:
        return []
    out = []
    for _ in range(count):
        side, sample = rng.choice(corpus)
        data = bytearray(sample)
        for _ in range(rng.randint(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randint(0, len(data))
        out.append((side, bytes(data[:cut]) if rng.random() < 0.3 else bytes(data)))
    return out


def _expect_only_codec_error(codec_cls: type[Codec], side: Side, junk: bytes) -> None:
    codec = codec_cls(side)
    try:
        for md in codec.decode(junk):
            md.load_strings()  # malformed deferred bytes load as nothing, never raise
            if md.message_type is not MessageType.HEARTBEAT:
                codec.encode(md, {"x-conformance": "1"})
    except CodecError:
        return
    except Exception as exc:
        raise AssertionError(
            f"{codec_cls.__name__}: {side.value} input {junk[:64].hex()} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
