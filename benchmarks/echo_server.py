"""Cheap upstream echo servers (Thrift framed binary, Dubbo Hessian2) on uvloop.

The proxy is what the benchmark measures, so the upstream must cost as little CPU per request
as possible: it parses only the length prefix and the few bytes it must echo (Thrift: message
type, name length, field id; Dubbo: header flags and request id), answers every frame read in
one ``data_received`` with a single ``transport.write``, and never builds Python objects for
the payload.

* Thrift: every CALL is answered with a REPLY carrying the same name, seqid and string (the
  args struct ``{1: string}`` is turned into the result struct ``{0: string}`` by patching
  three bytes of a copy).
* Dubbo: every two-way request gets status 20, RpcResponseType 1 and a fixed Hessian2 string
  with the request's id; heartbeats get a heartbeat response; oneway requests get nothing.

    python -m benchmarks.echo_server thrift|dubbo --port N [--cpu C]

Prints ``READY <port>`` on stdout once listening on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import sys
from typing import cast

import uvloop

from benchmarks import wire

_LEN = struct.Struct(">I")
_DUBBO_RESPONSE = wire.dubbo_echo_response(0)
_DUBBO_RESPONSE_HEAD = _DUBBO_RESPONSE[: wire.DUBBO_ID_OFFSET]
_DUBBO_RESPONSE_TAIL = _DUBBO_RESPONSE[wire.DUBBO_ID_OFFSET + 8 :]
_DUBBO_HEARTBEAT_HEAD = wire.dubbo_heartbeat_response(0)[: wire.DUBBO_ID_OFFSET]
_DUBBO_HEARTBEAT_TAIL = wire.dubbo_heartbeat_response(0)[wire.DUBBO_ID_OFFSET + 8 :]
_MAX_FRAME = 16 * 1024 * 1024


class _FramedServer(asyncio.Protocol):
    """Accumulates bytes, hands complete frames to :meth:`answer`, writes once per read."""

    header_size = 4

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def frame_size(self, buf: bytearray, pos: int) -> int:
        """Total size of the frame starting at ``pos`` (its header is complete)."""
        raise NotImplementedError

    def answer(self, frame: memoryview, out: bytearray) -> None:
        """Append the response to ``frame`` (if any) to ``out``."""
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = bytearray()
        pos = 0
        end = len(buf)
        hsize = self.header_size
        with memoryview(buf) as view:
            while end - pos >= hsize:
                size = self.frame_size(buf, pos)
                if size > _MAX_FRAME:
                    assert self.transport is not None
                    self.transport.abort()
                    return
                if end - pos < size:
                    break
                self.answer(view[pos : pos + size], out)
                pos += size
        if pos:
            del buf[:pos]
        if out:
            assert self.transport is not None
            self.transport.write(out)


class ThriftEcho(_FramedServer):
    """Framed strict-binary Thrift: CALL → REPLY with the same seqid and string."""

    header_size = 4

    def frame_size(self, buf: bytearray, pos: int) -> int:
        return 4 + int(_LEN.unpack_from(buf, pos)[0])

    def answer(self, frame: memoryview, out: bytearray) -> None:
        start = len(out)
        out += frame
        # Body: [version|type:4][name_len:4][name][seqid:4][args struct]
        out[start + 7] = wire.THRIFT_REPLY
        name_len = _LEN.unpack_from(frame, 8)[0]
        field = start + 16 + name_len
        if out[field] == wire.THRIFT_STRING and out[field + 1 : field + 3] == b"\0\1":
            out[field + 1 : field + 3] = b"\0\0"  # args field 1 → result field 0 (success)
        else:  # not echo(string): answer with a fixed success string instead
            del out[start:]
            seqid = _LEN.unpack_from(frame, 12 + name_len)[0]
            name = bytes(frame[12 : 12 + name_len]).decode()
            out += wire.thrift_message(
                wire.THRIFT_REPLY,
                name,
                seqid,
                wire.thrift_string_field(0, wire.PAYLOAD) + b"\0",
            )


class DubboEcho(_FramedServer):
    """Dubbo 2: two-way request → status 20 value response; heartbeat → heartbeat response."""

    header_size = wire.DUBBO_HEADER_SIZE

    def frame_size(self, buf: bytearray, pos: int) -> int:
        return wire.DUBBO_HEADER_SIZE + int(_LEN.unpack_from(buf, pos + 12)[0])

    def answer(self, frame: memoryview, out: bytearray) -> None:
        flag = frame[2]
        if not flag & wire.DUBBO_FLAG_REQUEST or not flag & wire.DUBBO_FLAG_TWO_WAY:
            return
        rid = frame[wire.DUBBO_ID_OFFSET : wire.DUBBO_ID_OFFSET + 8]
        if flag & wire.DUBBO_FLAG_EVENT:
            out += _DUBBO_HEARTBEAT_HEAD
            out += rid
            out += _DUBBO_HEARTBEAT_TAIL
        else:
            out += _DUBBO_RESPONSE_HEAD
            out += rid
            out += _DUBBO_RESPONSE_TAIL


async def serve(kind: str, port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    factory = ThriftEcho if kind == "thrift" else DubboEcho
    server = await loop.create_server(factory, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["thrift", "dubbo"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    uvloop.run(serve(args.kind, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
