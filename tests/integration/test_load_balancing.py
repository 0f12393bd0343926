# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""Load balancing under load through the real proxy, with real peers (issue 4 item 7).

Manifests → control plane → our proxy as its ADS client (the e2e harness of
``test_control_e2e``) → real Thrift servers and Java Dubbo providers:

- a 20/80 MetaRouter split, consistent hashing (Maglev and ring hash) and a 30 % mirror, each
  over 5,000 requests, hold within exact binomial bounds (``assert_binomial``: a correct proxy
  fails one assertion with probability at most 1e-6; the proxy's random draws are not
  seeded, so the bound is what keeps these tests honest);
- locality failover: a proxy in r1/z1, Thrift servers in r1/z1 (two), r1/z2 and r2/z3, a
  DestinationRule with outlier detection and ``localityLbSetting.failover`` r1 -> r2. Servers
  are killed by PID; outlier detection ejects each on its first connect failure and traffic
  moves as Envoy moves it: P0 at half health keeps 70 %, then all of P1, then the failover
  region; restarted servers take their traffic back.

Every wait is for a fact (an ACK, an ejection, a counter on a server), polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash
from thriftpy2.thrift import TApplicationException

from aeraki.control.cli import local_proxy_bootstrap
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from aeraki.control.translate import NodeInfo, TranslateOptions, translate
from aeraki.control.validation import load_config
from aeraki.control.xds import Snapshot, SnapshotCache, XdsServer
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.config import ClusterConfig, LbPolicy, SocketAddress
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.upstream.cluster import Cluster
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb import PriorityLoadBalancer, create_load_balancer
from tests.integration.peers.dubbo import DubboProvider, read_frame, request_frame
from tests.integration.peers.envoy import ads_bootstrap, envoy_binary, start_envoy
from tests.integration.peers.procs import (
    LOOPBACK,
    REPO_ROOT,
    PeerProcess,
    ProcessGroup,
    free_ports,
    poll_until,
    wait_for_port,
)
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServer, start_thrift_server
from tests.integration.test_control_e2e import (
    DUBBO,
    THRIFT,
    WAIT,
    Mesh,
    dubbo_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    dubbo_router,
    mesh,  # noqa: F401
    route,
    string_value,
    thrift_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    thrift_router,
)
from tests.integration.test_resilience_upstream import _thrift_argv
from tests.proxy.upstream.lb.helpers import assert_binomial, hash_space_share

N = 5_000


def _stat_total(mesh: Mesh, suffix: str) -> int:
    return sum(v for k, v in mesh.proxy.stats().items() if k.endswith(suffix))


def _fired(server: ThriftServer) -> int:
    """How many one-way ``fire`` calls ``server`` has received (asked directly)."""
    with server.client() as client:
        return int(client.fired())


# --------------------------------------------------------------------------- splits


async def test_weighted_split_holds_over_5000_calls(mesh: Mesh) -> None:
    await mesh.apply(
        "thrift-route.yaml",
        thrift_router(route("split", (THRIFT, "v1", 20), (THRIFT, "v2", 80))),
    )
    counts = await asyncio.to_thread(mesh.thrift_labels, N)
    assert sum(counts.values()) == N
    assert_binomial(counts["v1"], N, 0.20, "v1 of a 20/80 split")


async def test_mirror_percentage_holds_over_5000_calls(
    mesh: Mesh, thrift_pair: tuple[ThriftServer, ThriftServer]
) -> None:
    """One-way ``fire`` calls go to v1 and 30 % of them are mirrored to v2: v2 receives
    exactly the copies the proxy counts as mirrored, and that count is binomial(5000, 0.3).

    Each ``fire`` is followed by a ``whoami`` (not mirrored) on the same connection, so the
    calls are paced by the upstream: 5,000 one-way calls written at once would exceed the
    default circuit breakers (1,024 connections, 1,024 pending) and be dropped, as in Envoy.
    """
    mirror = (
        f"      mirror: {{host: {THRIFT}, subset: v2}}\n      mirrorPercentage: {{value: 30}}\n"
    )
    fire = route("fire", (THRIFT, "v1", None), match="{method: {exact: fire}}", extra=mirror)
    await mesh.apply("thrift-route.yaml", thrift_router(fire, route("rest", (THRIFT, "v1", None))))
    v1, v2 = thrift_pair
    before = (await asyncio.to_thread(_fired, v1), await asyncio.to_thread(_fired, v2))
    sent_before = _stat_total(mesh, ".mirror_sent")

    def fire_all() -> Counter[str]:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.thrift_port) as c:
            answers: Counter[str] = Counter()
            for i in range(N):
                c.fire(f"m{i}")
                answers[c.whoami()] += 1
            return answers

    assert await asyncio.to_thread(fire_all) == {"v1": N}
    await asyncio.to_thread(
        poll_until,
        lambda: _fired(v1) - before[0] == N,
        timeout=WAIT,
        what="every one-way call at v1",
    )
    mirrored = _stat_total(mesh, ".mirror_sent") - sent_before
    await asyncio.to_thread(
        poll_until,
        lambda: _fired(v2) - before[1] == mirrored,
        timeout=WAIT,
        what=f"the {mirrored} mirrored copies at v2",
    )
    assert_binomial(mirrored, N, 0.30, "mirrored to v2")


# --------------------------------------------------------------------------- hashing


def _predictor(
    policy: LbPolicy, providers: tuple[DubboProvider, DubboProvider]
) -> tuple[Callable[[str], str], float]:
    """Which provider label a key should reach, from an independent balancer over the same
    host addresses (reference §20.3's hash: XXH64 of the key's value, seed 0), and v1's exact
    share of the hash space."""
    hosts = [Host(SocketAddress(LOOPBACK, p.port)) for p in providers]
    lb = create_load_balancer(ClusterConfig(name="expected", lb_policy=policy), hosts)
    labels = {h.key: p.label for h, p in zip(hosts, providers, strict=True)}

    def label(key: str) -> str:
        host = lb.choose(xxhash.xxh64_intdigest(key.encode(), 0))
        assert host is not None
        return labels[host.key]

    v1 = next(h.key for h, p in zip(hosts, providers, strict=True) if p.label == "v1")
    return label, hash_space_share(policy, hosts)[v1]


def _dubbo_whoami(port: int, keys: list[str]) -> list[str]:
    """``whoami`` for each key (attachment ``user``), pipelined 500 per connection; answers
    matched to requests by request id (two providers answer in their own order)."""
    labels: list[str] = []
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        frames = [
            request_frame(i + 1, "whoami", attachments={"user": key}) for i, key in enumerate(batch)
        ]
        with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
            sock.sendall(b"".join(frames))
            answers = {f.request_id: string_value(f) for f in (read_frame(sock) for _ in batch)}
        labels.extend(answers[i + 1] for i in range(len(batch)))
    return labels


@pytest.mark.parametrize("policy", [LbPolicy.MAGLEV, LbPolicy.RING_HASH])
async def test_consistent_hash_over_5000_keys(
    mesh: Mesh, dubbo_pair: tuple[DubboProvider, DubboProvider], policy: LbPolicy
) -> None:
    """Hashing on a Dubbo attachment: each of 5,000 random keys reaches exactly the provider
    an independent balancer predicts, again on new connections, and the keys split as the
    structure says (binomial around v1's share of the hash space)."""
    algorithm = "maglev: {tableSize: 65537}" if policy is LbPolicy.MAGLEV else "ringHash: {}"
    sample = (
        "    - name: sample\n"
        "      labels: {app: dubbo}\n"
        "      trafficPolicy: {loadBalancer: {consistentHash: "
        f"{{httpHeaderName: user, {algorithm}}}}}}}\n"
    )
    await mesh.apply("dubbo.yaml", (mesh.root / "dubbo.yaml").read_text() + sample)
    await mesh.apply("dubbo-route.yaml", dubbo_router(route("sample", (DUBBO, "sample", None))))
    rng = random.Random(4)
    keys = [f"user-{rng.getrandbits(64):016x}" for _ in range(N)]
    expected, v1_share = _predictor(policy, dubbo_pair)
    got = await asyncio.to_thread(_dubbo_whoami, mesh.dubbo_port, keys)
    assert got == [expected(k) for k in keys]
    assert await asyncio.to_thread(_dubbo_whoami, mesh.dubbo_port, keys[:1000]) == got[:1000]
    assert_binomial(Counter(got)["v1"], N, v1_share, "keys on v1")


# --------------------------------------------------------------------------- locality


ECHO = "echo.locality.svc.cluster.local"
ECHO_PORT_NAME = "tcp-metaprotocol-thrift-echo"
#: label -> locality of the four Thrift servers; the proxy runs in r1/z1.
PLACES = {"z1a": "r1/z1", "z1b": "r1/z1", "z2": "r1/z2", "r2": "r2/z3"}


def _echo_manifests(listen: int, ports: dict[str, int], base_ejection: str) -> str:
    endpoints = "".join(
        f"    - {{address: 127.0.0.1, ports: {{{ECHO_PORT_NAME}: {ports[label]}}},"
        f" locality: {where}, labels: {{app: echo, server: {label}}}}}\n"
        for label, where in PLACES.items()
    )
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: echo, namespace: locality}}
spec:
  hosts: [{ECHO}]
  ports: [{{number: {listen}, name: {ECHO_PORT_NAME}, protocol: TCP}}]
  resolution: STATIC
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: locality}}
spec:
  host: {ECHO}
  trafficPolicy:
    outlierDetection: {{consecutiveGatewayErrors: 1, interval: 1s,
                       baseEjectionTime: {base_ejection}, maxEjectionPercent: 100}}
    loadBalancer:
      localityLbSetting: {{failover: [{{from: r1, to: r2}}]}}
"""


@dataclass
class Zones:
    """The locality mesh: the servers by label, the proxy's cluster, the peers group."""

    mesh: Mesh
    servers: dict[str, ThriftServer]
    peers: ProcessGroup
    processes: dict[str, PeerProcess]

    @property
    def cluster(self) -> Cluster:
        cluster = self.mesh.proxy.clusters.get(f"outbound|{self.mesh.thrift_port}||{ECHO}")
        assert cluster is not None
        return cluster

    def host(self, label: str) -> Host:
        key = f"{LOOPBACK}:{self.servers[label].port}"
        return next(h for h in self.cluster.hosts if h.key == key)

    def calls(self, count: int) -> tuple[Counter[str], int]:
        """``whoami`` ``count`` times on one connection: labels answered, and errors (local
        replies: a dead host's connect failure)."""
        labels: Counter[str] = Counter()
        errors = 0
        with make_thrift_client(
            "thriftpy2", "framed", "binary", LOOPBACK, self.mesh.thrift_port
        ) as client:
            for _ in range(count):
                try:
                    labels[client.whoami()] += 1
                except TApplicationException:
                    errors += 1
        return labels, errors

    async def kill_and_eject(self, label: str) -> int:
        """Kill a server by PID, then call until outlier detection ejected it; the failed
        calls (one: the first connect failure ejects)."""
        self.peers.stop(self.processes[label])
        host = self.host(label)
        errors = 0
        for _ in range(200):  # bounded: the host is picked about every other call at worst
            errors += (await asyncio.to_thread(self.calls, 1))[1]
            if host.failed_outlier_check:
                return errors
        raise AssertionError(f"{label} never ejected: {self.cluster.hosts}")

    def restart(self, label: str) -> None:
        port = self.servers[label].port
        process = self.peers.spawn(
            f"thrift-{label}-restarted",
            _thrift_argv(port, label),
            cwd=REPO_ROOT,
            env={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
            port=port,
        )
        wait_for_port(LOOPBACK, port, alive=process.alive, what=f"restarted {label}")
        self.processes[label] = process


@contextlib.asynccontextmanager
async def _zones(peers: ProcessGroup, tmp_path: Path, base_ejection: str) -> AsyncIterator[Zones]:
    servers = {
        label: start_thrift_server(peers, "thriftpy2", "framed", "binary", label=label)
        for label in PLACES
    }
    (listen,) = free_ports(1)
    root = tmp_path / "zones"
    root.mkdir()
    ports = {label: s.port for label, s in servers.items()}
    (root / "echo.yaml").write_text(_echo_manifests(listen, ports, base_ejection))
    source = FileSource(root, interval=0.1)
    plane = ControlPlane(source, xds_port=0, quiet=0.05, max_delay=0.5)
    source.on_problem = plane.on_source_problem
    bootstrap = local_proxy_bootstrap(await plane.start())
    bootstrap["node"]["locality"] = {"region": "r1", "zone": "z1"}
    proxy = ProxyServer(bootstrap_from_dict(bootstrap), drain_timeout=1.0)
    await proxy.start()
    mesh = Mesh(root, plane, proxy, listen, 0)
    try:
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
        await mesh.synced()
        assert plane.problems() == []
        yield Zones(mesh, servers, peers, {k: s.process for k, s in servers.items()})
    finally:
        await proxy.shutdown()
        await plane.stop()


@pytest.fixture
async def zones(peers: ProcessGroup, tmp_path: Path) -> AsyncIterator[Zones]:
    """Ejections last long enough (60 s) for the failover steps to be measured."""
    async with _zones(peers, tmp_path, "60s") as value:
        yield value


@pytest.fixture
async def quick_zones(peers: ProcessGroup, tmp_path: Path) -> AsyncIterator[Zones]:
    """Ejections of 1 s: a restarted server is re-admitted at once."""
    async with _zones(peers, tmp_path, "1s") as value:
        yield value


async def test_the_proxy_ranks_localities_from_its_own(zones: Zones) -> None:
    assert {label: zones.host(label).priority for label in PLACES} == {
        "z1a": 0,
        "z1b": 0,
        "z2": 1,
        "r2": 2,
    }
    assert isinstance(zones.cluster.lb, PriorityLoadBalancer)
    labels, errors = await asyncio.to_thread(zones.calls, 200)
    assert errors == 0
    assert set(labels) == {"z1a", "z1b"}  # all local while the zone is healthy


async def test_failover_zone_by_zone_then_to_the_failover_region(zones: Zones) -> None:
    lb = zones.cluster.lb
    assert isinstance(lb, PriorityLoadBalancer)

    assert await zones.kill_and_eject("z1a") == 1
    assert lb.loads == (70, 30, 0)  # P0 half healthy: 1.4 * 50 % = 70 % stays local
    labels, errors = await asyncio.to_thread(zones.calls, 2000)
    assert errors == 0
    assert set(labels) == {"z1b", "z2"}
    assert_binomial(labels["z2"], 2000, 0.30, "spilled to r1/z2")

    assert await zones.kill_and_eject("z1b") == 1
    assert lb.loads == (0, 100, 0)
    assert await asyncio.to_thread(zones.calls, 100) == (Counter(z2=100), 0)

    assert await zones.kill_and_eject("z2") == 1
    assert lb.loads == (0, 0, 100)  # r2: the failover region
    assert await asyncio.to_thread(zones.calls, 100) == (Counter(r2=100), 0)


async def test_restarted_local_servers_take_the_traffic_back(quick_zones: Zones) -> None:
    zones = quick_zones
    for label in ("z1a", "z1b"):
        await zones.kill_and_eject(label)
    assert await asyncio.to_thread(zones.calls, 50) == (Counter(z2=50), 0)
    for label in ("z1a", "z1b"):
        await asyncio.to_thread(zones.restart, label)
    local = [zones.host("z1a"), zones.host("z1b")]
    await zones.mesh.plane.wait_until(lambda: all(h.healthy for h in local), WAIT)
    lb = zones.cluster.lb
    assert isinstance(lb, PriorityLoadBalancer)
    assert lb.loads == (100, 0, 0)
    labels, errors = await asyncio.to_thread(zones.calls, 200)
    assert errors == 0
    assert set(labels) == {"z1a", "z1b"}


# --------------------------------------------------------------------------- real Envoy


async def test_real_envoy_fails_over_by_the_same_translation(
    peers: ProcessGroup, tmp_path: Path
) -> None:
    """The same ServiceEntry and DestinationRule, translated for a stock Envoy in r1/z1
    (native Thrift): Envoy ACKs the priorities and locality weights, keeps traffic in r1/z1,
    and once both local servers are killed (and ejected by Envoy's outlier detection) sends it
    to r1/z2 — what our proxy does with the same resources."""
    if envoy_binary() is None:
        pytest.fail("Envoy binary not installed; run `make setup`")
    servers = {
        label: start_thrift_server(peers, "thriftpy2", "framed", "binary", label=label)
        for label in PLACES
    }
    listen, xds = free_ports(2)
    manifest = tmp_path / "echo.yaml"
    ports = {label: s.port for label, s in servers.items()}
    native = _echo_manifests(listen, ports, "60s").replace(ECHO_PORT_NAME, "tcp-thrift-echo")
    manifest.write_text(native)
    config = load_config([manifest])
    assert not config.errors, [p.format() for p in config.errors]
    node = NodeInfo(
        id="envoy-zone",
        cluster="zone",
        metadata={"AERAKI_DATA_PLANE": "envoy"},
        locality=("r1", "z1", ""),
    )
    translation = translate(config, node, TranslateOptions())
    snap = Snapshot.from_messages(*translation.resources)
    cache = SnapshotCache()
    cache.set_snapshot(node.id, snap)
    server = XdsServer(cache)
    port = await server.start(LOOPBACK, xds)
    text = ads_bootstrap(node_id=node.id, node_cluster="zone", api_type="GRPC", xds_port=port)
    text = text.replace("\nadmin:", "\n  locality: {region: r1, zone: z1}\nadmin:", 1)
    envoy = await asyncio.to_thread(start_envoy, peers, text, work_dir=tmp_path / "envoy")
    try:
        await _envoy_acked(server, node.id, snap)
        page = await asyncio.to_thread(envoy.admin_get, "/clusters")
        name = f"outbound|{listen}||{ECHO}"
        for label, priority in {"z1a": 0, "z1b": 0, "z2": 1, "r2": 2}.items():
            assert f"{name}::{LOOPBACK}:{ports[label]}::priority::{priority}" in page, page
        await asyncio.to_thread(wait_for_port, LOOPBACK, listen, what="Envoy's listener")

        def calls(count: int) -> tuple[Counter[str], int]:
            labels: Counter[str] = Counter()
            errors = 0
            for _ in range(count):  # a connection per call: Envoy may close one on an error
                try:
                    with make_thrift_client(
                        "thriftpy2", "framed", "binary", LOOPBACK, listen
                    ) as client:
                        labels[client.whoami()] += 1
                except (TApplicationException, OSError, EOFError):
                    errors += 1
            return labels, errors

        labels, errors = await asyncio.to_thread(calls, 40)
        assert (set(labels), errors) == ({"z1a", "z1b"}, 0)
        for label in ("z1a", "z1b"):
            peers.stop(servers[label].process)

        def failed_over() -> bool:
            return calls(10) == (Counter(z2=10), 0)

        await asyncio.to_thread(poll_until, failed_over, timeout=WAIT, what="Envoy on r1/z2")
        ejected = envoy.stats(r"outlier_detection\.ejections_enforced_total$")
        assert sum(ejected.values()) == 2, ejected
    finally:
        await asyncio.to_thread(peers.stop, envoy.process)
        await server.stop(None)


async def _envoy_acked(server: XdsServer, node_id: str, snap: Snapshot) -> None:
    def acked() -> bool:
        proxies = [p for p in server.proxies() if p.node_id == node_id]
        if not proxies:
            return False
        nacks = {s.type_url: s.last_nack_reason for s in proxies[0].types.values() if s.nacks}
        assert not nacks, nacks
        return all(proxies[0].acked_version(t) == snap.version(t) for t in snap.type_urls())

    await asyncio.to_thread(poll_until, acked, timeout=WAIT, what="Envoy's ACK")
