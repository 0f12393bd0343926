"""Our xDS server driving a real Envoy over ADS, state of the world (GRPC) and delta (DELTA_GRPC).

Envoy is bootstrapped with nothing but ``dynamic_resources.ads_config`` pointing at our server;
everything else (an EDS cluster, its endpoints, a tcp_proxy listener and an HTTP listener whose
routes come over RDS) arrives from the snapshot. Checked from both sides: our per-node status
(ACKed versions, NACK reasons) and Envoy's own stats and admin endpoints.

The control plane runs on the test's event loop, so every blocking call (starting Envoy, whose
``/ready`` waits for our first responses; admin HTTP) goes through ``asyncio.to_thread``.
Every wait is a poll bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from aeraki.control.xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Snapshot,
    SnapshotCache,
    XdsServer,
)
from aeraki.xds import pack
from tests.control.xds.resources import (
    ads_source,
    eds_cluster,
    load_assignment,
    socket_address,
    tcp_listener,
)
from tests.integration.peers.envoy import Envoy, ads_bootstrap, start_envoy
from tests.integration.peers.procs import ProcessGroup, can_connect, free_ports

NODE = "envoy-it"
#: Envoy's first xDS exchange, listener warm-up and drain all finish within a second or two
#: here; 20 s leaves room for a loaded CI machine without hiding a hang.
DEADLINE = 20.0
POLL = 0.05


def http_listener(name: str, port: int, route_name: str) -> Message:
    """An HTTP listener whose route table comes over RDS (exercises the RDS leg of ADS)."""
    router = hcm_pb2.HttpFilter(
        name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())
    )
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_name),
        http_filters=[router],
    )
    chain = listener_components_pb2.FilterChain(
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm)
            )
        ]
    )
    listener: Message = listener_pb2.Listener(
        name=name, address=socket_address(port), filter_chains=[chain]
    )
    return listener


def direct_routes(name: str, body: str) -> Message:
    """A route table answering every request with ``body`` (no upstream needed)."""
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        direct_response=route_components_pb2.DirectResponseAction(
            status=200, body=base_pb2.DataSource(inline_string=body)
        ),
    )
    vhost = route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[route])
    routes: Message = route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])
    return routes


def bad_listener(name: str) -> Message:
    """A listener Envoy must reject: its address is not an IP."""
    listener: Message = tcp_listener(name, 1, "c1", host="not-an-ip")
    return listener


class Ports:
    def __init__(self) -> None:
        self.xds, self.tcp, self.http, self.echo = free_ports(4)


def snapshot(ports: Ports, *extra: Message, body: str = "v1", tcp: bool = True) -> Snapshot:
    msgs: list[Message] = [
        eds_cluster("c1"),
        load_assignment("c1", ports.echo),
        http_listener("http", ports.http, "r1"),
        direct_routes("r1", body),
        *extra,
    ]
    if tcp:
        msgs.append(tcp_listener("tcp", ports.tcp, "c1"))
    return Snapshot.from_messages(*msgs)


async def eventually(check: Callable[[], bool], what: str, *, blocking: bool = False) -> None:
    """Poll ``check`` until true, bounded by :data:`DEADLINE` (``blocking`` → in a thread)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        ok = await asyncio.to_thread(check) if blocking else check()
        if ok:
            return
        assert time.monotonic() < deadline, f"timed out after {DEADLINE}s waiting for {what}"
        await asyncio.sleep(POLL)  # poll interval, bounded by the deadline above


async def echo_server(port: int) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", port)


async def echo_through(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


def http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


def stat(envoy: Envoy, name: str) -> int:
    return envoy.stats(f"^{name}$").get(name, -1)


@pytest.fixture(params=["GRPC", "DELTA_GRPC"])
def api_type(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def ports() -> Ports:
    return Ports()


@pytest.fixture
async def echo(ports: Ports) -> AsyncIterator[asyncio.Server]:
    server = await echo_server(ports.echo)
    yield server
    server.close()
    await server.wait_closed()


@pytest.fixture
def launch_envoy(
    peers: ProcessGroup, tmp_path: Path, ports: Ports, api_type: str
) -> Callable[[], Awaitable[Envoy]]:
    """Start Envoy in a thread: its /ready needs our server (on this loop) to answer."""
    text = ads_bootstrap(node_id=NODE, node_cluster="it", api_type=api_type, xds_port=ports.xds)

    async def launch() -> Envoy:
        return await asyncio.to_thread(
            start_envoy,
            peers,
            text,
            work_dir=tmp_path / "envoy",
            extra_args=("--drain-time-s", "1"),
        )

    return launch


def acked(server: XdsServer, snap: Snapshot) -> bool:
    """Envoy ACKed every type of ``snap`` (per our server's view)."""
    proxies = [p for p in server.proxies() if p.node_id == NODE]
    types = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
    return len(proxies) == 1 and all(proxies[0].acked_version(t) == snap.version(t) for t in types)


async def test_envoy_acks_routes_traffic_nacks_bad_input_and_drops_removed_listener(
    ports: Ports,
    echo: asyncio.Server,
    launch_envoy: Callable[[], Awaitable[Envoy]],
    api_type: str,
) -> None:
    cache = SnapshotCache()
    server = XdsServer(cache)
    await server.start("127.0.0.1", ports.xds)
    try:
        good = snapshot(ports)
        cache.set_snapshot(NODE, good)
        envoy = await launch_envoy()

        # 1. Envoy ACKs everything, traffic flows over the tcp_proxy and the RDS-fed routes.
        await eventually(lambda: acked(server, good), "Envoy to ACK every type")
        [proxy] = server.proxies()
        assert proxy.kind.value == ("delta" if api_type == "DELTA_GRPC" else "sotw")
        assert await asyncio.to_thread(stat, envoy, "control_plane.connected_state") == 1
        assert await echo_through(ports.tcp, b"hello over xds") == b"hello over xds"
        assert await asyncio.to_thread(http_get, ports.http) == "v1"
        dump = await asyncio.to_thread(envoy.admin_get, "/config_dump?resource=dynamic_listeners")
        # Envoy shows the type version (SotW) or the resource's own version (delta).
        expected = good.resources(LISTENER_TYPE)["tcp"].version
        if api_type == "GRPC":
            expected = good.version(LISTENER_TYPE)
        assert f'"version_info": "{expected}"' in dump

        # 2. A bad listener: Envoy NACKs, we record why, the good config keeps serving.
        bad = snapshot(ports, bad_listener("broken"))
        cache.set_snapshot(NODE, bad)
        await eventually(
            lambda: server.proxies()[0].types[LISTENER_TYPE].nacks >= 1, "Envoy to NACK LDS"
        )
        status = server.proxies()[0].types[LISTENER_TYPE]
        assert "broken" in status.last_nack_reason or "not-an-ip" in status.last_nack_reason
        assert status.last_nack_version == bad.version(LISTENER_TYPE)
        assert status.acked_version == good.version(LISTENER_TYPE)
        assert await asyncio.to_thread(stat, envoy, "listener_manager.lds.update_rejected") >= 1
        assert await echo_through(ports.tcp, b"still up") == b"still up"

        # 3. A route change over RDS reaches Envoy (and the bad listener is dropped again).
        changed = snapshot(ports, body="v2")
        cache.set_snapshot(NODE, changed)
        await eventually(lambda: acked(server, changed), "Envoy to ACK the fixed snapshot")
        await eventually(lambda: http_get(ports.http) == "v2", "the new route", blocking=True)

        # 4. Removing the tcp listener closes its port.
        removed = snapshot(ports, body="v2", tcp=False)
        cache.set_snapshot(NODE, removed)
        await eventually(lambda: acked(server, removed), "Envoy to ACK the removal")
        await eventually(
            lambda: not can_connect("127.0.0.1", ports.tcp), "the port to close", blocking=True
        )
        assert await asyncio.to_thread(http_get, ports.http) == "v2"
    finally:
        await server.stop(None)


async def test_envoy_reconnects_after_a_control_plane_restart(
    ports: Ports,
    echo: asyncio.Server,
    launch_envoy: Callable[[], Awaitable[Envoy]],
) -> None:
    good = snapshot(ports)
    cache = SnapshotCache()
    server = XdsServer(cache)
    await server.start("127.0.0.1", ports.xds)
    cache.set_snapshot(NODE, good)
    envoy = await launch_envoy()
    try:
        await eventually(lambda: acked(server, good), "Envoy to ACK every type")
    finally:
        await server.stop(None)

    def connected_state() -> int:
        return stat(envoy, "control_plane.connected_state")

    await eventually(lambda: connected_state() == 0, "Envoy to see the loss", blocking=True)
    assert await echo_through(ports.tcp, b"no control plane") == b"no control plane"

    cache = SnapshotCache()
    server = XdsServer(cache)
    await server.start("127.0.0.1", ports.xds)
    try:
        cache.set_snapshot(NODE, good)
        await eventually(lambda: acked(server, good), "Envoy to reconnect and ACK")
        await eventually(lambda: connected_state() == 1, "connected_state 1", blocking=True)
        assert await echo_through(ports.tcp, b"back again") == b"back again"
        assert await asyncio.to_thread(http_get, ports.http) == "v1"
    finally:
        await server.stop(None)
