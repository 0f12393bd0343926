"""Sanity checks of the real peers, with no proxy in between."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import EnvoyFactory
from tests.integration.peers.dubbo import (
    CONSUMERS,
    STATUS_OK,
    DubboCall,
    DubboCallError,
    DubboProvider,
    dubbo_calls,
    dubbo_heartbeat,
    dubbo_invoke,
    heartbeat_frame,
    raw_exchange,
    request_frame,
)
from tests.integration.peers.envoy import tcp_proxy_bootstrap
from tests.integration.peers.procs import LOOPBACK
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


# ---------------------------------------------------------------------------- Dubbo


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_dubbo_consumer_calls_java_provider(dubbo_provider: DubboProvider, consumer: str) -> None:
    calls = [
        DubboCall("sayHello", ["aeraki"]),
        DubboCall("getAttachment", ["x-user"], {"x-user": "alice"}),
        DubboCall("whoami"),
        DubboCall("echo", [[1, 2, 3]]),
        DubboCall("fail", ["on purpose"]),
        DubboCall("sayHello", ["again"]),  # the connection survives the exception response
    ]
    results = dubbo_calls(consumer, dubbo_provider.host, dubbo_provider.port, calls)
    hello, att, who, echo, fail, again = results
    assert hello.ok, hello
    assert hello.value == "Hello aeraki, response from v1"
    assert att.value == "alice"
    assert who.value == "v1"
    assert echo.value == [1, 2, 3]
    assert not fail.ok
    assert "on purpose" in fail.error
    assert again.value == "Hello again, response from v1"


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_dubbo_error_raises(dubbo_provider: DubboProvider, consumer: str) -> None:
    with pytest.raises(DubboCallError, match="kaboom"):
        dubbo_invoke(consumer, dubbo_provider.host, dubbo_provider.port, "fail", ["kaboom"])
    with pytest.raises(DubboCallError, match="no method"):
        dubbo_invoke(consumer, dubbo_provider.host, dubbo_provider.port, "noSuchMethod")


def test_dubbo_node_response_attachments_and_pipelining(dubbo_provider: DubboProvider) -> None:
    calls = [DubboCall("slow", [300]), DubboCall("echo", ["fast"], {"want-attachments": "1"})]
    slow, fast = dubbo_calls(
        "node", dubbo_provider.host, dubbo_provider.port, calls, concurrent=True
    )
    assert slow.value == "v1"
    assert fast.value == "fast"
    assert fast.attachments == {"provider": "v1", "dubbo": "2.0.2"}


def test_dubbo_heartbeat_and_oneway_raw(
    dubbo_provider_factory: Callable[[str], DubboProvider],
) -> None:
    provider = dubbo_provider_factory("v2")  # fresh: its oneway counter starts at 0
    hb = dubbo_heartbeat(provider.host, provider.port, request_id=4242)
    assert hb.request_id == 4242
    assert hb.is_event
    assert not hb.is_request
    assert hb.status == STATUS_OK
    frames = [
        request_frame(1, "sayHello", ["oneway"], two_way=False),
        heartbeat_frame(2),
        request_frame(3, "countOneway"),
    ]
    replies = raw_exchange(provider.host, provider.port, frames, replies=2)
    assert [f.request_id for f in replies] == [2, 3]  # nothing came back for the oneway
    assert replies[0].is_event
    assert replies[1].status == STATUS_OK
    # Hessian2: compact int 1 (RESPONSE_VALUE), then the count, compact int 1
    assert replies[1].body == b"\x91\x91"
    assert dubbo_invoke("node", provider.host, provider.port, "whoami") == "v2"


# ---------------------------------------------------------------------------- Envoy


def test_envoy_tcp_proxy_in_front_of_thrift(
    thrift_servers: ThriftServerCache, envoy_factory: EnvoyFactory
) -> None:
    server = thrift_servers.get("apache", "framed", "binary", label="v1")
    envoy = envoy_factory(tcp_proxy_bootstrap(server.host, server.port), port_names=("listener",))
    with make_thrift_client(
        "thriftpy2", "framed", "binary", LOOPBACK, envoy.ports["listener"]
    ) as c:
        assert c.add(1, 2) == 3
        assert c.whoami() == "v1"
    stats = envoy.stats(r"^tcp\.")
    assert stats.get("tcp.tcp.downstream_cx_total", 0) >= 1


@pytest.mark.parametrize(
    ("impl", "transport", "protocol"),
    [("thriftpy2", "framed", "binary"), ("apache", "header", "compact")],
)
def test_thrift_server_200_concurrent_connections(
    thrift_servers: ThriftServerCache, impl: str, transport: str, protocol: str
) -> None:
    server = thrift_servers.get(impl, transport, protocol, label="v1")
    n = 200
    barrier = threading.Barrier(n, timeout=30)

    def one(i: int) -> str:
        with make_thrift_client(
            impl, transport, protocol, server.host, server.port, timeout=30
        ) as c:
            barrier.wait()  # all n connections are open at the same time
            return f"{c.echo(str(i))}/{c.whoami()}"

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n), timeout=60))
    assert results == [f"{i}/v1" for i in range(n)]
