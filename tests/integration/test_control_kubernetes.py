"""The control plane in Kubernetes mode, end to end, against a fake API server.

No real Kubernetes cluster is used (none can run here): the API server is
``tests/control/sources/fake_apiserver.py`` (list with pagination, watch with bookmarks, a
compaction window answering 410 Gone, request log), wrapped by ``fake_cluster.FakeCluster``.

Each test seeds a ServiceEntry + DestinationRule (v1/v2 endpoints on two real thriftpy2 servers)
and a MetaRouter, writes a kubeconfig, and starts ``aeraki control --kubernetes --kubeconfig …``
as a separate process (stopped by PID). Our :class:`ProxyServer` is its ADS client in this
process, and real Thrift calls go through the proxy from threads. What the control plane did is
observed from outside, as an operator would: the proxy's xDS client (versions applied and ACKed
per type, updates applied, the route table in force), the fake's request log (lists, watches and
their ``resourceVersion``) and the control plane's log. Every wait polls a fact with a deadline;
the only windows are the "nothing happens" checks, each longer than the debounce's max delay.

Leader election is not exercised here: neither ``aeraki control`` nor ``ControlPlane`` runs a
writer role or a :class:`LeaderElector` yet, and the elector's Lease hand-over between two
candidates (release on cancel, take-over after expiry, 409 on a stale version) is covered against
the same fake by ``tests/control/sources/test_leader.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from aeraki.control.cli import local_proxy_bootstrap
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.xds_client import XdsClient
from tests.control.sources.fake_cluster import FakeCluster, control_argv
from tests.control.test_runtime import router_yaml, service_yaml
from tests.integration.peers.procs import (
    LOOPBACK,
    PeerProcess,
    ProcessGroup,
    can_connect,
    free_ports,
)
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServer, ThriftServerCache

HOST = "thrift-sample-server.meta-thrift.svc.cluster.local"
NAMESPACE = "meta-thrift"
PORT_NAME = "tcp-metaprotocol-thrift-server"
NODE_ID = "k8s-e2e-proxy"
WAIT = 15.0
QUIET_MS, MAX_DELAY_MS = 50, 300
#: "Nothing happens" windows: well past the debounce's max delay.
QUIET_WINDOW = 1.0

JsonDict = dict[str, Any]


def metarouter(*subsets: str, weight: object = None) -> JsonDict:
    """The MetaRouter of the Thrift service: one route to ``subsets`` (all, if none)."""
    routes = ""
    if subsets:
        dests = ", ".join(
            f"{{destination: {{host: {HOST}, subset: {s}}}"
            + ("" if weight is None else f", weight: {weight}")
            + "}"
            for s in subsets
        )
        routes = f"    - name: to-{'-'.join(subsets)}\n      route: [{dests}]\n"
    doc = yaml.safe_load(router_yaml("thrift", NAMESPACE, HOST, routes or "    []\n"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def thrift_pair(thrift_servers: ThriftServerCache) -> tuple[ThriftServer, ThriftServer]:
    return (
        thrift_servers.get("thriftpy2", "framed", "binary", "v1"),
        thrift_servers.get("thriftpy2", "framed", "binary", "v2"),
    )


# --------------------------------------------------------------------------- the mesh


@dataclass
class KubeMesh:
    cluster: FakeCluster
    control: PeerProcess
    proxy: ProxyServer
    port: int  # the Thrift service port, where the proxy's outbound listener binds
    endpoint_ports: tuple[int, int]  # the v1 and v2 Thrift servers

    def cluster_name(self, subset: str = "") -> str:
        return f"outbound|{self.port}|{subset}|{HOST}"

    @property
    def xds(self) -> XdsClient:
        assert self.proxy.xds is not None
        return self.proxy.xds

    def targets(self) -> set[str]:
        """Clusters the route table in force on the service's listener sends to."""
        out: set[str] = set()
        for listener in self.proxy.listeners:
            table = listener.runtime.route_table
            if listener.port == self.port and table is not None:
                for route in table.routes:
                    out.update([route.cluster] if route.cluster else route.weighted_names)
        return out

    def acked(self) -> tuple[int, dict[str, str]]:
        """(responses applied and ACKed, version ACKed per type) as the proxy's client holds
        them: both unchanged = the control plane pushed nothing to this node."""
        states = self.xds._states  # the client exposes no per-type view yet
        return self.xds.updates_applied, {t: s.version for t, s in states.items()}

    def log(self) -> str:
        return self.control.log_path.read_text(errors="replace")

    async def until(self, predicate: Callable[[], bool], what: str, within: float = WAIT) -> None:
        """Poll ``predicate`` until true; fail fast (with the log) if the control plane died."""
        deadline = time.monotonic() + within
        while not predicate():
            if not self.control.alive():
                pytest.fail(f"control plane exited while waiting for {what}:\n{self.log()}")
            if time.monotonic() >= deadline:
                pytest.fail(f"{what}: not within {within}s; control plane log:\n{self.log()}")
            await asyncio.sleep(0.02)

    async def stays(self, value: Callable[[], object], what: str) -> None:
        """``value()`` does not change for :data:`QUIET_WINDOW` seconds (fails at once if it
        does): the check for "nothing was pushed"."""
        before = value()
        deadline = time.monotonic() + QUIET_WINDOW
        while time.monotonic() < deadline:
            now = value()
            assert now == before, f"{what} changed: {before} -> {now}"
            await asyncio.sleep(0.02)

    async def routes_to(self, *subsets: str) -> None:
        wanted = {self.cluster_name(s) for s in subsets} if subsets else {self.cluster_name()}
        await self.until(lambda: self.targets() == wanted, f"routes to {sorted(wanted)}")
        await self.until(lambda: self.xds.connected and not self.xds.last_nack, "xDS in sync")

    def labels(self, calls: int) -> Counter[str]:
        """``whoami`` over one fresh connection through the proxy, ``calls`` times."""
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, self.port) as c:
            return Counter(c.whoami() for _ in range(calls))

    async def resumed_watches(self, mark: int, what: str) -> None:
        """Every watched kind opened a new watch since ``mark``."""
        plurals = self.cluster.plurals
        await self.until(lambda: self.cluster.watched_plurals(mark) == plurals, what)


def last_watch_versions(cluster: FakeCluster, mark: int = 0) -> dict[str, str]:
    """Per kind, the ``resourceVersion`` its latest watch since ``mark`` started from."""
    return {r.plural: r.query["resourceVersion"] for r in cluster.watches(mark)}


@pytest.fixture
async def mesh(
    tmp_path: Any, peers: ProcessGroup, thrift_pair: tuple[ThriftServer, ThriftServer]
) -> AsyncIterator[KubeMesh]:
    xds_port, port = free_ports(2)
    v1, v2 = thrift_pair
    cluster = FakeCluster()
    kubeconfig = await cluster.start(tmp_path)
    cluster.apply_yaml(service_yaml("thrift", NAMESPACE, HOST, PORT_NAME, port, v1.port, v2.port))
    cluster.apply(metarouter("v1"))
    argv = control_argv(
        kubeconfig, xds_port, quiet_ms=QUIET_MS, max_delay_ms=MAX_DELAY_MS, extra=[]
    )
    control = peers.spawn("aeraki-control-k8s", argv)
    proxy = ProxyServer(
        bootstrap_from_dict(local_proxy_bootstrap(xds_port, node_id=NODE_ID)), drain_timeout=1.0
    )
    result = KubeMesh(cluster, control, proxy, port, (v1.port, v2.port))
    try:
        await result.until(lambda: can_connect(LOOPBACK, xds_port, 0.2), "xDS port open")
        await proxy.start()
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
        await result.routes_to("v1")
        yield result
    finally:
        await proxy.shutdown()
        code = await asyncio.to_thread(control.stop)  # SIGTERM to this PID, then SIGKILL
        await cluster.stop()
    assert code == 0, result.log()
    assert "Traceback" not in result.log()


# --------------------------------------------------------------------------- scenarios


async def test_lists_then_watches_every_kind_and_routes_to_v1(mesh: KubeMesh) -> None:
    cluster = mesh.cluster
    lists = cluster.lists()
    assert {r.plural for r in lists} == cluster.plurals
    assert all(r.query.get("limit") == "500" for r in lists)  # paginated lists
    watches = cluster.watches()
    assert {r.plural for r in watches} == cluster.plurals
    assert all(r.query["allowWatchBookmarks"] == "true" for r in watches)
    assert all(int(r.query["resourceVersion"]) > 100 for r in watches)  # from the list's version
    assert set(cluster.server.auth_headers) == {"Bearer fake-cluster-token"}
    assert await asyncio.to_thread(mesh.labels, 20) == {"v1": 20}
    assert " ERROR " not in mesh.log()


async def test_modified_metarouter_applies_on_a_held_open_connection(mesh: KubeMesh) -> None:
    stop = threading.Event()
    seen: list[str] = []

    def call_loop() -> None:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.port) as c:
            for _ in range(100_000):  # bounded; ended by the event
                seen.append(c.whoami())
                if stop.is_set():
                    return

    loop = asyncio.create_task(asyncio.to_thread(call_loop))
    try:
        await mesh.until(lambda: len(seen) >= 20 or loop.done(), "calls on the held connection")
        mesh.cluster.apply(metarouter("v2"))  # a MODIFIED event on the MetaRouter watch
        await mesh.routes_to("v2")
        count = len(seen)
        await mesh.until(lambda: len(seen) >= count + 20 or loop.done(), "calls after the change")
    finally:
        stop.set()
        results = await asyncio.gather(loop, return_exceptions=True)
    assert [r for r in results if r is not None] == []  # no failed call, one connection
    switch = seen.index("v2")
    assert switch >= 20
    assert set(seen[:switch]) == {"v1"}
    assert set(seen[switch:]) == {"v2"}  # never back once switched
    assert await asyncio.to_thread(mesh.labels, 10) == {"v2": 10}


async def test_deleted_metarouter_falls_back_to_the_default_route(mesh: KubeMesh) -> None:
    mesh.cluster.delete(metarouter())
    await mesh.routes_to()  # outbound|<port>||<host>: every endpoint
    assert set(await asyncio.to_thread(mesh.labels, 40)) == {"v1", "v2"}
    mesh.cluster.apply(metarouter("v2"))  # and back: a new MetaRouter is an ADDED
    await mesh.routes_to("v2")
    assert await asyncio.to_thread(mesh.labels, 10) == {"v2": 10}


async def test_watch_disconnect_resumes_without_relist_or_push(mesh: KubeMesh) -> None:
    cluster = mesh.cluster
    held = last_watch_versions(cluster)
    acked = mesh.acked()

    # 1. Every watch cut mid-stream, nothing changed meanwhile: resumed from the same versions.
    mark = cluster.mark()
    cluster.server.drop_watches()
    await mesh.resumed_watches(mark, "watches resumed after the cut")
    assert cluster.lists(mark) == []
    assert last_watch_versions(cluster, mark) == held
    await mesh.stays(mesh.acked, "the proxy's ACKed xDS state")
    assert mesh.acked() == acked

    # 2. Bookmarks move every kind's version, then the server ends the watches cleanly (as at
    #    timeoutSeconds): resumed from the bookmark's version, still no list, no push.
    bookmark = cluster.bump(3)
    mark = cluster.mark()
    cluster.server.send_bookmarks()
    cluster.end_watches()
    await mesh.resumed_watches(mark, "watches resumed after the bookmarks")
    assert cluster.lists(mark) == []
    assert set(last_watch_versions(cluster, mark).values()) == {str(bookmark)}
    await mesh.stays(mesh.acked, "the proxy's ACKed xDS state")

    # 3. A change written while the watches are down arrives by replay on the resumed watch.
    held = last_watch_versions(cluster)
    mark = cluster.mark()
    cluster.server.drop_watches()
    cluster.apply(metarouter("v2"))
    await mesh.routes_to("v2")
    assert cluster.lists(mark) == []
    assert last_watch_versions(cluster, mark)["metarouters"] == held["metarouters"]
    assert await asyncio.to_thread(mesh.labels, 10) == {"v2": 10}


@pytest.mark.parametrize("gone_as", ["event", "status"])
async def test_gone_relists_and_pushes_only_real_changes(mesh: KubeMesh, gone_as: str) -> None:
    """410 as a watch ERROR event (what kube-apiserver sends) or as the HTTP status."""
    cluster = mesh.cluster
    cluster.server.gone_as = gone_as
    acked = mesh.acked()

    # 1. History compacted past every held version, content unchanged: a relist of every
    #    kind, no event reaches the config, nothing is pushed.
    cluster.bump()
    cluster.server.compact()
    mark = cluster.mark()
    cluster.server.drop_watches()
    await mesh.until(
        lambda: {r.plural for r in cluster.lists(mark)} == cluster.plurals, "relist of every kind"
    )

    def requests_of(plural: str) -> list[Any]:
        return [r for r in cluster.since(mark) if r.plural == plural]

    # Per kind: the watch refused with 410, a list, a new watch. Wait for the new watch of
    # every kind (the refused one alone already counts as "a watch since mark").
    await mesh.until(
        lambda: all(len(requests_of(p)) >= 3 for p in cluster.plurals),
        "a new watch of every kind after its relist",
    )
    now = str(cluster.server.resource_version)
    for plural in cluster.plurals:
        seen = requests_of(plural)
        kinds = ["watch" if r.is_watch else "list" for r in seen[:3]]
        assert kinds == ["watch", "list", "watch"], plural
        assert seen[0].query["resourceVersion"] != now
        assert seen[2].query["resourceVersion"] == now
    await mesh.stays(mesh.acked, "the proxy's ACKed xDS state")
    assert mesh.acked() == acked
    assert mesh.targets() == {mesh.cluster_name("v1")}
    assert await asyncio.to_thread(mesh.labels, 10) == {"v1": 10}

    # 2. The MetaRouter changed while disconnected and the change was compacted away: only the
    #    relist can bring it, and it does.
    mark = cluster.mark()
    cluster.server.drop_watches()
    cluster.apply(metarouter("v2"))
    cluster.server.compact()
    await mesh.routes_to("v2")
    assert "metarouters" in {r.plural for r in cluster.lists(mark)}
    assert await asyncio.to_thread(mesh.labels, 10) == {"v2": 10}


async def test_invalid_metarouter_is_reported_and_the_last_good_route_stays(
    mesh: KubeMesh,
) -> None:
    acked = mesh.acked()
    bad = mesh.cluster.apply(metarouter("v2", weight="heavy"))  # weight: a string
    rv = bad["metadata"]["resourceVersion"]
    expected = "MetaRouter meta-thrift/thrift: spec.routes[0].route[0].weight: expected an integer"

    def reported() -> bool:
        lines = mesh.log().splitlines()
        errors = [i for i, ln in enumerate(lines) if " ERROR " in ln and expected in ln]
        # ... and the push that found it has finished (its summary line follows).
        return bool(errors) and any("push:" in ln for ln in lines[errors[0] :])

    await mesh.until(reported, "the invalid MetaRouter reported in the control plane's log")
    lines = mesh.log().splitlines()
    at = next(i for i, ln in enumerate(lines) if expected in ln)
    assert f"k8s:metarouters@{rv}: error:" in lines[at]  # points at the API object's version
    assert "the last good version" in lines[at + 1]
    push = next(ln for ln in lines[at:] if "push:" in ln)
    assert "0 node snapshot(s) changed" in push
    await mesh.stays(mesh.acked, "the proxy's ACKed xDS state")
    assert mesh.acked() == acked
    assert await asyncio.to_thread(mesh.labels, 10) == {"v1": 10}

    mesh.cluster.apply(metarouter("v2"))  # fixed: applies
    await mesh.routes_to("v2")
    assert await asyncio.to_thread(mesh.labels, 10) == {"v2": 10}


async def test_kubernetes_service_with_a_metaprotocol_port_is_served(mesh: KubeMesh) -> None:
    """Issue 3 item 3: endpoints from Kubernetes Services whose ports are named
    ``tcp-metaprotocol-<protocol>-…`` (Istio's synthetic ServiceEntry of a Service, reference
    §3.1), here with Endpoints naming both Thrift servers."""
    (port,) = free_ports(1)
    cluster = mesh.cluster
    meta = {"name": "thrift-k8s", "namespace": NAMESPACE}
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "clusterIP": "10.96.0.42",
                "selector": {"app": "thrift-k8s"},
                "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {
                    "addresses": [{"ip": LOOPBACK}],
                    "ports": [{"name": PORT_NAME, "port": p, "protocol": "TCP"}],
                }
                for p in mesh.endpoint_ports
            ],
        }
    )
    mesh.port = port
    host = f"thrift-k8s.{NAMESPACE}.svc.cluster.local"
    await mesh.until(
        lambda: mesh.targets() == {f"outbound|{port}||{host}"},
        "a listener and default route for the Kubernetes Service",
        within=5.0,
    )
    assert set(await asyncio.to_thread(mesh.labels, 40)) == {"v1", "v2"}
