"""Launch Echo Thrift servers as separate processes and describe them for tests."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from tests.integration.peers.procs import LOOPBACK, REPO_ROOT, PeerProcess, ProcessGroup
from tests.integration.peers.thrift_client import EchoClient, make_thrift_client, supported
from tests.integration.peers.thrift_idl import apache_gen_dir

IMPLS = ("thriftpy2", "apache")
TRANSPORTS = ("framed", "buffered", "header")
PROTOCOLS = ("binary", "compact")


@dataclass(frozen=True)
class ThriftServer:
    """A running Echo server process (listening on ``host:port``)."""

    impl: str
    transport: str
    protocol: str
    label: str
    host: str
    port: int
    process: PeerProcess

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def client(
        self, impl: str | None = None, *, timeout: float = 5.0
    ) -> AbstractContextManager[EchoClient]:
        """A client of the same transport/protocol, talking directly to this server."""
        return make_thrift_client(
            impl or self.impl, self.transport, self.protocol, self.host, self.port, timeout=timeout
        )


def thrift_matrix() -> Iterator[tuple[str, str, str]]:
    """Every supported (impl, transport, protocol) server configuration."""
    for impl, transport, protocol in itertools.product(IMPLS, TRANSPORTS, PROTOCOLS):
        if supported(impl, transport, protocol):
            yield impl, transport, protocol


def start_thrift_server(
    group: ProcessGroup,
    impl: str,
    transport: str,
    protocol: str,
    *,
    label: str = "v1",
    ready_timeout: float = 30.0,
) -> ThriftServer:
    """Start ``python -m tests.integration.peers.thrift_server`` on a free loopback port."""
    if not supported(impl, transport, protocol):
        raise ValueError(f"{impl} does not support transport {transport!r}")
    if impl == "apache":
        apache_gen_dir()  # generate once here, not concurrently in every child

    def argv(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.integration.peers.thrift_server",
            "--impl",
            impl,
            "--transport",
            transport,
            "--protocol",
            protocol,
            "--port",
            str(port),
            "--label",
            label,
        ]

    proc = group.spawn_listening(
        f"thrift-{impl}-{transport}-{protocol}-{label}",
        argv,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        ready_timeout=ready_timeout,
    )
    return ThriftServer(impl, transport, protocol, label, LOOPBACK, proc.port, proc)


class ThriftServerCache:
    """Session cache: one server per (impl, transport, protocol, label), started on first use."""

    def __init__(self, group: ProcessGroup) -> None:
        self._group = group
        self._servers: dict[tuple[str, str, str, str], ThriftServer] = {}

    def get(self, impl: str, transport: str, protocol: str, label: str = "v1") -> ThriftServer:
        key = (impl, transport, protocol, label)
        server = self._servers.get(key)
        if server is None or not server.process.alive():
            server = start_thrift_server(self._group, impl, transport, protocol, label=label)
            self._servers[key] = server
        return server
