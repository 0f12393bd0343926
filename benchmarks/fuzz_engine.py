"""The codec fuzzer's two halves: structure-aware input generation and the invariant oracle.

Used by the long runner (``benchmarks/fuzz.py``, ``make fuzz``) and by the bounded Hypothesis
tests in ``make test`` (``tests/codec/test_fuzz_all.py``), so both check the same contract.

**Inputs** (:func:`make_input`) start from valid samples of one codec family
(``tests/codec/corpus.py``): one to three messages in a row, then one to six mutations — bit
flips, interesting bytes and ints at random offsets, the family's own length field set to
edge values (0, off by one, the codec's limit, 2^31-1, 2^32-1), truncation, insertion,
deletion, duplication, block swaps, splices with another sample (sometimes of another family),
runs of varint continuation bytes — or pure random bytes, or a valid message start followed
by random bytes. Every input comes with random chunk boundaries (sometimes one byte per read).

**The oracle** (:func:`check_input`) decodes the input whole and chunked and checks the codec
contract (``aeraki.codec.api``):

* only :class:`~aeraki.errors.CodecError` escapes decode, encode, on_error, heartbeat_reply;
* chunking changes nothing: the same verdict (error or not) and, without an error, the same
  messages (type, id, status, strings, operation, sizes, origin bytes);
* each message is exactly the next bytes of the stream (``origin`` is ``bytes``), is returned
  only once all its bytes were fed, and is as long as its own length field declares;
* nothing waits with more than one maximum-size message buffered;
* ``encode(md, {})`` is byte-exact; ``encode(md, mutation, request_id=...)`` either raises
  CodecError or gives bytes that decode as one message of the same kind with the new id, the
  mutation visible (unless the codec leaves this message unchanged, e.g. framed Thrift) and
  every other property kept; out-of-range ids raise CodecError;
* ``on_error`` for a request is one reply of the same id that decodes; a heartbeat's reply
  decodes as a heartbeat of the same id.

:func:`probe_memory` additionally feeds a pending input one maximum-size message of filler in
one read: a codec that keeps buffering instead of deciding fails it (runaway memory).
"""

from __future__ import annotations

import itertools
import random
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from aeraki.codec.api import (
    Codec,
    ErrorType,
    LocalError,
    MessageType,
    Metadata,
    Side,
)
from aeraki.errors import CodecError
from tests.codec.corpus import Family

__all__ = [
    "Finding",
    "Input",
    "Outcome",
    "check_input",
    "make_input",
    "probe_memory",
]

_REPLY_TYPES: Final = frozenset({MessageType.RESPONSE, MessageType.ERROR})
_INTERESTING_8: Final = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0F, 0x10, 0x1F, 0x20, 0x5A, 0xDA, 0xBB)
_INTERESTING_32: Final = (
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
#: Mutation keys carry this prefix so they never collide with reserved properties
#: (``method``, ``interface``, …) that codecs set from the message itself.
_KEY_PREFIX: Final = "x-fuzz-"
_KEY_TAILS: Final = ("a", "A", "b", "é", "中", "😀", "k" * 40)
_VALUES: Final = ("", "v", "é", "中文", "😀 ok", "a b\tc", "x" * 300, "Zoë" * 50)
_MESSAGES: Final = ("", "upstream gone", "é 中 😀", "x" * 2000)


class Finding(Exception):
    """An input broke the codec contract; ``kind`` names the invariant."""

    def __init__(self, kind: str, detail: str, where: str = "") -> None:
        super().__init__(f"{kind}: {detail}" + (f" at {where}" if where else ""))
        self.kind = kind
        self.detail = detail
        self.where = where


@dataclass(frozen=True, slots=True)
class Input:
    """One fuzz case: bytes for one codec side, and the read boundaries to feed them with."""

    family: Family
    side: Side
    data: bytes
    cuts: tuple[int, ...]
    recipe: str

    def chunks(self) -> list[bytes]:
        """``data`` split at ``cuts`` (ascending offsets strictly inside ``data``)."""
        bounds = [0, *self.cuts, len(self.data)]
        return [self.data[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass(slots=True)
class Outcome:
    """What one checked input did (for the runner's outcome mix)."""

    verdict: str = "pending"  # "messages", "error", "pending", "messages+error"
    messages: int = 0
    encodes: int = 0
    replies: int = 0


# ------------------------------------------------------------------------------ inputs


def make_input(rng: random.Random, family: Family, others: Sequence[Family] = ()) -> Input:
    """A structure-aware fuzz input for ``family`` (``others``: splice partners)."""
    roll = rng.random()
    side, pool = _pick_side(rng, family)
    if roll < 0.08:
        data, recipe = rng.randbytes(rng.randrange(0, 320)), "random"
    elif roll < 0.12:
        head = rng.choice(pool)[: rng.randrange(1, 24)]
        data, recipe = head + rng.randbytes(rng.randrange(0, 200)), "prefix+random"
    else:
        data, recipe = _mutated_stream(rng, family, pool, others)
    return Input(family, side, data, _cuts(rng, len(data)), recipe)


def _pick_side(rng: random.Random, family: Family) -> tuple[Side, tuple[bytes, ...]]:
    side = Side.REQUEST if rng.random() < 0.55 else Side.RESPONSE
    pool = family.requests if side is Side.REQUEST else family.responses
    if rng.random() < 0.1:  # the other side's messages on this side (codecs may branch on it)
        pool = family.responses if side is Side.REQUEST else family.requests
    return side, pool or family.requests


def _mutated_stream(
    rng: random.Random, family: Family, pool: Sequence[bytes], others: Sequence[Family]
) -> tuple[bytes, str]:
    """1-3 messages; one mutated, its length field then often fixed up to match (so the
    mutation is inside a frame the codec accepts, not just a framing error); sometimes one
    more mutation across the whole stream."""
    picks = [bytearray(rng.choice(pool)) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
    if rng.random() < 0.05:
        return b"".join(picks), "valid"
    ctx = _Context(family, pool, others)
    target = rng.choice(picks)
    names = []
    for _ in range(min(1 + int(rng.expovariate(0.8)), 6)):
        name, mutate = rng.choices(_MUTATORS, weights=_WEIGHTS)[0]
        mutate(rng, target, ctx)
        names.append(name)
    if family.length is not None and "length" not in names and rng.random() < 0.6:
        _fix_length(target, family)
        names.append("fixlen")
    data = bytearray(b"".join(picks))
    if len(picks) > 1 and rng.random() < 0.25:
        name, mutate = rng.choice(_STREAM_MUTATORS)
        mutate(rng, data, ctx)
        names.append(f"stream-{name}")
    return bytes(data), "+".join(names)


def _fix_length(message: bytearray, family: Family) -> None:
    """Write the message's real length into its length field (when it has one)."""
    field = family.length
    if field is None or field.declared(bytes(message)) is None:
        return
    value = len(message) - field.add
    if 0 <= value < 1 << (8 * field.size):
        message[field.offset : field.offset + field.size] = value.to_bytes(field.size, "big")


@dataclass(frozen=True, slots=True)
class _Context:
    family: Family
    pool: Sequence[bytes]
    others: Sequence[Family]


def _cuts(rng: random.Random, size: int) -> tuple[int, ...]:
    if size < 2:
        return ()
    if size <= 400 and rng.random() < 0.08:
        return tuple(range(1, size))  # one byte per read
    count = rng.randrange(1, min(8, size - 1) + 1)
    return tuple(sorted(rng.sample(range(1, size), count)))


def _flip_bit(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _set_byte(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    if data:
        value = rng.choice(_INTERESTING_8) if rng.random() < 0.5 else rng.randrange(256)
        data[rng.randrange(len(data))] = value


def _set_int(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    """An interesting 16- or 32-bit big-endian value over random bytes (inner lengths)."""
    width = rng.choice((2, 4))
    if len(data) < width:
        return
    value = rng.choice((*_INTERESTING_32, len(data), len(data) - 1, len(data) + 1))
    at = rng.randrange(len(data) - width + 1)
    data[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")


def _length_field(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    """The message's own length field set to an edge value."""
    length = ctx.family.length
    if length is None:
        return _set_int(rng, data, ctx)
    start = length.offset
    if start + length.size > len(data):
        return None
    current = int.from_bytes(data[start : start + length.size], "big")
    limit = ctx.family.max_message - length.add
    edges = (0, 1, current - 1, current + 1, current + rng.randrange(1, 64), limit, limit + 1)
    value = rng.choice((*edges, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.randrange(1 << 32)))
    data[start : start + length.size] = (value & 0xFFFFFFFF).to_bytes(length.size, "big")
    return None


def _truncate(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    if data:
        del data[rng.randrange(len(data)) :]


def _insert(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    at = rng.randrange(len(data) + 1)
    data[at:at] = rng.randbytes(rng.randrange(1, 17))


def _delete(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    if data:
        at = rng.randrange(len(data))
        del data[at : at + rng.randrange(1, 17)]


def _duplicate(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    if data:
        at = rng.randrange(len(data))
        piece = data[at : at + rng.randrange(1, 65)]
        where = rng.randrange(len(data) + 1)
        data[where:where] = piece


def _swap(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    if len(data) >= 4:
        a, b = sorted(rng.sample(range(len(data)), 2))
        size = rng.randrange(1, min(b - a, len(data) - b) + 1) if b - a and len(data) - b else 0
        if size:
            data[a : a + size], data[b : b + size] = data[b : b + size], data[a : a + size]


def _splice(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    """Our head with another sample's tail (another family's, once in ten)."""
    pool: Sequence[bytes] = ctx.pool
    if ctx.others and rng.random() < 0.1:
        other = rng.choice(ctx.others)
        pool = other.requests + other.responses
    donor = rng.choice(pool)
    cut = rng.randrange(len(data) + 1)
    data[cut:] = donor[rng.randrange(len(donor) + 1) :]


def _nest(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    """A long run of the format's container openings: past the codec's nesting limit."""
    if not ctx.family.tokens:
        return _duplicate(rng, data, ctx)
    token = rng.choice(ctx.family.tokens)
    at = rng.randrange(len(data) + 1)
    data[at:at] = token * rng.choice((63, 65, 70, 1023, 1100))
    return None


def _append_other(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    """A whole message of another family after ours (e.g. compact after binary Thrift)."""
    siblings = [f for f in ctx.others if f.codec is ctx.family.codec and f is not ctx.family]
    other = rng.choice(siblings or list(ctx.others) or [ctx.family])
    data += rng.choice(other.requests + other.responses)


def _varint_run(rng: random.Random, data: bytearray, ctx: _Context) -> None:
    at = rng.randrange(len(data) + 1)
    data[at : at + rng.randrange(0, 4)] = bytes([rng.choice((0x80, 0xFF))]) * rng.randrange(1, 14)


_Mutator = Callable[[random.Random, bytearray, _Context], None]
_MUTATORS: Final[list[tuple[str, _Mutator]]] = [
    ("flip", _flip_bit),
    ("byte", _set_byte),
    ("int", _set_int),
    ("length", _length_field),
    ("truncate", _truncate),
    ("insert", _insert),
    ("delete", _delete),
    ("dup", _duplicate),
    ("swap", _swap),
    ("splice", _splice),
    ("varint", _varint_run),
    ("nest", _nest),
    ("other", _append_other),
]
_WEIGHTS: Final = [14, 12, 10, 10, 8, 8, 8, 6, 4, 8, 4, 3, 2]
#: Mutations of a whole multi-message stream (across message boundaries).
_STREAM_MUTATORS: Final = [
    m for m in _MUTATORS if m[0] in ("truncate", "insert", "delete", "dup", "swap", "splice")
]


# ------------------------------------------------------------------------------ oracle


@dataclass(slots=True)
class _Feed:
    """Decode results of one codec instance fed a sequence of reads."""

    messages: list[Metadata] = field(default_factory=list)
    #: bytes fed when each message was returned
    fed_at: list[int] = field(default_factory=list)
    error: CodecError | None = None
    fed: int = 0


def _feed(codec: Codec, chunks: Sequence[bytes], result: _Feed | None = None) -> _Feed:
    result = result or _Feed()
    for chunk in chunks:
        result.fed += len(chunk)
        try:
            got = codec.decode(chunk)
        except CodecError as exc:
            result.error = exc
            return result
        result.messages += got
        result.fed_at += [result.fed] * len(got)
    return result


def check_input(case: Input, rng: random.Random) -> Outcome:
    """Check every invariant on ``case`` (see the module docstring).

    Raises:
        Finding: an invariant failed, or an exception other than CodecError escaped.
    """
    stage = ["decode"]
    try:
        return _check(case, rng, stage)
    except Finding:
        raise
    except Exception as exc:  # anything but CodecError escaping a codec is the bug we hunt
        where = _where(exc)
        raise Finding(f"{stage[0]} raised {type(exc).__name__}", str(exc)[:300], where) from exc
    # BaseException (KeyboardInterrupt, the runner's per-input timeout) passes through.


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "/aeraki/" in f.filename or "/examples/" in f.filename]
    frame = (inner or frames)[-1] if frames else None
    return f"{frame.filename.rsplit('/src/', 1)[-1]}:{frame.lineno}" if frame else ""


def _check(case: Input, rng: random.Random, stage: list[str]) -> Outcome:
    family, side, data = case.family, case.side, case.data
    whole = _feed(family.codec(side), [data])
    chunked = _feed(family.codec(side), case.chunks())
    stage[0] = "check"
    _check_stream(case, whole, "whole")
    _check_stream(case, chunked, "chunked")
    _check_same(whole, chunked)
    outcome = _outcome(chunked)
    for md in chunked.messages:
        stage[0] = "encode"
        outcome.encodes += _check_encode(family, side, md, rng)
        stage[0] = "on_error"
        outcome.replies += _check_replies(family, side, md, rng)
    return outcome


def _outcome(feed: _Feed) -> Outcome:
    if feed.error is not None:
        verdict = "messages+error" if feed.messages else "error"
    else:
        verdict = "messages" if feed.messages else "pending"
    return Outcome(verdict, len(feed.messages))


def _check_stream(case: Input, feed: _Feed, how: str) -> None:
    """Messages are the stream's next bytes, complete when returned, as long as declared."""
    pos = 0
    for md, fed_at in zip(feed.messages, feed.fed_at, strict=True):
        origin = md.origin
        if type(origin) is not bytes:
            raise Finding("origin-type", f"{how}: origin is {type(origin).__name__}, not bytes")
        end = pos + len(origin)
        if not origin or case.data[pos:end] != origin:
            raise Finding("origin", f"{how}: message at {pos} is not the stream's next bytes")
        if end > fed_at:
            raise Finding("early", f"{how}: message ending at {end} returned after {fed_at} bytes")
        if md.header_size + md.body_size not in (0, len(origin)):
            raise Finding("sizes", f"{how}: header+body {md.header_size}+{md.body_size}")
        declared = case.family.length.declared(origin) if case.family.length else None
        if declared is not None and declared != len(origin):
            raise Finding("short", f"{how}: {len(origin)}-byte message declares {declared}")
        pos = end
    if feed.error is None and feed.fed - pos > case.family.max_message:
        raise Finding("buffer", f"{how}: {feed.fed - pos} bytes pending, none decided")


def _strings(md: Metadata) -> dict[str, str]:
    """Every routable property, deferred ones included (codecs may compute some lazily)."""
    load = getattr(md, "load_strings", None)
    return load() if load is not None else md.strings


def _key(md: Metadata) -> tuple[object, ...]:
    return (
        md.message_type,
        md.request_id,
        md.response_status,
        md.stream_id,
        md.operation_name,
        _strings(md),
        md.origin,
        md.header_size,
        md.body_size,
    )


def _check_same(whole: _Feed, chunked: _Feed) -> None:
    """Chunking changes nothing: same verdict, and the same messages when there is no error."""
    if (whole.error is None) != (chunked.error is None):
        error = whole.error or chunked.error
        which = "whole" if whole.error else "chunked"
        raise Finding("chunking", f"only the {which} decode failed: {error}")
    if whole.error is None and [_key(m) for m in whole.messages] != [
        _key(m) for m in chunked.messages
    ]:
        raise Finding("chunking", "whole and chunked decodes return different messages")


def _decode_alone(family: Family, side: Side, data: bytes, what: str) -> Metadata:
    """``data`` must decode as exactly one message (it is what the codec itself wrote)."""
    codec = family.codec(side)
    try:
        messages = codec.decode(data)
    except CodecError as exc:
        raise Finding("self-decode", f"{what} does not decode: {exc}") from None
    if len(messages) != 1 or len(messages[0].origin) != len(data):
        raise Finding("self-decode", f"{what}: {len(messages)} messages from {len(data)} bytes")
    return messages[0]


def _check_encode(family: Family, side: Side, md: Metadata, rng: random.Random) -> int:
    """Identity, mutation + id rewrite round trip, out-of-range ids. Returns checks done."""
    codec = family.codec(side)
    try:
        same = codec.encode(md, {})
        same_id = codec.encode(md, {}, request_id=md.request_id)
    except CodecError as exc:
        raise Finding("encode-identity", f"unchanged message refused: {exc}") from None
    if same != md.origin or same_id != md.origin:
        raise Finding("encode-identity", "encode without changes is not byte-exact")
    mutation = _mutation(rng, family, md)
    new_id = rng.randrange(1 << family.id_bits)
    try:
        out = codec.encode(md, mutation, request_id=new_id)
        plain = codec.encode(md, {}, request_id=new_id)
    except CodecError:
        return 1  # allowed: e.g. the mutation makes the message too large
    again = _decode_alone(family, side, out, "encode(mutation, request_id)")
    _check_rewritten(family, md, again, mutation, new_id, applied=out != plain)
    for bad in (-1 - rng.randrange(1 << 31), (1 << family.id_bits) + rng.randrange(1 << 31)):
        if family.codec_name == "thrift" and bad >= -(1 << 31) and bad < 0:
            continue  # Thrift takes negative int32 sequence ids (they wrap to u32)
        try:
            codec.encode(md, {}, request_id=bad)
        except CodecError:
            continue
        raise Finding("encode-id", f"request id {bad} outside {family.id_bits} bits was accepted")
    return 2


def _mutation(rng: random.Random, family: Family, md: Metadata) -> dict[str, str]:
    """New keys; sometimes one the message has (replaced in place); rarely a huge value (past
    the format's field widths: the encoder must refuse it with CodecError)."""
    keys = [_KEY_PREFIX + k for k in rng.sample(_KEY_TAILS, rng.randrange(1, 4))]
    present = [k for k in _strings(md) if k not in family.reserved]
    if present and rng.random() < 0.3:
        keys.append(rng.choice(present))
    mutation = {key: rng.choice(_VALUES) for key in keys}
    if rng.random() < 0.002:
        mutation[keys[0]] = "é" * rng.choice((0x8001, 0x10000, 140_000))
    return mutation


def _check_rewritten(
    family: Family,
    md: Metadata,
    again: Metadata,
    mutation: dict[str, str],
    new_id: int,
    *,
    applied: bool,
) -> None:
    if (again.message_type, again.response_status) != (md.message_type, md.response_status):
        raise Finding("encode-kind", f"{md.message_type.name} re-decodes as {again!r}")
    if family.codec.capabilities.rewrites_request_id and again.request_id != new_id:
        raise Finding("encode-id", f"asked for id {new_id}, re-decodes with {again.request_id}")
    expected = {k.lower(): v for k, v in mutation.items()} if applied else {}
    strings = _strings(again)
    for key, value in expected.items():
        if strings.get(key) != value:
            raise Finding("encode-mutation", f"{key!r} re-decodes as {strings.get(key)!r}")
    for key, value in _strings(md).items():
        if key not in expected and strings.get(key) != value:
            raise Finding("encode-mutation", f"property {key!r} lost or changed by a mutation")


def _check_replies(family: Family, side: Side, md: Metadata, rng: random.Random) -> int:
    """Local reply for a request, heartbeat reply for a heartbeat. Returns checks done."""
    codec = family.codec(side)
    if md.message_type is MessageType.HEARTBEAT and family.codec.capabilities.heartbeats:
        reply = codec.heartbeat_reply(md)
        other = Side.REQUEST if side is Side.RESPONSE else Side.RESPONSE
        got = _decode_alone(family, other, reply, "heartbeat reply")
        if got.message_type is not MessageType.HEARTBEAT or got.request_id != md.request_id:
            raise Finding("heartbeat", f"reply to heartbeat {md.request_id} decodes as {got!r}")
        return 1
    if side is not Side.REQUEST or md.message_type not in (MessageType.REQUEST, MessageType.ONEWAY):
        return 0
    text = rng.choice(_MESSAGES) if rng.random() > 0.01 else "é" * 0x8001  # > 64 KiB UTF-8
    error = LocalError(rng.choice(list(ErrorType)), text)
    try:
        reply = codec.on_error(md, error)
    except CodecError as exc:
        raise Finding("on_error", f"no local reply for a decoded request: {exc}") from None
    if not reply and md.message_type is MessageType.ONEWAY:
        return 1  # one-way requests may get no reply (Thrift: the client reads none)
    got = _decode_alone(family, Side.RESPONSE, reply, f"on_error({error.type.name})")
    if got.message_type not in _REPLY_TYPES:
        raise Finding("on_error", f"local reply decodes as {got.message_type.name}")
    if family.codec.capabilities.request_ids and got.request_id != md.request_id:
        raise Finding("on_error", f"reply id {got.request_id} for request {md.request_id}")
    return 1


# ------------------------------------------------------------------------------ memory


def probe_memory(case: Input) -> bool:
    """Feed ``case`` then one maximum-size message of zero filler in one read; a codec must
    decide (message or error) rather than hold more than one maximum message.

    Returns whether a probe ran (only inputs left pending without an error qualify).

    Raises:
        Finding: the codec kept more than ``family.max_message`` bytes undecided.
    """
    family = case.family
    codec = family.codec(case.side)
    feed = _feed(codec, [case.data])
    if feed.error is not None:
        return False
    consumed = sum(len(md.origin) for md in feed.messages)
    if feed.fed == consumed:
        return False
    try:
        _feed(codec, [bytes(family.max_message + 64)], feed)
    except Exception as exc:  # noqa: BLE001 - anything but CodecError escaping is the bug
        raise Finding(f"probe raised {type(exc).__name__}", str(exc)[:300], _where(exc)) from None
    if feed.error is None:
        pending = feed.fed - sum(len(md.origin) for md in feed.messages)
        if pending > family.max_message:
            raise Finding("buffer", f"{pending} bytes buffered without a decision")
    return True


def iter_inputs(seed: int, family: Family, others: Sequence[Family]) -> Iterator[Input]:
    """An endless reproducible stream of inputs for one family."""
    rng = random.Random(seed)
    while True:
        yield make_input(rng, family, others)
