"""Pre-encoded Thrift and Dubbo frames for the load generator and the echo servers.

Every byte string here is built once, with the real wire format, so the hot loops of the
generator and the servers only patch a sequence id / request id in place and slice by length
prefix: the processes under test (the proxies) must be the only ones doing protocol work.

Thrift: framed transport, strict binary protocol, ``echo(1: string s)`` of the benchmark IDL
(``benchmarks/echo.thrift``). Dubbo: Dubbo 2 header + Hessian2 body of
``org.apache.dubbo.samples.EchoService.echo(Ljava/lang/String;)`` with a few attachments.
"""

from __future__ import annotations

import struct
from typing import Final

#: Size of the string argument (and of the echoed result): a typical small RPC.
PAYLOAD_SIZE: Final = 100
PAYLOAD: Final = ("0123456789" * (PAYLOAD_SIZE // 10 + 1))[:PAYLOAD_SIZE]

# ------------------------------------------------------------------------------------ Thrift

THRIFT_VERSION_1: Final = 0x80010000
THRIFT_CALL: Final = 1
THRIFT_REPLY: Final = 2
THRIFT_STRING: Final = 11
THRIFT_METHOD: Final = "echo"
#: Offset of the i32 seqid inside a framed CALL/REPLY of method ``echo`` (frame length 4 +
#: version 4 + name length 4 + name).
THRIFT_SEQID_OFFSET: Final = 12 + len(THRIFT_METHOD)
_I32 = struct.Struct(">i")


def thrift_message(msg_type: int, name: str, seqid: int, struct_body: bytes) -> bytes:
    """One framed strict-binary message: ``[len][version|type][name][seqid][struct]``."""
    raw = name.encode()
    body = (
        _I32.pack(THRIFT_VERSION_1 - 0x100000000 + msg_type)
        + _I32.pack(len(raw))
        + raw
        + _I32.pack(seqid)
        + struct_body
    )
    return _I32.pack(len(body)) + body


def thrift_string_field(field_id: int, value: str) -> bytes:
    """A STRING field header plus its value (binary protocol)."""
    data = value.encode()
    return struct.pack(">bh", THRIFT_STRING, field_id) + _I32.pack(len(data)) + data


def thrift_echo_call(seqid: int = 0, payload: str = PAYLOAD) -> bytes:
    """The CALL ``echo(s=payload)``: args struct with field 1, then STOP."""
    return thrift_message(
        THRIFT_CALL, THRIFT_METHOD, seqid, thrift_string_field(1, payload) + b"\0"
    )


def thrift_echo_reply(seqid: int = 0, payload: str = PAYLOAD) -> bytes:
    """The REPLY of ``echo``: result struct with the success field (id 0), then STOP."""
    return thrift_message(
        THRIFT_REPLY, THRIFT_METHOD, seqid, thrift_string_field(0, payload) + b"\0"
    )


# ------------------------------------------------------------------------------------- Dubbo

DUBBO_MAGIC: Final = 0xDABB
DUBBO_FLAG_REQUEST: Final = 0x80
DUBBO_FLAG_TWO_WAY: Final = 0x40
DUBBO_FLAG_EVENT: Final = 0x20
DUBBO_HESSIAN2: Final = 2
DUBBO_STATUS_OK: Final = 20
#: RpcResponseType RESPONSE_VALUE: a value follows, no attachments.
DUBBO_RESPONSE_VALUE: Final = 1
DUBBO_HEADER: Final = struct.Struct(">HBBqI")
DUBBO_HEADER_SIZE: Final = 16
#: Offset of the i64 request id in the header.
DUBBO_ID_OFFSET: Final = 4
DUBBO_INTERFACE: Final = "org.apache.dubbo.samples.EchoService"
DUBBO_METHOD: Final = "echo"
DUBBO_DESCRIPTOR: Final = "Ljava/lang/String;"
DUBBO_VERSION: Final = "2.0.2"
DUBBO_SERVICE_VERSION: Final = "0.0.0"


def h2_string(value: str) -> bytes:
    """Hessian2 string in one chunk (the length counts UTF-16 units; the benchmark uses ASCII)."""
    data = value.encode()
    n = len(value)
    if n < 32:
        return bytes([n]) + data
    if n < 1024:
        return bytes([0x30 + (n >> 8), n & 0xFF]) + data
    if n < 0x8000:
        return b"S" + struct.pack(">H", n) + data
    raise ValueError("string too long for a single Hessian2 chunk")


def h2_int(value: int) -> bytes:
    """Hessian2 int, compact one-byte form when it fits, else the 5-byte form."""
    if -16 <= value <= 47:
        return bytes([0x90 + value])
    return b"I" + struct.pack(">i", value)


def h2_string_map(items: dict[str, str]) -> bytes:
    """Untyped Hessian2 map of strings (``H`` ... ``Z``), which is how attachments travel."""
    return b"H" + b"".join(h2_string(k) + h2_string(v) for k, v in items.items()) + b"Z"


def dubbo_frame(flag: int, status: int, request_id: int, body: bytes) -> bytes:
    """A Dubbo 2 frame: 16-byte header, then the body."""
    return DUBBO_HEADER.pack(DUBBO_MAGIC, flag, status, request_id, len(body)) + body


def dubbo_attachments() -> dict[str, str]:
    """What a Dubbo 2.7 consumer sends, plus one custom key a route could match."""
    return {
        "path": DUBBO_INTERFACE,
        "interface": DUBBO_INTERFACE,
        "version": DUBBO_SERVICE_VERSION,
        "timeout": "3000",
        "env": "bench",
    }


def dubbo_echo_request(request_id: int = 0, payload: str = PAYLOAD) -> bytes:
    """Two-way Hessian2 request ``EchoService.echo(payload)`` with attachments."""
    body = (
        h2_string(DUBBO_VERSION)
        + h2_string(DUBBO_INTERFACE)
        + h2_string(DUBBO_SERVICE_VERSION)
        + h2_string(DUBBO_METHOD)
        + h2_string(DUBBO_DESCRIPTOR)
        + h2_string(payload)
        + h2_string_map(dubbo_attachments())
    )
    flag = DUBBO_FLAG_REQUEST | DUBBO_FLAG_TWO_WAY | DUBBO_HESSIAN2
    return dubbo_frame(flag, 0, request_id, body)


def dubbo_echo_response(request_id: int = 0, payload: str = PAYLOAD) -> bytes:
    """Status 20, RpcResponseType 1 (value), the value a Hessian2 string."""
    body = h2_int(DUBBO_RESPONSE_VALUE) + h2_string(payload)
    return dubbo_frame(DUBBO_HESSIAN2, DUBBO_STATUS_OK, request_id, body)


def dubbo_heartbeat_response(request_id: int) -> bytes:
    """Answer to a heartbeat event: status 20, event flag, body Hessian2 null."""
    return dubbo_frame(DUBBO_HESSIAN2 | DUBBO_FLAG_EVENT, DUBBO_STATUS_OK, request_id, b"N")
