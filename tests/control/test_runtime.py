"""The control-plane runtime with the real watched-directory source and real ADS streams.

The translator is a small one written here (:class:`FakeTranslator`): these tests pin the
pipeline (debounce, last good config, per-node snapshots, consistency refusals) whatever the
real translation does. tests/integration/test_control_e2e.py runs the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.route.v3 import route_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from aeraki.control.model import ConfigSnapshot
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from aeraki.control.xds import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, Snapshot
from tests.control.xds.client import AdsClient
from tests.control.xds.resources import eds_cluster, load_assignment, meta_listener, route_config

THRIFT = "thrift-sample-server.meta-thrift.svc.cluster.local"
DUBBO = "org.apache.dubbo.samples.basic.api.demoservice"
WAIT = 10.0


# --------------------------------------------------------------------------- manifests


def service_yaml(
    name: str, namespace: str, host: str, port_name: str, port: int, v1: int, v2: int
) -> str:
    """A STATIC ServiceEntry with v1/v2 endpoints on 127.0.0.1 and a DR with subsets v1/v2."""
    return f"""\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: {port_name}, protocol: TCP}}]
  resolution: STATIC
  endpoints:
    - {{address: 127.0.0.1, ports: {{{port_name}: {v1}}}, labels: {{version: v1, app: {name}}}}}
    - {{address: 127.0.0.1, ports: {{{port_name}: {v2}}}, labels: {{version: v2, app: {name}}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}
  subsets:
    - {{name: v1, labels: {{version: v1}}}}
    - {{name: v2, labels: {{version: v2}}}}
"""


def router_yaml(name: str, namespace: str, host: str, routes: str) -> str:
    """A MetaRouter; ``routes`` is the YAML list under ``spec.routes`` (indented 4)."""
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{host}]
  routes:
{routes}"""


def to_subset(host: str, subset: str, name: str = "r") -> str:
    dest = f"{{destination: {{host: {host}, subset: {subset}}}}}"
    return f"    - name: {name}\n      route: [{dest}]\n"


def write_mesh(root: Path, thrift_port: int = 19090, dubbo_port: int = 19880) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tp = "tcp-metaprotocol-thrift-server"
    dp = "tcp-metaprotocol-dubbo"
    (root / "thrift.yaml").write_text(
        service_yaml("thrift", "meta-thrift", THRIFT, tp, thrift_port, 9091, 9092)
    )
    (root / "dubbo.yaml").write_text(
        service_yaml("dubbo", "meta-dubbo", DUBBO, dp, dubbo_port, 20881, 20882)
    )
    (root / "thrift-route.yaml").write_text(
        router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v1"))
    )


# --------------------------------------------------------------------------- translator


@dataclass(frozen=True)
class FakeTranslation:
    resources: tuple[Message, ...]
    problems: tuple[str, ...] = ()


@dataclass
class FakeTranslator:
    """Per SE port: EDS clusters per subset, a MetaProtocol listener and one route (first
    destination of the host's MetaRouter, else all endpoints). Node metadata ``ONLY`` keeps
    hosts with that prefix; ``drop_routes`` makes snapshots inconsistent (RDS name dangles)."""

    calls: int = 0
    drop_routes: bool = False
    problems: list[str] = field(default_factory=list)

    def __call__(self, config: ConfigSnapshot, node: Any, options: Any) -> FakeTranslation:
        self.calls += 1
        fields = node.metadata.fields
        only = fields["ONLY"].string_value if "ONLY" in fields else ""
        routers = {mr.spec.hosts[0]: mr for mr in config.meta_routers}
        out: list[Message] = []
        for se in config.service_entries:
            host = se.spec.hosts[0]
            if not host.startswith(only):
                continue
            for port in se.spec.ports:
                subsets: dict[str, dict[str, str]] = {"": {}}
                for dr in config.destination_rules:
                    if dr.spec.host == host:
                        subsets.update({s.name: dict(s.labels) for s in dr.spec.subsets})
                for subset, labels in subsets.items():
                    name = f"outbound|{port.number}|{subset}|{host}"
                    ports = [
                        e.ports.get(port.name, port.number)
                        for e in se.spec.endpoints
                        if labels.items() <= dict(e.labels).items()
                    ]
                    out += [eds_cluster(name), load_assignment(name, *ports)]
                route_name = f"{host}_{port.number}"
                out.append(meta_listener(route_name, port.number, route_name))
                if self.drop_routes:
                    continue
                router = routers.get(host)
                routes = router.spec.routes if router else ()
                subset = routes[0].route[0].destination.subset if routes else ""
                out.append(route_config(route_name, f"outbound|{port.number}|{subset}|{host}"))
        return FakeTranslation(tuple(out), tuple(self.problems))


def route_clusters(snapshot: Snapshot | None, name: str) -> list[str]:
    assert snapshot is not None
    config = snapshot.messages(ROUTE_TYPE)[name]
    assert isinstance(config, route_pb2.RouteConfiguration)
    return [r.route.cluster for vh in config.virtual_hosts for r in vh.routes]


# --------------------------------------------------------------------------- fixtures


@dataclass
class Harness:
    root: Path
    plane: ControlPlane
    translator: FakeTranslator
    connect: Callable[..., AdsClient]

    def snapshot(self, node: str) -> Snapshot | None:
        return self.plane.cache.get_snapshot(node)

    async def wait(self, predicate: Callable[[], bool]) -> None:
        await self.plane.wait_until(predicate, WAIT)

    async def edit(self, name: str, text: str) -> int:
        """Write a file and return the push count before the write."""
        before = self.plane.metrics.pushes_total
        (self.root / name).write_text(text)
        return before


async def _ack_forever(client: AdsClient) -> None:
    """ACK every response (wildcard LDS/CDS subscriptions only), like a healthy proxy."""
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        while True:
            resp = await client._call.read()
            if resp is grpc.aio.EOF:
                return
            client.ack(resp)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    root = tmp_path / "mesh"
    write_mesh(root)
    source = FileSource(root, interval=0.05)
    translator = FakeTranslator()
    plane = ControlPlane(source, xds_port=0, translator=translator, node_info=lambda n: n)
    source.on_problem = plane.on_source_problem
    port = await plane.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    tasks: list[asyncio.Task[None]] = []
    clients: list[AdsClient] = []

    def connect(node_id: str, **metadata: str) -> AdsClient:
        client = AdsClient(channel, node_id)
        for key, value in metadata.items():
            client.node.metadata.fields[key].CopyFrom(struct_pb2.Value(string_value=value))
        client.subscribe(CLUSTER_TYPE)
        client.subscribe(LISTENER_TYPE)
        clients.append(client)
        tasks.append(asyncio.create_task(_ack_forever(client)))
        return client

    yield Harness(root, plane, translator, connect)
    for client in clients:
        await client.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    await plane.stop()


# --------------------------------------------------------------------------- tests


async def test_node_gets_snapshot_at_connect_and_acks_it(harness: Harness) -> None:
    await harness.wait(lambda: harness.plane.config is not None)
    harness.connect("proxy-a")
    await harness.wait(lambda: harness.plane.in_sync("proxy-a"))
    snapshot = harness.snapshot("proxy-a")
    assert snapshot is not None
    assert set(snapshot.messages(LISTENER_TYPE)) == {f"{THRIFT}_19090", f"{DUBBO}_19880"}
    assert route_clusters(snapshot, f"{THRIFT}_19090") == [f"outbound|19090|v1|{THRIFT}"]
    assert harness.plane.metrics.proxies_connected == 1
    assert harness.plane.problems() == []


async def test_node_connecting_before_sync_waits_for_the_first_push(tmp_path: Path) -> None:
    write_mesh(tmp_path)
    gate = asyncio.Event()

    class SlowSource(FileSource):
        async def events(self) -> AsyncIterator[Any]:
            await gate.wait()
            async for event in super().events():
                yield event

    plane = ControlPlane(
        SlowSource(tmp_path), xds_port=0, translator=FakeTranslator(), node_info=lambda n: n
    )
    port = await plane.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = AdsClient(channel, "early")
        client.subscribe(LISTENER_TYPE)
        await plane.wait_until(lambda: bool(plane.server.proxies()), WAIT)
        assert plane.cache.get_snapshot("early") is None  # nothing before SYNCED
        gate.set()
        resp = await client.recv()
        assert len(resp.resources) == 2
        await client.close()
    await plane.stop()


async def test_metarouter_edit_is_one_debounced_push(harness: Harness) -> None:
    harness.connect("proxy-a")
    await harness.wait(lambda: harness.plane.in_sync("proxy-a"))
    old = harness.snapshot("proxy-a")
    before = harness.plane.metrics.pushes_total
    # two files changed together: one MetaRouter edited, one added — one push for both
    (harness.root / "thrift-route.yaml").write_text(
        router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
    )
    (harness.root / "dubbo-route.yaml").write_text(
        router_yaml("dubbo", "meta-dubbo", DUBBO, to_subset(DUBBO, "v2"))
    )
    await harness.wait(lambda: harness.snapshot("proxy-a") != old)
    await harness.wait(lambda: harness.plane.in_sync("proxy-a"))
    await asyncio.sleep(0.3)  # a second push would have happened by now
    assert harness.plane.metrics.pushes_total == before + 1
    new = harness.snapshot("proxy-a")
    assert route_clusters(new, f"{THRIFT}_19090") == [f"outbound|19090|v2|{THRIFT}"]
    assert route_clusters(new, f"{DUBBO}_19880") == [f"outbound|19880|v2|{DUBBO}"]
    push = harness.plane.last_push
    assert push is not None
    assert push.nodes == 1


async def test_broken_yaml_is_reported_and_last_good_kept(harness: Harness) -> None:
    harness.connect("proxy-a")
    await harness.wait(lambda: harness.plane.in_sync("proxy-a"))
    old = harness.snapshot("proxy-a")
    (harness.root / "thrift-route.yaml").write_text("apiVersion: [unclosed\nkind: MetaRouter\n")
    await harness.wait(lambda: harness.plane.metrics.source_problems_total == 1)
    problems = harness.plane.problems()
    assert len(problems) == 1
    assert "thrift-route.yaml" in problems[0]
    assert "invalid YAML" in problems[0]
    assert harness.snapshot("proxy-a") == old
    # fixing the file clears the problem and the change goes through
    await harness.edit(
        "thrift-route.yaml", router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
    )
    await harness.wait(lambda: harness.snapshot("proxy-a") != old)
    assert harness.plane.problems() == []


async def test_invalid_resource_keeps_its_last_good_version(harness: Harness) -> None:
    harness.connect("proxy-a")
    await harness.wait(lambda: harness.plane.in_sync("proxy-a"))
    errors = harness.plane.metrics.config_errors_total
    # a dangling subset: an error; the v1 route must stay in force
    before = await harness.edit(
        "thrift-route.yaml", router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v3"))
    )
    await harness.wait(lambda: harness.plane.metrics.pushes_total > before)
    problems = harness.plane.problems()
    assert any('subset "v3" is not defined' in p for p in problems), problems
    assert any("last good version" in p and "stays in force" in p for p in problems), problems
    assert harness.plane.metrics.config_errors_total == errors + 1
    assert harness.plane.metrics.config_fallbacks == 1
    snapshot = harness.snapshot("proxy-a")
    assert route_clusters(snapshot, f"{THRIFT}_19090") == [f"outbound|19090|v1|{THRIFT}"]
    # a wrong type in another resource: that one is reported too, the rest keeps working
    before = await harness.edit(
        "dubbo-route.yaml",
        router_yaml("dubbo", "meta-dubbo", DUBBO, "    - name: x\n      route: 7\n"),
    )
    await harness.wait(lambda: harness.plane.metrics.pushes_total > before)
    assert any("MetaRouter meta-dubbo/dubbo" in p for p in harness.plane.problems())
    assert route_clusters(harness.snapshot("proxy-a"), f"{DUBBO}_19880") == [
        f"outbound|19880||{DUBBO}"  # never valid: left out, default route
    ]
    # deleting the invalid resources withdraws them; no problems remain
    before = harness.plane.metrics.pushes_total
    (harness.root / "thrift-route.yaml").unlink()
    (harness.root / "dubbo-route.yaml").unlink()
    await harness.wait(lambda: harness.plane.metrics.pushes_total > before)
    assert harness.plane.problems() == []
    assert route_clusters(harness.snapshot("proxy-a"), f"{THRIFT}_19090") == [
        f"outbound|19090||{THRIFT}"
    ]


async def test_two_nodes_with_different_metadata_get_different_snapshots(
    harness: Harness,
) -> None:
    harness.connect("thrift-only", ONLY="thrift")
    harness.connect("everything")
    await harness.wait(lambda: harness.plane.in_sync())
    assert harness.plane.metrics.proxies_connected == 2
    narrow, wide = harness.snapshot("thrift-only"), harness.snapshot("everything")
    assert narrow is not None
    assert wide is not None
    assert set(narrow.messages(LISTENER_TYPE)) == {f"{THRIFT}_19090"}
    assert len(wide.messages(LISTENER_TYPE)) == 2
    # a change reaches both, each through its own translation
    calls = harness.translator.calls
    old = harness.snapshot("thrift-only")
    await harness.edit(
        "thrift-route.yaml", router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
    )
    await harness.wait(lambda: harness.snapshot("thrift-only") != old)
    await harness.wait(lambda: harness.plane.in_sync())
    assert harness.translator.calls == calls + 2
    status = harness.plane.status()
    assert {p.node_id for p in status.proxies} == {"thrift-only", "everything"}
    assert all(p.in_sync for p in status.proxies)


async def test_nodes_with_the_same_view_share_one_translation_and_snapshot(
    harness: Harness,
) -> None:
    """Replicas differ by node id only: one translation per config, one shared snapshot."""
    await harness.wait(lambda: harness.plane.config is not None)
    for i in range(5):
        harness.connect(f"replica-{i}", ONLY="thrift")
    await harness.wait(lambda: harness.plane.metrics.proxies_connected == 5)
    await harness.wait(lambda: harness.plane.in_sync())
    snapshots = {id(harness.snapshot(f"replica-{i}")) for i in range(5)}
    assert len(snapshots) == 1
    calls = harness.translator.calls
    old = harness.snapshot("replica-0")
    await harness.edit(
        "thrift-route.yaml", router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
    )
    await harness.wait(lambda: harness.snapshot("replica-4") != old)
    await harness.wait(lambda: harness.plane.in_sync())
    assert harness.translator.calls == calls + 1  # one push, one view, one translation


async def test_inconsistent_snapshot_is_refused_and_previous_kept(harness: Harness) -> None:
    harness.connect("proxy-a")
    await harness.wait(lambda: harness.plane.in_sync("proxy-a"))
    old = harness.snapshot("proxy-a")
    harness.translator.drop_routes = True
    harness.translator.problems.append("could not render something")
    before = await harness.edit(
        "thrift-route.yaml", router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
    )
    await harness.wait(lambda: harness.plane.metrics.pushes_total > before)
    assert harness.snapshot("proxy-a") == old
    assert harness.plane.metrics.snapshots_rejected_total == 1
    problems = harness.plane.problems()
    assert any("inconsistent snapshot, previous one kept" in p for p in problems), problems
    assert any("could not render something" in p for p in problems)
    assert harness.plane.metrics.translation_problems_total == 1


async def test_disconnected_node_is_forgotten(harness: Harness) -> None:
    client = harness.connect("short-lived")
    await harness.wait(lambda: harness.plane.in_sync("short-lived"))
    await client.close()
    await harness.wait(lambda: harness.plane.metrics.proxies_connected == 0)
    assert harness.snapshot("short-lived") is None


async def test_real_translation_is_incremental_and_equals_a_fresh_one(tmp_path: Path) -> None:
    """With the real translator a MetaRouter edit rebuilds the edited service's pieces only:
    every other resource of the new snapshot is the previous snapshot's very object, and the
    whole is what a translation from scratch gives."""
    from aeraki.control.runtime import translate_options
    from aeraki.control.translate import NodeInfo, translate

    root = tmp_path / "mesh"
    write_mesh(root)
    plane = ControlPlane(FileSource(root, interval=0.05), xds_port=0)
    port = await plane.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = AdsClient(channel, "proxy-a")
    client.subscribe(CLUSTER_TYPE)
    client.subscribe(LISTENER_TYPE)
    task = asyncio.create_task(_ack_forever(client))
    try:
        await plane.wait_until(lambda: plane.in_sync("proxy-a"), WAIT)
        old = plane.cache.get_snapshot("proxy-a")
        assert old is not None
        (root / "thrift-route.yaml").write_text(
            router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
        )
        await plane.wait_until(lambda: plane.cache.get_snapshot("proxy-a") != old, WAIT)
        new = plane.cache.get_snapshot("proxy-a")
        assert new is not None
        assert plane.config is not None
        fresh = Snapshot.from_messages(
            *translate(plane.config, NodeInfo(id="proxy-a"), translate_options()).resources
        )
        assert new == fresh
        rebuilt = {
            (t.rsplit(".", 1)[-1], name)
            for t in new.type_urls()
            for name, res in new.resources(t).items()
            if old.resources(t).get(name) is not res
        }
        assert rebuilt == {
            ("RouteConfiguration", f"{THRIFT}_19090"),
            ("Listener", "127.0.0.1_19090"),  # rebuilt (it reads the MetaRouter), same content
        }
        assert new.version(LISTENER_TYPE) == old.version(LISTENER_TYPE)
    finally:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await channel.close()
        await plane.stop()
