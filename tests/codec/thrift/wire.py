"""Real Thrift bytes for the tests, written by Apache ``thrift`` and ``thriftpy2``.

Every sample is serialized by the libraries' own protocol and transport classes (never by
hand), so decoding them proves interoperability. ``TRANSPORTS`` x ``PROTOCOLS`` is the
matrix the tests run over; ``unframed`` is what Apache calls TBufferedTransport.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import thriftpy2
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID
from thrift.transport.TTransport import TBufferedTransport, TFramedTransport, TMemoryBuffer
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.thrift import TClient
from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory
from thriftpy2.transport import TMemoryBuffer as Py2MemoryBuffer

TRANSPORTS = ("framed", "unframed", "header")
PROTOCOLS = ("binary", "compact")
MATRIX = [(t, p) for t in TRANSPORTS for p in PROTOCOLS]

_IDL = str(Path(__file__).with_name("hello.thrift"))
hello: Any = thriftpy2.load(_IDL, module_name="hello_thrift")

Writer = Callable[[Any], None]
_ALL_HEADER_TYPES = [
    THeaderClientType.HEADERS,
    THeaderClientType.FRAMED_BINARY,
    THeaderClientType.UNFRAMED_BINARY,
    THeaderClientType.FRAMED_COMPACT,
    THeaderClientType.UNFRAMED_COMPACT,
]


def _apache_protocol(transport: str, protocol: str, mem: TMemoryBuffer) -> tuple[Any, Any]:
    """(protocol, transport to flush) writing into ``mem``."""
    if transport == "header":
        sub = THeaderSubprotocolID.BINARY if protocol == "binary" else THeaderSubprotocolID.COMPACT
        proto = THeaderProtocol(mem, [THeaderClientType.HEADERS], default_protocol=sub)
        return proto, proto.trans
    trans = TFramedTransport(mem) if transport == "framed" else TBufferedTransport(mem)
    cls = TBinaryProtocol if protocol == "binary" else TCompactProtocol
    return cls(trans), trans


def apache_message(
    transport: str,
    protocol: str,
    name: str,
    message_type: int,
    seqid: int,
    body: Writer,
    headers: dict[bytes, bytes] | None = None,
) -> bytes:
    """One message written by Apache Thrift: begin, ``body(proto)``, end, flush."""
    mem = TMemoryBuffer()
    proto, trans = _apache_protocol(transport, protocol, mem)
    for key, value in (headers or {}).items():
        proto.set_header(key, value)
    proto.writeMessageBegin(name, message_type, seqid)
    body(proto)
    proto.writeMessageEnd()
    trans.flush()
    return bytes(mem.getvalue())


def rich_args(proto: Any) -> None:
    """A struct with every field type, nested containers and a nested struct."""
    proto.writeStructBegin("args")
    proto.writeFieldBegin("name", TType.STRING, 1)
    proto.writeString("Zoë")
    proto.writeFieldEnd()
    proto.writeFieldBegin("flag", TType.BOOL, 2)
    proto.writeBool(True)
    proto.writeFieldEnd()
    proto.writeFieldBegin("b", TType.BYTE, 3)
    proto.writeByte(-7)
    proto.writeFieldEnd()
    proto.writeFieldBegin("s", TType.I16, 4)
    proto.writeI16(-300)
    proto.writeFieldEnd()
    proto.writeFieldBegin("big", TType.I64, 20)  # long-form field id delta in compact
    proto.writeI64(-(2**40))
    proto.writeFieldEnd()
    proto.writeFieldBegin("d", TType.DOUBLE, 21)
    proto.writeDouble(3.25)
    proto.writeFieldEnd()
    proto.writeFieldBegin("ids", TType.LIST, 22)
    proto.writeListBegin(TType.I32, 20)  # >14 elements: compact long-form list size
    for i in range(20):
        proto.writeI32(i * 1000 - 5)
    proto.writeListEnd()
    proto.writeFieldEnd()
    proto.writeFieldBegin("flags", TType.SET, 23)
    proto.writeSetBegin(TType.BOOL, 3)
    for value in (True, False, True):
        proto.writeBool(value)
    proto.writeSetEnd()
    proto.writeFieldEnd()
    proto.writeFieldBegin("m", TType.MAP, 24)
    proto.writeMapBegin(TType.STRING, TType.LIST, 2)
    for key in ("a", "bb"):
        proto.writeString(key)
        proto.writeListBegin(TType.DOUBLE, 2)
        proto.writeDouble(1.5)
        proto.writeDouble(-2.5)
        proto.writeListEnd()
    proto.writeMapEnd()
    proto.writeFieldEnd()
    proto.writeFieldBegin("empty", TType.MAP, 25)
    proto.writeMapBegin(TType.I32, TType.STRING, 0)
    proto.writeMapEnd()
    proto.writeFieldEnd()
    proto.writeFieldBegin("inner", TType.STRUCT, 26)
    proto.writeStructBegin("inner")
    proto.writeFieldBegin("on", TType.BOOL, 1)
    proto.writeBool(False)
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()


def string_result(value: str) -> Writer:
    """A result struct with field 0 ``success`` = ``value``."""

    def write(proto: Any) -> None:
        proto.writeStructBegin("result")
        proto.writeFieldBegin("success", TType.STRING, 0)
        proto.writeString(value)
        proto.writeFieldEnd()
        proto.writeFieldStop()
        proto.writeStructEnd()

    return write


def declared_exception(proto: Any) -> None:
    """A result struct whose field 1 is an IDL-declared exception (a REPLY, not EXCEPTION)."""
    proto.writeStructBegin("result")
    proto.writeFieldBegin("nf", TType.STRUCT, 1)
    proto.writeStructBegin("NotFound")
    proto.writeFieldBegin("message", TType.STRING, 1)
    proto.writeString("nobody")
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()


def app_exception(proto: Any) -> None:
    """A TApplicationException written by Apache's own class."""
    TApplicationException(TApplicationException.INTERNAL_ERROR, "server broke").write(proto)


def requests_for(transport: str, protocol: str) -> list[bytes]:
    """CALL and ONEWAY samples, one multiplexed, one with a negative seqid."""
    headers = {b"X-Tenant": b"blue", b"trace": b"t-1"} if transport == "header" else None
    return [
        apache_message(transport, protocol, "sayHello", TMessageType.CALL, 5, rich_args, headers),
        apache_message(transport, protocol, "Hello:sayHello", TMessageType.CALL, 6, rich_args),
        apache_message(transport, protocol, "ping", TMessageType.ONEWAY, -2, rich_args),
    ]


def responses_for(transport: str, protocol: str) -> list[bytes]:
    """REPLY (success and declared exception) and EXCEPTION samples."""
    headers = {b"server": b"s1"} if transport == "header" else None
    ok = string_result("hi Zoë")
    return [
        apache_message(transport, protocol, "sayHello", TMessageType.REPLY, 5, ok, headers),
        apache_message(transport, protocol, "sayHello", TMessageType.REPLY, 6, declared_exception),
        apache_message(transport, protocol, "sayHello", TMessageType.EXCEPTION, 7, app_exception),
    ]


def thriftpy2_call(transport: str, protocol: str, seqid: int = 0) -> bytes:
    """``Hello.sayHello`` as a thriftpy2 client sends it (framed or unframed)."""
    mem = Py2MemoryBuffer()
    factory = TFramedTransportFactory() if transport == "framed" else TBufferedTransportFactory()
    trans = factory.get_transport(mem)
    proto_factory = TBinaryProtocolFactory() if protocol == "binary" else TCompactProtocolFactory()
    client = TClient(hello.Hello, proto_factory.get_protocol(trans))
    client._seqid = seqid
    buddy = hello.Person(name="Bo", age=3, scores=[], weights={}, tags=set(), active=False)
    person = hello.Person(
        name="Al",
        age=40,
        scores=[1, -2, 3],
        weights={"w": 0.5},
        tags={1, 2},
        active=True,
        buddy=buddy,
        blob=b"\x00\xff",
        level=9,
        groups=[["x", "y"], []],
    )
    client._send("sayHello", person=person, others=[buddy, buddy], extra={1: ["a"], -1: []})
    return bytes(mem.getvalue())


def read_header_frame(data: bytes) -> tuple[dict[bytes, bytes], str, int, int, Any]:
    """Decode a THeader frame with Apache: (headers, name, type, seqid, protocol)."""
    proto = THeaderProtocol(TMemoryBuffer(data), _ALL_HEADER_TYPES)
    name, mtype, seqid = proto.readMessageBegin()
    return dict(proto.get_headers()), name, mtype, seqid, proto


def apache_reader(transport: str, protocol: str, data: bytes) -> Any:
    """An Apache protocol reading ``data`` as a client of that transport would."""
    mem = TMemoryBuffer(data)
    if transport == "header":
        return THeaderProtocol(mem, _ALL_HEADER_TYPES)
    trans = TFramedTransport(mem) if transport == "framed" else TBufferedTransport(mem)
    return (TBinaryProtocol if protocol == "binary" else TCompactProtocol)(trans)
