"""Thrift through our proxy (a real ``aeraki proxy`` process) with real thriftpy2 and Apache
thrift clients and servers: every transport x protocol pair, method routing, weighted split,
declared exceptions, oneway, local replies, a 1 MiB message, 200 concurrent connections and
multiplexing onto shared upstream connections."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.aeraki_proxy import (
    AerakiProxy,
    bootstrap,
    meta_listener,
    meta_route,
    new_port,
    start_aeraki_proxy,
    static_cluster,
)
from tests.integration.peers.procs import LOOPBACK, ProcessGroup, can_connect, poll_until
from tests.integration.peers.thrift_client import make_thrift_client, supported
from tests.integration.peers.thrift_idl import application_exception_class, echo_error_class
from tests.integration.peers.thrift_peer import ThriftServerCache

IMPLS = ("thriftpy2", "apache")
TRANSPORTS = ("framed", "buffered", "header")
PROTOCOLS = ("binary", "compact")
SERVER_KINDS = [
    (impl, t, p) for impl in IMPLS for t in TRANSPORTS for p in PROTOCOLS if supported(impl, t, p)
]
PAIRS = [
    (client, server, t, p)
    for (server, t, p) in SERVER_KINDS
    for client in IMPLS
    if supported(client, t, p)
]


def _kind_name(impl: str, transport: str, protocol: str) -> str:
    return f"{impl}-{transport}-{protocol}"


@pytest.fixture(scope="module")
def matrix_proxy(
    thrift_servers: ThriftServerCache,
    session_peers: ProcessGroup,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AerakiProxy]:
    """One proxy with a listener in front of each kind of server."""
    listeners, clusters = [], []
    for impl, transport, protocol in SERVER_KINDS:
        server = thrift_servers.get(impl, transport, protocol, "v1")
        name = _kind_name(impl, transport, protocol)
        listeners.append(meta_listener(name, new_port(), "thrift", [meta_route(name)]))
        clusters.append(static_cluster(name, [server.port]))
    config = bootstrap(listeners, clusters, new_port())
    proxy = start_aeraki_proxy(session_peers, config, tmp_path_factory.mktemp("matrix"))
    yield proxy
    session_peers.stop(proxy.process)


@pytest.mark.parametrize(("client", "server", "transport", "protocol"), PAIRS)
def test_every_transport_and_protocol_pair_passes_through(
    matrix_proxy: AerakiProxy, client: str, server: str, transport: str, protocol: str
) -> None:
    port = matrix_proxy.ports[_kind_name(server, transport, protocol)]
    with make_thrift_client(client, transport, protocol, LOOPBACK, port) as echo:
        assert echo.echo("héllo") == "héllo"
        assert echo.add(40, 2) == 42
        assert echo.whoami() == "v1"
        with pytest.raises(echo_error_class(client)) as raised:
            echo.fail("boom")
        assert raised.value.why == "boom"  # type: ignore[attr-defined]
        before = echo.fired()
        echo.fire("one way")
        # the oneway was forwarded: the server's counter moved (calls on one connection
        # are processed in order, so the next call observes it)
        assert echo.fired() == before + 1


@pytest.fixture(scope="module")
def routed(
    thrift_servers: ThriftServerCache,
    session_peers: ProcessGroup,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AerakiProxy]:
    """Listeners for routing tests in front of thriftpy2 framed/binary servers v1 and v2."""
    v1 = thrift_servers.get("thriftpy2", "framed", "binary", "v1")
    v2 = thrift_servers.get("thriftpy2", "framed", "binary", "v2")
    listeners = [
        meta_listener(
            "by-method",
            new_port(),
            "thrift",
            [meta_route("v2", match={"method": "slow"}), meta_route("v1")],
        ),
        meta_listener(
            "weighted", new_port(), "thrift", [meta_route(weighted=[("v1", 70), ("v2", 30)])]
        ),
        meta_listener(
            "strict", new_port(), "thrift", [meta_route("v1", match={"method": "whoami"})]
        ),
        meta_listener("mux", new_port(), "thrift", [meta_route("v1")], multiplexing=True),
    ]
    clusters = [static_cluster("v1", [v1.port]), static_cluster("v2", [v2.port])]
    proxy = start_aeraki_proxy(
        session_peers, bootstrap(listeners, clusters, new_port()), tmp_path_factory.mktemp("routed")
    )
    yield proxy
    session_peers.stop(proxy.process)


def test_method_routing_sends_methods_to_their_version(routed: AerakiProxy) -> None:
    with make_thrift_client(
        "thriftpy2", "framed", "binary", LOOPBACK, routed.ports["by-method"]
    ) as c:
        assert c.whoami() == "v1"
        assert c.slow(0) == "v2"
        assert c.whoami() == "v1"


def test_weighted_split_is_within_five_percent(routed: AerakiProxy) -> None:
    calls = 2000
    with make_thrift_client("apache", "framed", "binary", LOOPBACK, routed.ports["weighted"]) as c:
        answers = [c.whoami() for _ in range(calls)]
    share = answers.count("v1") / calls
    assert set(answers) == {"v1", "v2"}
    assert 0.65 <= share <= 0.75, share


def test_unrouted_method_gets_unknown_method_application_exception(routed: AerakiProxy) -> None:
    port = routed.ports["strict"]
    for impl in IMPLS:
        with make_thrift_client(impl, "framed", "binary", LOOPBACK, port) as c:
            with pytest.raises(application_exception_class(impl)) as raised:
                c.echo("nowhere")
            assert raised.value.type == 1  # type: ignore[attr-defined] # UNKNOWN_METHOD
            assert "no matched route" in str(raised.value)
            assert c.whoami() == "v1"  # the connection survives the local reply
    assert routed.stat("strict", "route_not_found", "thrift") == 2


def test_one_mebibyte_message_round_trips(routed: AerakiProxy) -> None:
    payload = bytes(range(256)) * 4096
    with make_thrift_client("apache", "framed", "binary", LOOPBACK, routed.ports["by-method"]) as c:
        assert c.blob(payload) == payload


def test_two_hundred_concurrent_connections(routed: AerakiProxy) -> None:
    clients = 200
    everyone_connected = threading.Barrier(clients, timeout=30)
    port = routed.ports["by-method"]

    def session(n: int) -> list[str]:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port, timeout=30) as c:
            everyone_connected.wait()  # all 200 are open at once before anyone calls
            return [c.echo(f"client-{n}-{i}") for i in range(3)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(session, range(clients)))
    assert results == [[f"client-{n}-{i}" for i in range(3)] for n in range(clients)]


def test_multiplexed_listener_shares_upstream_connections(routed: AerakiProxy) -> None:
    """thriftpy2 sends seqid 0 on every call; the proxy rewrites ids on the shared upstream
    connection and restores them, so every client still gets its own answer."""
    port = routed.ports["mux"]

    def session(n: int) -> list[str]:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as c:
            return [c.echo(f"{n}:{i}") for i in range(20)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(session, range(20)))
    assert results == [[f"{n}:{i}" for i in range(20)] for n in range(20)]
    stats = routed.stats()
    assert stats["cluster.v1.upstream_cx_total"] <= stats["cluster.v1.upstream_rq_total"]


def test_admin_config_dump_shows_the_listeners(routed: AerakiProxy, tmp_path: Path) -> None:
    dump = routed.admin("/config_dump")
    for name in ("by-method", "weighted", "strict", "mux"):
        assert f'"{name}"' in dump


def test_sigterm_drains_requests_in_flight_then_exits(
    thrift_servers: ThriftServerCache, peers: ProcessGroup, tmp_path: Path
) -> None:
    server = thrift_servers.get("thriftpy2", "framed", "binary", "v1")
    config = bootstrap(
        [meta_listener("drain", new_port(), "thrift", [meta_route("v1")])],
        [static_cluster("v1", [server.port])],
        new_port(),
    )
    proxy = start_aeraki_proxy(peers, config, tmp_path)
    port = proxy.ports["drain"]
    with ThreadPoolExecutor(max_workers=1) as pool:

        def slow_call() -> str:
            with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as c:
                return c.slow(800)

        answer = pool.submit(slow_call)
        poll_until(
            lambda: proxy.stat("drain", "request_active", "thrift") == 1,
            timeout=10,
            what="the slow call to be in flight",
        )
        proxy.process.popen.send_signal(signal.SIGTERM)
        poll_until(lambda: not can_connect(LOOPBACK, port), timeout=10, what="listener closed")
        assert answer.result(timeout=10) == "v1"  # the request in flight was finished
    assert proxy.process.popen.wait(timeout=10) == 0
