"""Echo Thrift server runner, one real process per server.

    python -m tests.integration.peers.thrift_server --impl thriftpy2 --transport framed \
        --protocol binary --port 9090 --label v1

impl: thriftpy2 | apache; transport: framed | buffered | header (apache only);
protocol: binary | compact. Thread-per-connection servers with a large accept backlog and no
idle timeout on client connections (a proxy may keep pooled upstream connections idle).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.integration.peers.procs import LOOPBACK
from tests.integration.peers.thrift_idl import load_apache, load_thriftpy2

IMPLS = ("thriftpy2", "apache")
TRANSPORTS = ("framed", "buffered", "header")
PROTOCOLS = ("binary", "compact")
BACKLOG = 1024
MAX_SLOW_MS = 10_000


class EchoHandler:
    """Implements the Echo service; identical behaviour for both libraries."""

    def __init__(
        self, label: str, error_cls: type[Exception], app_error: Callable[[str], Exception]
    ) -> None:
        self.label = label
        self.error_cls = error_cls
        self.app_error = app_error
        self._lock = threading.Lock()
        self._fired = 0

    def echo(self, s: str) -> str:
        return s

    def add(self, a: int, b: int) -> int:
        return a + b

    def fire(self, s: str) -> None:
        with self._lock:
            self._fired += 1

    def fail(self, why: str) -> None:
        raise self.error_cls(why=why, code=len(why))  # type: ignore[call-arg]

    def blob(self, b: bytes) -> bytes:
        return b

    def whoami(self) -> str:
        return self.label

    def fired(self) -> int:
        with self._lock:
            return self._fired

    def slow(self, ms: int) -> str:
        # Simulated service latency (not a wait for an event): bounded to 10 s.
        time.sleep(max(0, min(ms, MAX_SLOW_MS)) / 1000.0)
        return self.label

    def crash(self) -> None:
        # The library's TApplicationException(INTERNAL_ERROR): what an unexpected handler
        # error becomes on the wire (thriftpy2 would otherwise just drop the connection).
        raise self.app_error(f"crash requested on {self.label}")


def _thriftpy2_server(transport: str, protocol: str, port: int, label: str) -> Any:
    from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
    from thriftpy2.server import TThreadedServer
    from thriftpy2.thrift import TApplicationException, TProcessor
    from thriftpy2.transport import (
        TBufferedTransportFactory,
        TFramedTransportFactory,
        TServerSocket,
    )

    if transport == "header":
        raise SystemExit("thriftpy2 has no THeader transport; use --impl apache")
    mod = load_thriftpy2()

    def app_error(msg: str) -> Exception:
        exc: Exception = TApplicationException(TApplicationException.INTERNAL_ERROR, msg)
        return exc

    processor = TProcessor(mod.Echo, EchoHandler(label, mod.EchoError, app_error))
    sock = TServerSocket(host=LOOPBACK, port=port, client_timeout=None, backlog=BACKLOG)
    trans = TFramedTransportFactory() if transport == "framed" else TBufferedTransportFactory()
    proto = TBinaryProtocolFactory() if protocol == "binary" else TCompactProtocolFactory()
    return TThreadedServer(processor, sock, iprot_factory=proto, itrans_factory=trans, daemon=True)


def _apache_server(transport: str, protocol: str, port: int, label: str) -> Any:
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.protocol.THeaderProtocol import THeaderProtocolFactory
    from thrift.server import TServer
    from thrift.Thrift import TApplicationException
    from thrift.transport import TSocket, TTransport
    from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID

    def app_error(msg: str) -> Exception:
        exc: Exception = TApplicationException(TApplicationException.INTERNAL_ERROR, msg)
        return exc

    gen = load_apache()
    processor = gen.service.Processor(EchoHandler(label, gen.EchoError, app_error))
    sock = TSocket.TServerSocket(host=LOOPBACK, port=port)
    sock.setBacklog(BACKLOG)
    trans_factory: Any
    proto_factory: Any
    if transport == "header":
        trans_factory = TTransport.TBufferedTransportFactory()
        sub = THeaderSubprotocolID.BINARY if protocol == "binary" else THeaderSubprotocolID.COMPACT
        proto_factory = THeaderProtocolFactory(
            allowed_client_types=(THeaderClientType.HEADERS,), default_protocol=sub
        )
    else:
        trans_factory = (
            TTransport.TFramedTransportFactory()
            if transport == "framed"
            else TTransport.TBufferedTransportFactory()
        )
        proto_factory = (
            TBinaryProtocol.TBinaryProtocolAcceleratedFactory()
            if protocol == "binary"
            else TCompactProtocol.TCompactProtocolAcceleratedFactory()
        )
    return TServer.TThreadedServer(processor, sock, trans_factory, proto_factory, daemon=True)


def build_server(impl: str, transport: str, protocol: str, port: int, label: str) -> Any:
    if impl == "thriftpy2":
        return _thriftpy2_server(transport, protocol, port, label)
    return _apache_server(transport, protocol, port, label)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--transport", choices=TRANSPORTS, required=True)
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", default="v1")
    args = parser.parse_args(argv)
    server = build_server(args.impl, args.transport, args.protocol, args.port, args.label)
    print(
        f"thrift {args.impl} {args.transport}/{args.protocol} label={args.label} "
        f"on {LOOPBACK}:{args.port}",
        flush=True,
    )
    server.serve()  # runs until SIGTERM (default action ends the process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
