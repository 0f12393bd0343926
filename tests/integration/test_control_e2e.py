"""Aeraki's e2e scenarios (reference §15.1) replayed standalone, with real Thrift and Dubbo peers.

Each test writes manifests into a watched directory, runs the control plane (real file source,
real translation, real xDS server) and our proxy as its ADS client in this process, and sends
real traffic through the proxy from threads: Thrift from thriftpy2, Dubbo as raw frames to the
Java providers. Every wait is bounded and waits for a fact — "the proxy ACKed the new
snapshot" through the xDS server's status — never for time to pass.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aeraki.control.cli import RUN_NODE_ID, local_proxy_bootstrap
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from aeraki.control.validation import load_config
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.server import ProxyServer
from tests.control.test_runtime import router_yaml, service_yaml
from tests.integration.peers.dubbo import (
    STATUS_OK,
    DubboFrame,
    DubboProvider,
    read_frame,
    request_frame,
    start_dubbo_provider,
)
from tests.integration.peers.procs import LOOPBACK, ProcessGroup, free_ports
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServer, ThriftServerCache

THRIFT = "thrift-sample-server.meta-thrift.svc.cluster.local"
DUBBO = "org.apache.dubbo.samples.basic.api.demoservice"
THRIFT_PORT_NAME = "tcp-metaprotocol-thrift-server"
DUBBO_PORT_NAME = "tcp-metaprotocol-dubbo"
WAIT = 15.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dubbo_pair(session_peers: ProcessGroup) -> tuple[DubboProvider, DubboProvider]:
    return start_dubbo_provider(session_peers, label="v1"), start_dubbo_provider(
        session_peers, label="v2"
    )


@pytest.fixture(scope="module")
def thrift_pair(thrift_servers: ThriftServerCache) -> tuple[ThriftServer, ThriftServer]:
    return (
        thrift_servers.get("thriftpy2", "framed", "binary", "v1"),
        thrift_servers.get("thriftpy2", "framed", "binary", "v2"),
    )


# --------------------------------------------------------------------------- the mesh


@dataclass
class Mesh:
    root: Path
    plane: ControlPlane
    proxy: ProxyServer
    thrift_port: int
    dubbo_port: int

    async def apply(self, name: str, text: str) -> None:
        """Write a manifest; return once the proxy ACKed a push that includes it."""
        await apply_manifest(self.plane, self.root / name, text)

    async def synced(self) -> None:
        await self.plane.wait_until(lambda: self.plane.in_sync(RUN_NODE_ID), WAIT)

    def thrift_labels(self, calls: int) -> Counter[str]:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, self.thrift_port) as c:
            return Counter(c.whoami() for _ in range(calls))

    def dubbo(self, frames: Sequence[bytes]) -> list[DubboFrame]:
        with socket.create_connection((LOOPBACK, self.dubbo_port), timeout=10) as sock:
            sock.sendall(b"".join(frames))
            return [read_frame(sock) for _ in frames]

    def dubbo_values(self, method: str, args: Sequence[str] = (), calls: int = 5) -> list[str]:
        frames = [request_frame(i + 1, method, list(args)) for i in range(calls)]
        return [string_value(f) for f in self.dubbo(frames)]


async def apply_manifest(plane: ControlPlane, path: Path, text: str) -> None:
    """Write manifest ``path``; return once every proxy of the e2e node ACKed a push of it.

    Three facts, each awaited: the store holds exactly these objects (the file source saw
    the write), a push ran on that store version, and the proxies ACKed the snapshot.
    """
    await asyncio.to_thread(path.write_text, text)
    docs = [d for d in yaml.safe_load_all(text) if d]
    store = plane.store

    def stored() -> bool:
        return all(
            store.get(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) == d
            for d in docs
        )

    await plane.wait_until(stored, WAIT)
    version = store.version
    await plane.wait_until(
        lambda: (push := plane.last_push) is not None and push.store_version >= version,
        WAIT,
    )
    await plane.wait_until(lambda: plane.in_sync(RUN_NODE_ID), WAIT)


def string_value(frame: DubboFrame) -> str:
    """The value of an OK RESPONSE_VALUE frame carrying a Hessian2 string under 1024 chars."""
    assert frame.status == STATUS_OK, frame
    body = frame.body
    assert body[0] == 0x91, frame  # RESPONSE_VALUE
    if body[1] < 0x20:
        return body[2 : 2 + body[1]].decode()
    assert 0x30 <= body[1] <= 0x33, frame
    return body[3 : 3 + ((body[1] - 0x30) << 8 | body[2])].decode()


def route(name: str, *dests: tuple[str, str, int | None], match: str = "", extra: str = "") -> str:
    """One ``spec.routes`` item: destinations (host, subset, weight or None)."""
    text = f"    - name: {name}\n"
    if match:
        text += f"      match: {{attributes: {match}}}\n"
    text += "      route:\n"
    for host, subset, weight in dests:
        text += f"        - destination: {{host: {host}, subset: {subset}}}\n"
        if weight is not None:
            text += f"          weight: {weight}\n"
    return text + extra


def thrift_router(*routes: str) -> str:
    return router_yaml("thrift", "meta-thrift", THRIFT, "".join(routes))


def dubbo_router(*routes: str) -> str:
    return router_yaml("dubbo", "meta-dubbo", DUBBO, "".join(routes))


def write_services(
    root: Path,
    thrift_pair: tuple[ThriftServer, ThriftServer],
    dubbo_pair: tuple[DubboProvider, DubboProvider],
    thrift_port: int,
    dubbo_port: int,
) -> None:
    """Both services' ServiceEntry + DestinationRule (subsets v1/v2) into a new ``root``."""
    root.mkdir()
    t1, t2 = thrift_pair
    d1, d2 = dubbo_pair
    (root / "thrift.yaml").write_text(
        service_yaml(
            "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, thrift_port, t1.port, t2.port
        )
    )
    (root / "dubbo.yaml").write_text(
        service_yaml("dubbo", "meta-dubbo", DUBBO, DUBBO_PORT_NAME, dubbo_port, d1.port, d2.port)
    )
    assert not load_config([root]).has_errors


@asynccontextmanager
async def running_mesh(
    root: Path,
    thrift_pair: tuple[ThriftServer, ThriftServer],
    dubbo_pair: tuple[DubboProvider, DubboProvider],
    *,
    delta: bool = False,
    options: Any = None,
) -> AsyncIterator[Mesh]:
    """The e2e mesh in ``root``: both services' manifests, a control plane watching them
    (with translation ``options``), our proxy as its ADS client (``delta`` ADS or SotW), ready
    and in sync; afterwards, every push must have been ACKed."""
    thrift_port, dubbo_port = free_ports(2)
    write_services(root, thrift_pair, dubbo_pair, thrift_port, dubbo_port)
    source = FileSource(root, interval=0.1)
    plane = ControlPlane(source, xds_port=0, quiet=0.05, max_delay=0.5, options=options)
    source.on_problem = plane.on_source_problem
    port = await plane.start()
    bootstrap = local_proxy_bootstrap(port, delta=delta)
    proxy = ProxyServer(bootstrap_from_dict(bootstrap), drain_timeout=1.0)
    await proxy.start()
    result = Mesh(root, plane, proxy, thrift_port, dubbo_port)
    try:
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
        await result.synced()
        yield result
    finally:
        await proxy.shutdown()
        await plane.stop()
    assert plane.metrics.snapshots_rejected_total == 0  # the proxy ACKed every push


@pytest.fixture
async def mesh(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    thrift_pair: tuple[ThriftServer, ThriftServer],
    dubbo_pair: tuple[DubboProvider, DubboProvider],
) -> AsyncIterator[Mesh]:
    delta = getattr(request, "param", "sotw") == "delta"  # the proxy's ADS flavour
    async with running_mesh(tmp_path / "mesh", thrift_pair, dubbo_pair, delta=delta) as result:
        yield result


# --------------------------------------------------------------------------- scenarios


async def test_default_route_reaches_both_versions(mesh: Mesh) -> None:
    assert set(await asyncio.to_thread(mesh.thrift_labels, 40)) == {"v1", "v2"}
    assert set(await asyncio.to_thread(mesh.dubbo_values, "whoami", (), 40)) == {"v1", "v2"}
    assert mesh.plane.problems() == []


async def test_version_routing_v1_then_v2(mesh: Mesh) -> None:
    await mesh.apply("thrift-route.yaml", thrift_router(route("v1", (THRIFT, "v1", None))))
    await mesh.apply("dubbo-route.yaml", dubbo_router(route("v1", (DUBBO, "v1", None))))
    assert await asyncio.to_thread(mesh.thrift_labels, 20) == {"v1": 20}
    hello = await asyncio.to_thread(mesh.dubbo_values, "sayHello", ["Aeraki"])
    assert hello == ["Hello Aeraki, response from v1"] * 5
    await mesh.apply("thrift-route.yaml", thrift_router(route("v2", (THRIFT, "v2", None))))
    await mesh.apply("dubbo-route.yaml", dubbo_router(route("v2", (DUBBO, "v2", None))))
    assert await asyncio.to_thread(mesh.thrift_labels, 20) == {"v2": 20}
    hello = await asyncio.to_thread(mesh.dubbo_values, "sayHello", ["Aeraki"])
    assert hello == ["Hello Aeraki, response from v2"] * 5


async def test_percentage_routing_20_80(mesh: Mesh) -> None:
    split = route("split", (THRIFT, "v1", 20), (THRIFT, "v2", 80))
    await mesh.apply("thrift-route.yaml", thrift_router(split))
    calls = 2000
    counts = await asyncio.to_thread(mesh.thrift_labels, calls)
    assert sum(counts.values()) == calls
    print(f"20/80 split over {calls} calls: {dict(counts)}")
    assert abs(counts["v1"] / calls - 0.20) <= 0.05, counts


@pytest.mark.parametrize(
    ("kind", "first", "second"),
    [
        ("exact", "sayHello01", "sayHello"),
        ("prefix", "sayHello01", "say"),
        ("regex", "sayHello01", '"^s.*o$"'),
    ],
)
async def test_attribute_routing(mesh: Mesh, kind: str, first: str, second: str) -> None:
    """Aeraki's metarouter-attribute-{exact,prefix,regex}: ``sayHello`` matches only v2's."""
    router = dubbo_router(
        route("v1", (DUBBO, "v1", None), match=f"{{method: {{{kind}: {first}}}}}"),
        route("v2", (DUBBO, "v2", None), match=f"{{method: {{{kind}: {second}}}}}"),
    )
    await mesh.apply("dubbo-route.yaml", router)
    hello = await asyncio.to_thread(mesh.dubbo_values, "sayHello", ["Aeraki"])
    assert hello == ["Hello Aeraki, response from v2"] * 5


async def test_request_mutation_seen_at_the_server(mesh: Mesh) -> None:
    mutation = "      requestMutation: [{key: foo, value: bar}, {key: foo1, value: bar1}]\n"
    await mesh.apply(
        "dubbo-route.yaml", dubbo_router(route("mutation", (DUBBO, "v1", None), extra=mutation))
    )
    assert await asyncio.to_thread(mesh.dubbo_values, "getAttachment", ["foo1"], 2) == ["bar1"] * 2
    assert await asyncio.to_thread(mesh.dubbo_values, "getAttachment", ["foo"], 2) == ["bar"] * 2


async def test_consistent_hash_same_key_same_host(mesh: Mesh) -> None:
    """Aeraki's consistent-hash-lb: one subset over both versions, hashed on ``method``."""
    sample = """\
    - name: sample
      labels: {app: dubbo}
      trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: method}}}
"""
    await mesh.apply("dubbo.yaml", (mesh.root / "dubbo.yaml").read_text() + sample)
    await mesh.apply("dubbo-route.yaml", dubbo_router(route("sample", (DUBBO, "sample", None))))
    for _ in range(3):  # new connections each time: the hash, not the connection, decides
        labels = await asyncio.to_thread(mesh.dubbo_values, "whoami", (), 10)
        assert len(set(labels)) == 1, labels
    hellos = await asyncio.to_thread(mesh.dubbo_values, "sayHello", ["k"], 10)
    assert len(set(hellos)) == 1, hellos


@pytest.mark.parametrize("mesh", ["sotw", "delta"], indirect=True)
async def test_route_change_on_a_held_open_connection(mesh: Mesh) -> None:
    """A Thrift and a Dubbo client keep calling on one connection each while the MetaRouters
    move from v1 to v2: no call fails and the answers switch mid-connection."""
    await mesh.apply("thrift-route.yaml", thrift_router(route("v1", (THRIFT, "v1", None))))
    await mesh.apply("dubbo-route.yaml", dubbo_router(route("v1", (DUBBO, "v1", None))))
    stop = threading.Event()
    seen: dict[str, list[str]] = {"thrift": [], "dubbo": []}

    def thrift_loop() -> None:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.thrift_port) as c:
            for _ in range(100_000):  # bounded; stopped by the event
                seen["thrift"].append(c.whoami())
                if stop.is_set():
                    return

    def dubbo_loop() -> None:
        with socket.create_connection((LOOPBACK, mesh.dubbo_port), timeout=10) as sock:
            for rid in range(1, 100_000):
                sock.sendall(request_frame(rid, "whoami"))
                seen["dubbo"].append(string_value(read_frame(sock)))
                if stop.is_set():
                    return

    loops = [asyncio.create_task(asyncio.to_thread(f)) for f in (thrift_loop, dubbo_loop)]
    try:
        await mesh.plane.wait_until(lambda: all(len(v) >= 20 for v in seen.values()), WAIT)
        await mesh.apply("thrift-route.yaml", thrift_router(route("v2", (THRIFT, "v2", None))))
        await mesh.apply("dubbo-route.yaml", dubbo_router(route("v2", (DUBBO, "v2", None))))
        counts = {k: len(v) for k, v in seen.items()}
        await mesh.plane.wait_until(lambda: all(len(seen[k]) >= counts[k] + 20 for k in seen), WAIT)
    finally:
        stop.set()
        results = await asyncio.gather(*loops, return_exceptions=True)
    assert [r for r in results if r is not None] == []  # zero failed calls
    assert mesh.proxy.config.ads is not None
    kind = "delta" if mesh.proxy.config.ads.delta else "sotw"
    assert [p.kind.value for p in mesh.plane.server.proxies()] == [kind]
    for name, labels in seen.items():
        switch = labels.index("v2")
        assert set(labels[:switch]) == {"v1"}, name
        assert set(labels[switch:]) == {"v2"}, name  # never back once switched


async def test_bad_edit_keeps_traffic_on_the_last_good_route(mesh: Mesh) -> None:
    await mesh.apply("thrift-route.yaml", thrift_router(route("v1", (THRIFT, "v1", None))))
    pushes = mesh.plane.metrics.pushes_total
    (mesh.root / "thrift-route.yaml").write_text(thrift_router(route("v3", (THRIFT, "v3", None))))
    await mesh.plane.wait_until(lambda: mesh.plane.metrics.pushes_total > pushes, WAIT)
    assert any('subset "v3"' in p for p in mesh.plane.problems())
    assert await asyncio.to_thread(mesh.thrift_labels, 10) == {"v1": 10}


def test_examples_mesh_is_valid() -> None:
    config = load_config([REPO / "examples" / "mesh"])
    assert config.problems == ()
    assert {se.spec.hosts[0] for se in config.service_entries} == {THRIFT, DUBBO}
    assert len(config.meta_routers) == 2
    ports = {p.name for se in config.service_entries for p in se.spec.ports}
    assert ports == {THRIFT_PORT_NAME, DUBBO_PORT_NAME}
