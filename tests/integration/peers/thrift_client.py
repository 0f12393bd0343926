"""In-process Echo Thrift clients for both libraries and every transport x protocol pair."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, cast

from tests.integration.peers.thrift_idl import load_apache, load_thriftpy2


class EchoClient(Protocol):
    """The Echo service as seen by a client (both libraries expose these methods)."""

    def echo(self, s: str) -> str: ...
    def add(self, a: int, b: int) -> int: ...
    def fire(self, s: str) -> None: ...
    def fail(self, why: str) -> None: ...
    def blob(self, b: bytes) -> bytes: ...
    def whoami(self) -> str: ...
    def fired(self) -> int: ...
    def slow(self, ms: int) -> str: ...
    def crash(self) -> None: ...


def supported(impl: str, transport: str, protocol: str) -> bool:
    """thriftpy2 has no THeader transport; everything else is supported."""
    return not (impl == "thriftpy2" and transport == "header")


@contextlib.contextmanager
def make_thrift_client(
    impl: str,
    transport: str,
    protocol: str,
    host: str,
    port: int,
    *,
    timeout: float = 5.0,
) -> Iterator[EchoClient]:
    """Connect an Echo client; the connection is closed when the context exits.

    impl: "thriftpy2" | "apache"; transport: "framed" | "buffered" | "header" (apache only);
    protocol: "binary" | "compact". ``timeout`` (seconds) bounds connect and every call.
    Declared errors raise :func:`~tests.integration.peers.thrift_idl.echo_error_class`;
    protocol-level errors raise the library's ``TApplicationException``.
    """
    if not supported(impl, transport, protocol):
        raise ValueError(f"{impl} does not support transport {transport!r}")
    if impl == "thriftpy2":
        with _thriftpy2_client(transport, protocol, host, port, timeout) as c:
            yield c
    elif impl == "apache":
        with _apache_client(transport, protocol, host, port, timeout) as c:
            yield c
    else:
        raise ValueError(f"unknown thrift impl {impl!r}")


@contextlib.contextmanager
def _thriftpy2_client(
    transport: str, protocol: str, host: str, port: int, timeout: float
) -> Iterator[EchoClient]:
    from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory

    mod = load_thriftpy2()
    proto_cls = TBinaryProtocolFactory if protocol == "binary" else TCompactProtocolFactory
    trans_cls = TFramedTransportFactory if transport == "framed" else TBufferedTransportFactory
    client: Any = make_client(
        mod.Echo,
        host,
        port,
        proto_factory=proto_cls(),
        trans_factory=trans_cls(),
        timeout=int(timeout * 1000),
    )
    try:
        yield cast(EchoClient, client)
    finally:
        client.close()


@contextlib.contextmanager
def _apache_client(
    transport: str, protocol: str, host: str, port: int, timeout: float
) -> Iterator[EchoClient]:
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.protocol.THeaderProtocol import THeaderProtocol
    from thrift.transport import TSocket, TTransport
    from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID

    gen = load_apache()
    sock = TSocket.TSocket(host, port)
    sock.setTimeout(timeout * 1000)
    trans: Any
    proto: Any
    if transport == "header":
        trans = TTransport.TBufferedTransport(sock)
        proto = THeaderProtocol(
            trans,
            (THeaderClientType.HEADERS,),
            THeaderSubprotocolID.BINARY if protocol == "binary" else THeaderSubprotocolID.COMPACT,
        )
    else:
        trans = (
            TTransport.TFramedTransport(sock)
            if transport == "framed"
            else TTransport.TBufferedTransport(sock)
        )
        proto = (
            TBinaryProtocol.TBinaryProtocolAccelerated(trans)
            if protocol == "binary"
            else TCompactProtocol.TCompactProtocolAccelerated(trans)
        )
    client: Any = gen.service.Client(proto)
    trans.open()
    try:
        yield cast(EchoClient, client)
    finally:
        trans.close()
