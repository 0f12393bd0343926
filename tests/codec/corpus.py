"""Valid messages of every codec, grouped the way one codec instance sees them, for fuzzing.

A *family* is what one connection side can carry: a Thrift codec instance fixes its transport
and protocol on the first bytes, so each transport x protocol pair is its own family; Dubbo,
minirpc and the test FakeCodec have one family each. The long fuzzer (``benchmarks/fuzz.py``)
and the bounded Hypothesis fuzz tests (``tests/codec/test_fuzz_all.py``) mutate these samples.

Thrift samples are written by Apache Thrift and thriftpy2 (``tests/codec/thrift/wire.py``),
Dubbo samples by the independent Hessian writer (``tests/codec/dubbo/samples.py``); minirpc and
FakeCodec samples by their own ``build_frame`` (their format has no other writer).

Each family also says where its messages declare their own length (so a fuzzer can corrupt
that field and check that no message is cut shorter than it declares), how large a message
the codec accepts, and how wide request ids are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from aeraki.codec.api import Codec, MessageType, ResponseStatus
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.framing import MAX_BODY
from aeraki.codec.thrift import ThriftCodec
from aeraki.codec.thrift.transport import MAX_FRAME_SIZE, MAX_UNFRAMED_SIZE
from aeraki.testing import fake_codec
from aeraki.testing.fake_codec import FakeCodec
from examples.codecs import minirpc
from examples.codecs.minirpc import MiniRpcCodec
from tests.codec.dubbo import samples as dubbo_samples
from tests.codec.thrift import wire

__all__ = ["CODECS", "Family", "LengthField", "families"]


@dataclass(frozen=True, slots=True)
class LengthField:
    """A big-endian length at ``offset`` (``size`` bytes): the message is ``value + add`` long.

    ``high_bit_unframed``: a first byte with the high bit set is no length but a protocol id
    (Thrift detects unframed messages that way, on any connection's first bytes).
    """

    offset: int
    size: int
    add: int
    high_bit_unframed: bool = False

    def declared(self, message: bytes) -> int | None:
        """The length ``message`` declares, or None when it has no length field."""
        end = self.offset + self.size
        if len(message) < end or (self.high_bit_unframed and message[0] & 0x80):
            return None
        return int.from_bytes(message[self.offset : end], "big") + self.add


@dataclass(frozen=True, slots=True)
class Family:
    """Messages one codec instance may see, and the codec's limits for them.

    Attributes:
        name: ``codec/variant``, e.g. ``thrift/framed-compact``.
        codec: the codec class.
        requests: complete request-side messages (each exactly one message).
        responses: complete response-side messages.
        length: where a message declares its length (None: no message does).
        max_message: the largest whole message the codec accepts, in bytes.
        id_bits: width of the request id on the wire (what ``encode(request_id=...)`` takes).
        reserved: properties the codec takes from the message itself, which a mutation of the
            same name does not replace (Thrift's method name, Dubbo's body strings).
        tokens: byte strings of the format that open a nested value (struct, list, map,
            object); mutators insert long runs of them to reach the nesting limits.
    """

    name: str
    codec: type[Codec]
    requests: tuple[bytes, ...] = field(repr=False)
    responses: tuple[bytes, ...] = field(repr=False)
    length: LengthField | None
    max_message: int
    id_bits: int
    reserved: frozenset[str] = frozenset()
    tokens: tuple[bytes, ...] = ()

    @property
    def codec_name(self) -> str:
        return self.name.split("/", 1)[0]


def _thrift_families() -> list[Family]:
    out = []
    for transport, protocol in wire.MATRIX:
        requests = wire.requests_for(transport, protocol)
        if transport != "header":  # thriftpy2 writes framed and unframed (buffered) only
            requests.append(wire.thriftpy2_call(transport, protocol, seqid=77))
        unframed = transport == "unframed"
        # Every family gets the length rule: a splice may start a framed message anywhere.
        out.append(
            Family(
                name=f"thrift/{transport}-{protocol}",
                codec=ThriftCodec,
                requests=tuple(requests),
                responses=tuple(wire.responses_for(transport, protocol)),
                length=LengthField(0, 4, 4, high_bit_unframed=True),
                max_message=MAX_UNFRAMED_SIZE if unframed else MAX_FRAME_SIZE + 4,
                id_bits=32,
                reserved=frozenset({"method", "service"}),
                # struct field id 1 of type STRUCT; list<struct> of one; map<i32, struct> of one
                tokens=(
                    (b"\x0c\x00\x01", b"\x0f\x00\x01\x0c\x00\x00\x00\x01")
                    if protocol == "binary"
                    else (b"\x1c", b"\x19\x1c", b"\x1b\x01\x5c")
                ),
            )
        )
    return out


def _dubbo_family() -> Family:
    return Family(
        name="dubbo/hessian2",
        codec=DubboCodec,
        requests=tuple(dubbo_samples.REQUESTS),
        responses=tuple(dubbo_samples.RESPONSES),
        length=LengthField(12, 4, 16),
        max_message=16 + MAX_BODY,
        id_bits=64,
        reserved=frozenset({"interface", "method", "version"}),
        # variable list, fixed list of one, map, typed list, object of class 0, a class def
        tokens=(b"W", b"\x79", b"H", b"\x71\x01a", b"\x60", b"C\x01A\x91\x01f\x60", b"M\x01t"),
    )


def _minirpc_family() -> Family:
    frame = minirpc.build_frame
    return Family(
        name="minirpc/v1",
        codec=MiniRpcCodec,
        requests=(
            frame(minirpc.REQUEST, 1, "Greeter.SayHello", {"tenant": "acme"}, b"world"),
            frame(minirpc.REQUEST, 0xFFFFFFFF, "", {}),
            frame(minirpc.REQUEST, 0, "Ünïcode.Métho∂", {"k": "", "": "v", "ключ": "зн"}, b"\0"),
            frame(minirpc.ONEWAY, 2, "Log.Write", {"level": "info"}, b"line"),
            frame(minirpc.REQUEST, 3, "Blob.Put", {f"h{i}": "x" * i for i in range(12)}, b"p" * 90),
        ),
        responses=(
            frame(minirpc.RESPONSE, 1, "Greeter.SayHello", {"server": "v1"}, b"hello world"),
            frame(minirpc.RESPONSE, 2, "", {}),
            frame(minirpc.ERROR, 3, "Greeter.SayHello", {"error-type": "BUSINESS"}, b"no user"),
        ),
        length=LengthField(0, 4, 4),
        max_message=4 + minirpc.MAX_FRAME,
        id_bits=32,
        reserved=frozenset({"method"}),
    )


def _fake_family() -> Family:
    frame = fake_codec.build_frame
    return Family(
        name="fake/v1",
        codec=FakeCodec,
        requests=(
            frame(MessageType.REQUEST, 1, {"method": "sayHello", "x-tenant": "blue"}, b"hi"),
            frame(MessageType.ONEWAY, 2**64 - 1, {}, b""),
            frame(MessageType.HEARTBEAT, 3),
            frame(MessageType.REQUEST, 4, {"ключ": "значение", "": ""}, bytes(range(40))),
        ),
        responses=(
            frame(MessageType.RESPONSE, 1, {"server": "v1"}, b"hello"),
            frame(MessageType.ERROR, 2, {"error-type": "X"}, status=ResponseStatus.ERROR),
            frame(MessageType.HEARTBEAT, 3),
        ),
        length=LengthField(0, 4, 4),
        max_message=4 + fake_codec.MAX_FRAME,
        id_bits=64,
    )


@functools.cache
def families() -> tuple[Family, ...]:
    """Every family of every codec (built once: Thrift samples come from the Thrift libs)."""
    return (*_thrift_families(), _dubbo_family(), _minirpc_family(), _fake_family())


#: Codec names in report order; ``families()`` names start with one of these.
CODECS = ("thrift", "dubbo", "minirpc", "fake")
