"""Real Envoy as a data plane (issue 3, item 7): native ``dubbo_proxy`` / ``thrift_proxy``.

Aeraki's ``tcp-dubbo`` / ``tcp-thrift`` ports (reference §8–§9, §3.3) replayed with the
manifests of §15.3 / §15.4 (tests/integration/data/native/, ports filled in per test): Istio
ServiceEntry + DestinationRule + VirtualService → :func:`aeraki.control.validation.load_config`
→ :func:`aeraki.control.translate.translate` for a node with ``AERAKI_DATA_PLANE: envoy`` →
:class:`Snapshot` → :class:`SnapshotCache` → our :class:`XdsServer` on 127.0.0.1:0, and stock
Envoy 1.40 bootstrapped with nothing but ``ads_config`` (state of the world and delta) pointing
at it. Real Thrift Echo servers and real Java Dubbo providers (labelled v1 / v2) sit behind
Envoy's listener.

Checked from both sides: our server's per-node status (every type ACKed at the snapshot's
version, no NACK) and Envoy's own admin (``/config_dump`` shows the native filter with the
routes we sent, no ``update_rejected``). Then real calls: v1, a switch to v2 while a client
keeps calling on a held-open connection, a 20/80 split over 2,000 Thrift calls, method routes,
the Dubbo route configuration chosen by interface, Dubbo through the Node and Python consumers.

Envoy's routes for these filters are inline in the listener, so a route change is a listener
update: new connections get the new filter chain, a held-open connection keeps the one it was
accepted by (old route, no call fails) until the drain (``--drain-time-s``) ends and Envoy
closes it; the client's next call on it fails and a reconnect gets the new route. The test
asserts exactly that. Switching routes under a live connection would take ThriftProxy ``trds``
/ DubboProxy ``drds`` (routes over xDS), which the translation does not emit.

Envoy finds thrift filters by the type of their ``typed_config`` only: the translation sets
the router's (without it Envoy 1.40 NACKed the listener, as this test first showed).

The control plane runs on the test's event loop, so everything blocking (starting Envoy, whose
``/ready`` needs our first responses; admin HTTP; client calls) runs in threads. Every wait is a
poll bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import string
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from aeraki.control.translate import NodeInfo, TranslateOptions, translate
from aeraki.control.validation import load_config
from aeraki.control.xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ProxyStatus,
    Snapshot,
    SnapshotCache,
    StreamKind,
    XdsServer,
)
from tests.integration.peers.dubbo import (
    CONSUMERS,
    STATUS_OK,
    DubboCall,
    DubboFrame,
    DubboProvider,
    dubbo_calls,
    read_frame,
    request_frame,
    start_dubbo_provider,
)
from tests.integration.peers.envoy import Envoy, ads_bootstrap, envoy_binary, start_envoy
from tests.integration.peers.procs import LOOPBACK, ProcessGroup, free_ports
from tests.integration.peers.thrift_client import EchoClient, make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServer, start_thrift_server

DATA = Path(__file__).parent / "data" / "native"
NODE_ID = "envoy-native"
NODE_CLUSTER = "native"
NODE = NodeInfo(id=NODE_ID, cluster=NODE_CLUSTER, metadata={"AERAKI_DATA_PLANE": "envoy"})
THRIFT_HOST = "thrift-sample-server.thrift.svc.cluster.local"
DUBBO_HOST = "org.apache.dubbo.samples.basic.api.demoservice"
DUBBO_INTERFACE = "org.apache.dubbo.samples.basic.api.DemoService"
THRIFT_FILTER_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy"
)
DUBBO_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy"
THRIFT_ROUTER = "envoy.filters.thrift.router"
#: Types our translation sends an Envoy node for native ports (routes are inline: no RDS).
TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE)
#: Envoy's first exchange and a listener update finish in well under a second here; 15 s
#: leaves room for a loaded machine without hiding a hang.
DEADLINE = 15.0
POLL = 0.05
#: Envoy's drain of a replaced listener (seconds): the held-open connection makes its calls
#: across the switch well within it, and Envoy closes it when it ends.
DRAIN_TIME_S = 3
DUMP = "/config_dump?resource=dynamic_listeners"
SPLIT_CALLS = 2000
SPLIT_TOLERANCE = 0.05


#: What Envoy 1.40 answers to the thrift_proxy listener as translated (port varies). Envoy
#: finds thrift filters by the type URL of ``typed_config`` only (no lookup by name), and
class EnvoyNackError(AssertionError):
    """Envoy NACKed a resource we sent it (the message carries Envoy's reasons)."""


# --------------------------------------------------------------------------- helpers


async def eventually(check: Callable[[], bool], what: str, *, blocking: bool = False) -> None:
    """Poll ``check`` until true, bounded by :data:`DEADLINE` (``blocking`` → in a thread)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        ok = await asyncio.to_thread(check) if blocking else check()
        if ok:
            return
        assert time.monotonic() < deadline, f"timed out after {DEADLINE}s waiting for {what}"
        await asyncio.sleep(POLL)  # poll interval, bounded by the deadline above


def render(names: tuple[str, ...], values: dict[str, int], dest: Path) -> list[Path]:
    """Copy fixture manifests into ``dest`` with their ``$NAME`` placeholders filled in."""
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for name in names:
        text = string.Template((DATA / name).read_text()).substitute(values)
        path = dest / name
        path.write_text(text)
        out.append(path)
    return out


def string_value(frame: DubboFrame) -> str:
    """The value of an OK RESPONSE_VALUE frame carrying a short Hessian2 string."""
    assert frame.status == STATUS_OK, frame
    body = frame.body
    assert body[0] == 0x91, frame  # RESPONSE_VALUE
    if body[1] < 0x20:
        return body[2 : 2 + body[1]].decode()
    assert 0x30 <= body[1] <= 0x33, frame
    return body[3 : 3 + ((body[1] - 0x30) << 8 | body[2])].decode()


def listener_config(dump: str, name: str) -> dict[str, Any] | None:
    """The typed config of the only network filter of dynamic listener ``name`` once it is
    active (``None`` while it is absent or warming)."""
    for config in json.loads(dump)["configs"]:
        if config.get("name") == name and "active_state" in config:
            [chain] = config["active_state"]["listener"]["filter_chains"]
            [flt] = chain["filters"]
            typed: dict[str, Any] = flt["typed_config"]
            return typed
    return None


# --------------------------------------------------------------------------- the plane


def build(paths: list[Path]) -> Snapshot:
    """Manifests → validated config → translation for the Envoy node → snapshot."""
    config = load_config(paths)
    assert not config.problems, [p.format() for p in config.problems]
    translation = translate(config, NODE, TranslateOptions())
    assert not translation.problems, [p.format() for p in translation.problems]
    return Snapshot.from_messages(*translation.resources)


@dataclass
class Plane:
    """Our xDS server holding one Envoy node's snapshot, and the Envoy it drives."""

    protocol: str  # "thrift" | "dubbo": picks the manifests
    api_type: str
    root: Path
    values: dict[str, int]
    cache: SnapshotCache = field(default_factory=SnapshotCache)
    server: XdsServer = field(init=False)
    envoy: Envoy | None = None

    def __post_init__(self) -> None:
        self.server = XdsServer(self.cache)

    @property
    def listen_port(self) -> int:
        return self.values["LISTEN_PORT"]

    @property
    def listener_name(self) -> str:
        return f"{LOOPBACK}_{self.listen_port}"

    def bootstrap(self) -> str:
        return ads_bootstrap(
            node_id=NODE_ID,
            node_cluster=NODE_CLUSTER,
            api_type=self.api_type,
            xds_port=self.values["XDS"],
            metadata={"AERAKI_DATA_PLANE": "envoy"},
        )

    def proxy(self) -> ProxyStatus | None:
        proxies = [p for p in self.server.proxies() if p.node_id == NODE_ID]
        assert len(proxies) <= 1, proxies
        return proxies[0] if proxies else None

    def stream_kind(self) -> StreamKind:
        """The kind of Envoy's ADS stream, and it must be the one the bootstrap asked for."""
        proxy = self.proxy()
        assert proxy is not None
        assert proxy.kind is (
            StreamKind.DELTA if self.api_type == "DELTA_GRPC" else StreamKind.SOTW
        )
        return proxy.kind

    def nacks(self) -> dict[str, str]:
        """``{type_url: last NACK reason}`` for every type Envoy NACKed on its stream."""
        proxy = self.proxy()
        types = proxy.types.values() if proxy else ()
        return {s.type_url: s.last_nack_reason for s in types if s.nacks}

    def set_routes(self, vs: str) -> Snapshot:
        """Service manifests + VirtualService file ``vs`` → translated → into the cache."""
        names = (f"{self.protocol}-service.yaml", f"{self.protocol}-{vs}")
        snap = build(render(names, self.values, self.root / vs))
        assert set(snap.type_urls()) == set(TYPES), snap.type_urls()
        self.cache.set_snapshot(NODE_ID, snap)
        return snap

    async def apply(self, vs: str) -> Snapshot:
        """Switch to VirtualService ``vs``; return once Envoy ACKed every type of it."""
        snap = self.set_routes(vs)
        await self.wait_acked(snap)
        return snap

    async def wait_acked(self, snap: Snapshot) -> None:
        """Every type ACKed at ``snap``'s version, never NACKed (fails fast on a NACK)."""

        def done() -> bool:
            if self.nacks():
                raise EnvoyNackError(f"Envoy NACKed: {self.nacks()}")
            proxy = self.proxy()
            return proxy is not None and all(
                proxy.acked_version(t) == snap.version(t) for t in TYPES
            )

        await eventually(done, "Envoy to ACK every type")
        proxy = self.proxy()
        assert proxy is not None
        assert set(proxy.types) == set(TYPES), proxy.types  # nothing else asked for

    async def start_envoy(self, peers: ProcessGroup, work_dir: Path) -> None:
        self.envoy = await asyncio.to_thread(
            start_envoy,
            peers,
            self.bootstrap(),
            work_dir=work_dir,
            extra_args=("--drain-time-s", str(DRAIN_TIME_S), "--drain-strategy", "immediate"),
        )

    def admin(self, path: str) -> str:
        assert self.envoy is not None
        return self.envoy.admin_get(path)

    async def native_config(self) -> dict[str, Any]:
        """The dubbo_proxy / thrift_proxy config of our listener as Envoy runs it (waits for
        the listener to leave warming: its clusters' endpoints arrive after the ACK)."""
        found: list[dict[str, Any]] = []

        def active() -> bool:
            config = listener_config(self.admin(DUMP), self.listener_name)
            found[:] = [config] if config else []
            return bool(found)

        await eventually(active, f"listener {self.listener_name} active in Envoy", blocking=True)
        return found[0]

    def rejected(self) -> dict[str, int]:
        """Envoy's ``*.update_rejected`` counters (LDS, CDS, EDS)."""
        assert self.envoy is not None
        return self.envoy.stats(r"\.update_rejected$")


class PlaneFactory(Protocol):
    def __call__(self, protocol: str, v1: int, v2: int) -> Awaitable[Plane]: ...


@pytest.fixture(params=["GRPC", "DELTA_GRPC"], ids=["sotw", "delta"])
def api_type(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def make_plane(
    api_type: str, peers: ProcessGroup, tmp_path: Path
) -> AsyncIterator[PlaneFactory]:
    """``await make_plane(protocol, v1_port, v2_port)``: our xDS server holding the all-to-v1
    snapshot and Envoy started against it (the ACK is the test's to wait for). Teardown stops
    Envoy (by PID), then the server."""
    if envoy_binary() is None:
        pytest.fail("Envoy binary not installed; run `make setup`")
    planes: list[Plane] = []

    async def make(protocol: str, v1: int, v2: int) -> Plane:
        [listen] = free_ports(1)  # Envoy binds it; the ServiceEntry port names it
        values = {"LISTEN_PORT": listen, "V1_PORT": v1, "V2_PORT": v2}
        plane = Plane(protocol, api_type, tmp_path / "manifests", values)
        values["XDS"] = await plane.server.start(LOOPBACK, 0)
        planes.append(plane)
        plane.set_routes("vs-v1.yaml")
        await plane.start_envoy(peers, tmp_path / "envoy")
        return plane

    try:
        yield make
    finally:
        for plane in planes:
            if plane.envoy is not None:
                await asyncio.to_thread(peers.stop, plane.envoy.process)
            await plane.server.stop(None)


# --------------------------------------------------------------------------- peers


@pytest.fixture(scope="module")
def module_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """The backends of this module, stopped (by PID) when the module is done."""
    with ProcessGroup(tmp_path_factory.mktemp("native-peer-logs")) as group:
        yield group


@pytest.fixture(scope="module")
def thrift_pair(module_peers: ProcessGroup) -> tuple[ThriftServer, ThriftServer]:
    """Echo servers (thriftpy2, framed, binary) whose ``whoami`` answers v1 / v2."""
    return (
        start_thrift_server(module_peers, "thriftpy2", "framed", "binary", label="v1"),
        start_thrift_server(module_peers, "thriftpy2", "framed", "binary", label="v2"),
    )


@pytest.fixture(scope="module")
def dubbo_pair(module_peers: ProcessGroup) -> tuple[DubboProvider, DubboProvider]:
    """Java Dubbo providers labelled v1 / v2."""
    return (
        start_dubbo_provider(module_peers, label="v1"),
        start_dubbo_provider(module_peers, label="v2"),
    )


# --------------------------------------------------------------------------- clients


Call = Callable[[], str]


class HeldOpen:
    """A client calling back to back on one connection (in a thread) across a route switch.

    ``connect()`` opens the connection and yields a function making one call. Every answer
    lands in ``seen``, a failed call in ``errors``. Once :meth:`switched` has marked the ACK of
    the route change, the first failure is instead Envoy closing the drained connection,
    ``closed_after`` seconds after that ACK (:meth:`wait_closed` slows the client to one call
    per :data:`POLL` and waits for it).
    """

    def __init__(self, name: str, connect: Callable[[], AbstractContextManager[Call]]) -> None:
        self.name = name
        self.seen: list[str] = []
        self.errors: list[str] = []
        self.closed_after: float | None = None
        self.closed_by: str = ""
        self._connect = connect
        self._switched_at: float | None = None
        self._done = threading.Event()
        self._slow = threading.Event()
        self._task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> HeldOpen:
        self._task = asyncio.ensure_future(asyncio.to_thread(self._run))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, DEADLINE)

    def switched(self) -> None:
        """The new routes are ACKed: from now on, poll until Envoy closes the connection."""
        self._switched_at = time.monotonic()

    def _run(self) -> None:
        with self._connect() as call:
            for _ in range(1_000_000):  # bounded; ends with the block or on a failed call
                if self._done.is_set():
                    return
                try:
                    answer = call()
                except Exception as exc:  # noqa: BLE001 - a failed call: asserted on by the test
                    why = f"{type(exc).__name__}: {exc}"
                    if self._switched_at is None or self.closed_after is not None:
                        self.errors.append(f"after {len(self.seen)} calls: {why}")
                    else:
                        self.closed_after = time.monotonic() - self._switched_at
                        self.closed_by = why
                    return
                self.seen.append(answer)
                if self._slow.is_set():
                    time.sleep(POLL)  # poll for the drain's close, bounded by the block

    async def calls_at_least(self, n: int) -> None:
        def done() -> bool:
            return len(self.seen) >= n or bool(self.errors) or self.closed_after is not None

        await eventually(done, f"{n} {self.name} calls on the held-open connection")
        assert self.errors == []
        assert self.closed_after is None, f"closed {self.closed_after:.2f}s after the switch"

    async def wait_closed(self) -> None:
        """Slow down to one call per :data:`POLL` and wait for Envoy to close the connection."""
        self._slow.set()
        deadline = DRAIN_TIME_S + DEADLINE

        def closed() -> bool:
            return self.closed_after is not None or bool(self.errors)

        start = time.monotonic()
        while not closed():
            assert time.monotonic() - start < deadline, "Envoy never closed the drained connection"
            await asyncio.sleep(POLL)  # poll interval, bounded by the deadline above
        assert self.errors == []


@contextlib.contextmanager
def thrift_connection(port: int) -> Iterator[Call]:
    with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
        yield client.whoami


@contextlib.contextmanager
def dubbo_connection(port: int) -> Iterator[Call]:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        ids = itertools.count(1)

        def call() -> str:
            sock.sendall(request_frame(next(ids), "whoami"))
            return string_value(read_frame(sock))

        yield call


async def switch_on_held_open(plane: Plane, held: HeldOpen, vs: str, new: Call) -> None:
    """Switch to ``vs`` (all to v2) while ``held`` keeps calling on its connection.

    Envoy ACKs, a new connection reaches v2, the held-open connection makes 20 more calls
    without a failure — on its old route: inline routes are part of the listener, and Envoy
    keeps a connection on the filter chain it was accepted by — and then Envoy closes it at
    the end of the drain (``--drain-time-s``); a client reconnects and gets the new route.
    """
    await held.calls_at_least(20)
    await plane.apply(vs)
    held.switched()
    await eventually(lambda: new() == "v2", "a new connection to reach v2", blocking=True)
    await held.calls_at_least(len(held.seen) + 20)
    await held.wait_closed()
    assert held.errors == []
    assert set(held.seen) == {"v1"}, Counter(held.seen)
    assert held.closed_after is not None
    assert DRAIN_TIME_S / 2 <= held.closed_after <= DRAIN_TIME_S + 2, held.closed_after


def thrift_labels(port: int, calls: int, call: Callable[[EchoClient], str]) -> Counter[str]:
    """``calls`` calls on one new connection through Envoy, counted by answer."""
    with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
        return Counter(call(client) for _ in range(calls))


def whoami(client: EchoClient) -> str:
    return client.whoami()


def slow0(client: EchoClient) -> str:
    """``slow(0)``: the server's label, through a method other than ``whoami``."""
    return client.slow(0)


def dubbo_values(port: int, method: str, calls: int) -> list[str]:
    """``calls`` raw Dubbo requests pipelined on one new connection through Envoy."""
    frames = [request_frame(i + 1, method) for i in range(calls)]
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(b"".join(frames))
        return [string_value(read_frame(sock)) for _ in frames]


def consumer_values(consumer: str, port: int, calls: list[DubboCall]) -> list[str]:
    """Values of ``calls`` made by a real consumer (Node or dubbo-ssl-python) through Envoy."""
    results = dubbo_calls(consumer, LOOPBACK, port, calls, interface=DUBBO_INTERFACE)
    assert all(r.ok for r in results), results
    return [str(r.value) for r in results]


# --------------------------------------------------------------------------- Thrift


async def test_thrift_through_envoy(
    make_plane: PlaneFactory, thrift_pair: tuple[ThriftServer, ThriftServer]
) -> None:
    """§15.4 through real Envoy: v1, v2 on a held-open connection, 20/80, a method route."""
    v1_port, v2_port = thrift_pair[0].port, thrift_pair[1].port
    plane = await make_plane("thrift", v1_port, v2_port)
    await plane.apply("vs-v1.yaml")  # what Envoy started with: wait for its ACK
    plane.stream_kind()
    port = plane.listen_port
    v1, v2 = (f"outbound|{port}|{s}|{THRIFT_HOST}" for s in ("v1", "v2"))

    # 1. ACKed, and live in Envoy: the thrift_proxy listener with our route.
    config = await plane.native_config()
    assert config["@type"] == THRIFT_FILTER_TYPE
    assert config["stat_prefix"] == f"outbound|{port}||{THRIFT_HOST}"
    assert config["route_config"]["routes"] == [
        {"match": {"method_name": ""}, "route": {"cluster": v1}}
    ]

    # 2. Every call reaches v1.
    assert await asyncio.to_thread(thrift_labels, port, 20, whoami) == {"v1": 20}

    # 3. Switch to v2 while a client keeps calling on one connection.
    async with HeldOpen("thrift", lambda: thrift_connection(port)) as held:
        await switch_on_held_open(
            plane, held, "vs-v2.yaml", lambda: next(iter(thrift_labels(port, 1, whoami)))
        )
    assert await asyncio.to_thread(thrift_labels, port, 20, whoami) == {"v2": 20}

    # 4. 20/80 split over 2,000 calls.
    await plane.apply("vs-traffic-splitting.yaml")
    config = await plane.native_config()
    [split] = config["route_config"]["routes"]
    assert split["route"]["weighted_clusters"]["clusters"] == [
        {"name": v1, "weight": 20},
        {"name": v2, "weight": 80},
    ]
    counts = await asyncio.to_thread(thrift_labels, port, SPLIT_CALLS, whoami)
    assert counts.total() == SPLIT_CALLS, counts
    assert abs(counts["v1"] / SPLIT_CALLS - 0.20) <= SPLIT_TOLERANCE, counts

    # 5. A method route: whoami to v2, every other method to v1.
    await plane.apply("vs-method.yaml")
    assert await asyncio.to_thread(thrift_labels, port, 10, whoami) == {"v2": 10}
    assert await asyncio.to_thread(thrift_labels, port, 10, slow0) == {"v1": 10}
    assert plane.nacks() == {}
    assert set((await asyncio.to_thread(plane.rejected)).values()) == {0}


async def test_dubbo_through_envoy(
    make_plane: PlaneFactory, dubbo_pair: tuple[DubboProvider, DubboProvider]
) -> None:
    """§15.3 through real Envoy: consumers reach v1, interface routing, v2, a method route."""
    plane = await make_plane("dubbo", dubbo_pair[0].port, dubbo_pair[1].port)
    await plane.apply("vs-v1.yaml")  # what Envoy started with: wait for its ACK
    plane.stream_kind()
    port = plane.listen_port
    v1 = f"outbound|{port}|v1|{DUBBO_HOST}"

    # 1. ACKed, and live in Envoy: the dubbo_proxy listener with our route.
    config = await plane.native_config()
    assert config["@type"] == DUBBO_FILTER_TYPE
    assert config["stat_prefix"] == f"outbound|{port}||{DUBBO_HOST}"
    [route_config] = config["route_config"]
    assert route_config["interface"] == DUBBO_INTERFACE
    assert [r["route"] for r in route_config["routes"]] == [{"cluster": v1}]

    # 2. Real consumers (Node, dubbo-ssl-python) through Envoy reach v1.
    calls = [DubboCall("sayHello", ["Aeraki"]), DubboCall("whoami")]
    for consumer in CONSUMERS:
        values = await asyncio.to_thread(consumer_values, consumer, port, calls)
        assert values == ["Hello Aeraki, response from v1", "v1"], consumer
    assert await asyncio.to_thread(dubbo_values, port, "whoami", 10) == ["v1"] * 10

    # 3. dubbo_proxy picks the route configuration by interface: another one has no route.
    [other] = await asyncio.to_thread(
        dubbo_calls, "node", LOOPBACK, port, [DubboCall("whoami")], interface="org.example.Other"
    )
    assert not other.ok, other
    assert "no route for interface 'org.example.Other'" in other.error, other

    # 4. Switch to v2 while a client keeps calling on one connection.
    async with HeldOpen("dubbo", lambda: dubbo_connection(port)) as held:
        await switch_on_held_open(
            plane, held, "vs-v2.yaml", lambda: dubbo_values(port, "whoami", 1)[0]
        )
    for consumer in CONSUMERS:
        values = await asyncio.to_thread(consumer_values, consumer, port, calls)
        assert values == ["Hello Aeraki, response from v2", "v2"], consumer

    # 5. A method route (§15.3 method-exact): sayHello to v2, every other method to v1.
    await plane.apply("vs-method.yaml")
    for consumer in CONSUMERS:
        values = await asyncio.to_thread(consumer_values, consumer, port, calls)
        assert values == ["Hello Aeraki, response from v2", "v1"], consumer
    assert plane.nacks() == {}
    assert set((await asyncio.to_thread(plane.rejected)).values()) == {0}
