"""Sanity checks of the real peers, with no proxy in between."""

from __future__ import annotations

import pytest

from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class, echo_error_class
from tests.integration.peers.thrift_peer import IMPLS, ThriftServerCache, thrift_matrix

pytestmark = pytest.mark.integration

THRIFT_PAIRS = [
    pytest.param(
        server, client, transport, protocol, id=f"s:{server}-c:{client}-{transport}-{protocol}"
    )
    for server, transport, protocol in thrift_matrix()
    for client in IMPLS
    if not (client == "thriftpy2" and transport == "header")
]


@pytest.mark.parametrize(("server_impl", "client_impl", "transport", "protocol"), THRIFT_PAIRS)
def test_thrift_pair(
    thrift_servers: ThriftServerCache,
    server_impl: str,
    client_impl: str,
    transport: str,
    protocol: str,
) -> None:
    server = thrift_servers.get(server_impl, transport, protocol, label="v1")
    with make_thrift_client(client_impl, transport, protocol, server.host, server.port) as c:
        before = c.fired()
        assert c.echo("héllo wörld") == "héllo wörld"
        assert c.add(20, 22) == 42
        assert c.add(-(2**31), 0) == -(2**31)
        with pytest.raises(echo_error_class(client_impl)) as excinfo:
            c.fail("on purpose")
        assert excinfo.value.why == "on purpose"  # type: ignore[attr-defined]
        assert c.blob(bytes(range(256))) == bytes(range(256))
        c.fire("one way")
        # The follow-up call proves the connection survived the oneway and the exception,
        # and (same connection, in order) that the oneway reached the server first.
        assert c.whoami() == "v1"
        assert c.fired() == before + 1
        with pytest.raises(application_exception_class(client_impl)):
            c.crash()
        assert c.echo("after crash") == "after crash"
