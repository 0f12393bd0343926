"""on_error: TApplicationException replies that real Thrift clients read (§28.5)."""

from __future__ import annotations

import pytest
from thrift.Thrift import TApplicationException, TMessageType
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.thrift import TApplicationException as Py2ApplicationException
from thriftpy2.thrift import TClient
from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory, TMemoryBuffer

from aeraki.codec.api import ErrorType, LocalError, MessageType, Metadata, ResponseStatus, Side
from aeraki.codec.thrift import ThriftCodec
from aeraki.codec.thrift.codec import EXCEPTION_TYPES
from tests.codec.thrift import wire

#: §28.5's example: binary, framed, method sayHello, seq 5, message "abc", INTERNAL_ERROR.
REFERENCE_REPLY = bytes.fromhex(
    "00000026 80010003 00000008 73617948656c6c6f 00000005"
    " 0b0001 00000003 616263 080002 00000006 00".replace(" ", "")
)


def _request(transport: str, protocol: str, name: str = "sayHello", seqid: int = 5) -> Metadata:
    sample = wire.apache_message(
        transport, protocol, name, TMessageType.CALL, seqid, wire.rich_args
    )
    (md,) = ThriftCodec(Side.REQUEST).decode(sample)
    return md


def test_reference_bytes_binary_framed() -> None:
    md = _request("framed", "binary")
    reply = ThriftCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.UNSPECIFIED, "abc"))
    assert reply == REFERENCE_REPLY


@pytest.mark.parametrize(("transport", "protocol"), wire.MATRIX)
@pytest.mark.parametrize("seqid", [5, -2, 2**31 - 1])
def test_apache_client_reads_the_exception(transport: str, protocol: str, seqid: int) -> None:
    md = _request(transport, protocol, "Hello:sayHello", seqid)
    reply = ThriftCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.ROUTE_NOT_FOUND, "nope"))
    iprot = wire.apache_reader(transport, protocol, reply)
    # What Apache-generated recv_<method> does:
    name, mtype, rseqid = iprot.readMessageBegin()
    assert (name, mtype, rseqid) == ("sayHello", TMessageType.EXCEPTION, seqid)
    exc = TApplicationException()
    exc.read(iprot)
    iprot.readMessageEnd()
    assert (exc.type, exc.message) == (TApplicationException.UNKNOWN_METHOD, "nope")
    if transport == "header":
        header_transport = iprot.trans
        assert header_transport.sequence_id == seqid
        assert header_transport.protocol_id == (0 if protocol == "binary" else 2)


@pytest.mark.parametrize("transport", ["framed", "unframed"])
@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
def test_thriftpy2_client_raises_application_exception(transport: str, protocol: str) -> None:
    sample = wire.thriftpy2_call(transport, protocol, seqid=11)
    (md,) = ThriftCodec(Side.REQUEST).decode(sample)
    reply = ThriftCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.OVER_LIMIT, "slow down"))
    factory = TFramedTransportFactory() if transport == "framed" else TBufferedTransportFactory()
    proto_factory = TBinaryProtocolFactory() if protocol == "binary" else TCompactProtocolFactory()
    client = TClient(
        wire.hello.Hello, proto_factory.get_protocol(factory.get_transport(TMemoryBuffer(reply)))
    )
    with pytest.raises(Py2ApplicationException) as caught:
        client._recv("sayHello")
    assert caught.value.type == Py2ApplicationException.INTERNAL_ERROR
    assert caught.value.message == "slow down"


@pytest.mark.parametrize("error_type", list(ErrorType))
def test_error_type_mapping(error_type: ErrorType) -> None:
    expected = {ErrorType.ROUTE_NOT_FOUND: 1, ErrorType.BAD_RESPONSE: 7}.get(error_type, 6)
    assert EXCEPTION_TYPES[error_type] == expected
    md = _request("unframed", "compact")
    reply = ThriftCodec(Side.REQUEST).on_error(md, LocalError(error_type, "why"))
    (decoded,) = ThriftCodec(Side.RESPONSE).decode(reply)
    assert (decoded.message_type, decoded.response_status) == (
        MessageType.ERROR,
        ResponseStatus.ERROR,
    )
    iprot = wire.apache_reader("unframed", "compact", reply)
    iprot.readMessageBegin()
    exc = TApplicationException()
    exc.read(iprot)
    assert exc.type == expected


def test_header_reply_keeps_flags_and_protocol() -> None:
    sample = bytearray(wire.requests_for("header", "compact")[0])
    sample[6:8] = b"\x00\x01"  # flags (e.g. "support out-of-order responses")
    (md,) = ThriftCodec(Side.REQUEST).decode(bytes(sample))
    reply = ThriftCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.TIMEOUT, "late"))
    assert reply[4:8] == b"\x0f\xff\x00\x01"
    headers, name, mtype, seqid, iprot = wire.read_header_frame(reply)
    assert (headers, name, mtype, seqid) == ({}, "sayHello", TMessageType.EXCEPTION, 5)
    exc = TApplicationException()
    exc.read(iprot)
    assert exc.message == "late"


def test_oneway_gets_no_reply() -> None:
    oneway = wire.requests_for("framed", "binary")[2]
    (md,) = ThriftCodec(Side.REQUEST).decode(oneway)
    assert md.message_type is MessageType.ONEWAY
    assert ThriftCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.TIMEOUT, "x")) == b""


def test_reply_for_foreign_metadata_uses_detected_transport() -> None:
    codec = ThriftCodec(Side.REQUEST)
    codec.decode(wire.requests_for("unframed", "compact")[0])
    md = Metadata(MessageType.REQUEST, request_id=9)
    md.put_string("method", "m")
    reply = codec.on_error(md, LocalError(ErrorType.UNSPECIFIED, "e"))
    iprot = wire.apache_reader("unframed", "compact", reply)
    assert iprot.readMessageBegin() == ("m", TMessageType.EXCEPTION, 9)
