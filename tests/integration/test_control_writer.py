"""Two ``aeraki control --kubernetes`` replicas against one fake API server: one writes.

No real Kubernetes cluster is used (none can run here): the API server is
``tests/control/sources/fake_apiserver.py`` via ``fake_cluster.FakeCluster``, with Istio's
EnvoyFilter kind registered. Each replica is a separate process (stopped by PID) with its own
``POD_NAME`` and its own kubeconfig token, so the fake's request log tells who did what: the
``Authorization`` header of each request is the replica's identity. What is checked, from
outside as an operator would see it:

- both replicas serve xDS (a minimal ADS client gets listeners from each);
- exactly one holds the Lease, and every EnvoyFilter write comes from that one; the other
  never even lists EnvoyFilters;
- SIGTERM to the leader: it exits 0 having released the Lease, and the standby holds it and
  writes within the lease duration;
- edits of a MetaRouter / ServiceEntry reach the EnvoyFilters; a broken edit keeps them.

Election timing is shortened by flags (lease 2 s, renew deadline 1.5 s, retry 0.2 s) and the
debounce to 50 ms / 300 ms; every wait is a poll with a deadline, the only fixed windows are
the "nothing is written" checks, each longer than the debounce's max delay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from aeraki.control.envoyfilter.reconcile import list_managed
from aeraki.control.sources.kubeclient import ClusterConfig, KubeClient
from aeraki.control.xds import LISTENER_TYPE
from tests.control.sources.fake_cluster import (
    FakeCluster,
    Request,
    control_argv,
    kubeconfig_text,
)
from tests.control.xds.client import AdsClient
from tests.integration.peers.procs import LOOPBACK, PeerProcess, ProcessGroup, free_ports

HOST = "thrift-sample-server.meta-thrift.svc.cluster.local"
NAMESPACE = "meta-thrift"
LEASE_NAMESPACE = "aeraki-system"
LEASE_NAME = "aeraki-controller"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 2.0, 1.5, 0.2
QUIET_MS, MAX_DELAY_MS = 50, 300
WAIT = 15.0
QUIET_WINDOW = 1.0  # "nothing is written": > 3 x the debounce's max delay
EF_GROUP, EF_VERSION = "networking.istio.io", "v1alpha3"
EF_PATH = "/envoyfilters"

JsonDict = dict[str, Any]


def service_entry(port: int = 9090, *, broken: bool = False) -> JsonDict:
    """A ServiceEntry with a VIP (outbound EF) and a workload selector (inbound EF)."""
    port_name = "tcp-metaprotocol-thrift-server"
    ports: list[JsonDict] = [{"number": "x" if broken else port, "name": port_name}]
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {"name": "thrift", "namespace": NAMESPACE},
        "spec": {
            "hosts": [HOST],
            "addresses": ["240.240.0.10"],
            "ports": ports,
            "resolution": "STATIC",
            "workloadSelector": {"labels": {"app": "thrift"}},
            "endpoints": [
                {"address": "127.0.0.1", "ports": {port_name: 9101}, "labels": {"app": "thrift"}}
            ],
        },
    }


def metarouter(max_tokens: int, *, broken: bool = False) -> JsonDict:
    """A MetaRouter whose local rate limit ends up in the inbound EnvoyFilter."""
    bucket = {"maxTokens": max_tokens, "tokensPerFill": max_tokens, "fillInterval": "1s"}
    return {
        "apiVersion": "metaprotocol.aeraki.io/v1alpha1",
        "kind": "MetaRouter",
        "metadata": {"name": "thrift", "namespace": NAMESPACE},
        "spec": {
            "hosts": [HOST],
            "localRateLimit": {"tokenBucket": bucket},
            "routes": "not a list"
            if broken
            else [{"name": "all", "route": [{"destination": {"host": HOST}}]}],
        },
    }


def ef_names(port: int = 9090) -> set[str]:
    return {
        f"istio-system/aeraki-inbound-{HOST}-{port}",
        f"istio-system/aeraki-outbound-{HOST}-240.240.0.10-{port}",
    }


@dataclass
class Replica:
    identity: str
    token: str
    xds_port: int
    process: PeerProcess

    @property
    def auth(self) -> str:
        return f"Bearer {self.token}"

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


@dataclass
class Pair:
    cluster: FakeCluster
    replicas: list[Replica]
    observer: KubeClient  # the test's own client (token "observer"): not a replica

    def requests(self, token: str, mark: int = 0) -> list[Request]:
        server = self.cluster.server
        return [
            Request(m, p, q)
            for (m, p, q), auth in zip(server.requests, server.auth_headers, strict=True)
            if auth == f"Bearer {token}"
        ][mark:]

    def ef_writes(self, replica: Replica) -> list[Request]:
        return [
            r
            for r in self.requests(replica.token)
            if r.method in ("POST", "PUT", "DELETE") and EF_PATH in r.path
        ]

    def holder(self) -> str:
        lease = self.cluster.server.get(
            "coordination.k8s.io/v1", "Lease", LEASE_NAMESPACE, LEASE_NAME
        )
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def by_identity(self, identity: str) -> Replica:
        return next(r for r in self.replicas if r.identity == identity)

    async def envoyfilters(self) -> dict[str, JsonDict]:
        found = await list_managed(self.observer)
        return {f"{ns}/{name}": obj for (ns, name), obj in found.items()}

    def logs(self) -> str:
        return "\n".join(f"--- {r.identity}\n{r.log()}" for r in self.replicas)

    async def until(self, predicate: Callable[[], Any], what: str, within: float = WAIT) -> None:
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"{what}: not within {within}s\n{self.logs()}")
            await asyncio.sleep(0.05)

    async def leader(self) -> Replica:
        await self.until(lambda: self.holder() != "", "a Lease holder")
        return self.by_identity(self.holder())

    async def has_efs(
        self, names: set[str], check: Callable[[dict[str, JsonDict]], bool] | None = None
    ) -> bool:
        found = await self.envoyfilters()
        return set(found) == names and (check is None or check(found))


def inbound_tokens(found: dict[str, JsonDict], port: int = 9090) -> int | None:
    """``max_tokens`` of the local rate limit filter in the inbound EnvoyFilter."""
    text = yaml.safe_dump(found[f"istio-system/aeraki-inbound-{HOST}-{port}"]["spec"])
    for line in text.splitlines():
        if "max_tokens:" in line:
            return int(line.split(":")[1])
    return None


async def listeners_from(port: int, within: float = WAIT) -> int:
    """Listeners one ADS stream to 127.0.0.1:``port`` receives (retries until it serves)."""
    deadline = time.monotonic() + within
    while True:
        try:
            async with grpc.aio.insecure_channel(f"{LOOPBACK}:{port}") as channel:
                client = AdsClient(channel, f"writer-test-{port}")
                client.subscribe(LISTENER_TYPE)
                resp = await client.recv()
                await client.close()
                if resp.resources:
                    return len(resp.resources)
        except (grpc.aio.AioRpcError, AssertionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no listeners from xDS port {port} within {within}s")
        await asyncio.sleep(0.2)


@pytest.fixture
async def pair(tmp_path: Path, peers: ProcessGroup) -> AsyncIterator[Pair]:
    cluster = FakeCluster()
    cluster.server.register(EF_GROUP, EF_VERSION, "EnvoyFilter", "envoyfilters")
    await cluster.start(tmp_path)
    cluster.apply(service_entry())
    cluster.apply(metarouter(10))
    replicas: list[Replica] = []
    for name, xds_port in zip(("replica-a", "replica-b"), free_ports(2), strict=True):
        kubeconfig = tmp_path / f"{name}.kubeconfig"
        kubeconfig.write_text(kubeconfig_text(cluster.server.url, token=f"token-{name}"))
        leader_flags = [
            "--lease-duration",
            str(LEASE_DURATION),
            "--renew-deadline",
            str(RENEW_DEADLINE),
            "--retry-period",
            str(RETRY_PERIOD),
        ]
        argv = control_argv(
            kubeconfig, xds_port, quiet_ms=QUIET_MS, max_delay_ms=MAX_DELAY_MS, extra=leader_flags
        )
        env = {"POD_NAME": name, "POD_NAMESPACE": LEASE_NAMESPACE}
        process = peers.spawn(f"aeraki-control-{name}", argv, env=env)
        replicas.append(Replica(name, f"token-{name}", xds_port, process))
    observer = KubeClient(ClusterConfig(server=cluster.server.url, token="observer"))
    result = Pair(cluster, replicas, observer)
    try:
        yield result
    finally:
        codes = {r.identity: await asyncio.to_thread(r.process.stop) for r in replicas}
        await observer.close()
        await cluster.stop()
    logs = result.logs()
    assert all(code == 0 for code in codes.values()), f"{codes}\n{logs}"
    assert "Traceback" not in logs, logs


async def test_one_replica_writes_and_both_serve_xds(pair: Pair) -> None:
    await pair.until(lambda: pair.has_efs(ef_names()), "EnvoyFilters written")
    leader = await pair.leader()
    follower = next(r for r in pair.replicas if r is not leader)
    counts = await asyncio.gather(*(listeners_from(r.xds_port) for r in pair.replicas))
    assert all(count >= 1 for count in counts)  # every replica serves xDS
    found = await pair.envoyfilters()
    assert inbound_tokens(found) == 10
    assert all(obj["metadata"]["labels"]["manager"] == "Aeraki" for obj in found.values())
    assert {r.method for r in pair.ef_writes(leader)} == {"POST"}
    assert pair.ef_writes(follower) == []
    # The standby never touches EnvoyFilters at all, not even to list them.
    assert [r for r in pair.requests(follower.token) if EF_PATH in r.path] == []
    assert any("/leases/" in r.path for r in pair.requests(follower.token))  # it campaigns
    assert " ERROR " not in pair.logs()


async def test_sigterm_to_the_leader_hands_over_within_the_lease_duration(pair: Pair) -> None:
    await pair.until(lambda: pair.has_efs(ef_names()), "EnvoyFilters written")
    leader = await pair.leader()
    standby = next(r for r in pair.replicas if r is not leader)
    started = time.monotonic()
    code = await asyncio.to_thread(leader.process.stop)
    assert code == 0, leader.log()
    await pair.until(lambda: pair.holder() == standby.identity, "the standby holds the Lease")
    took = time.monotonic() - started
    assert took < LEASE_DURATION, f"hand-over took {took:.2f}s (lease released?)"
    # The new leader writes: an edit reaches the EnvoyFilters from its identity only.
    writes_before = len(pair.ef_writes(leader))
    pair.cluster.apply(metarouter(30))
    await pair.until(
        lambda: pair.has_efs(ef_names(), lambda f: inbound_tokens(f) == 30), "rate limit 30"
    )
    assert [r.method for r in pair.ef_writes(standby)] == ["PUT"]
    assert len(pair.ef_writes(leader)) == writes_before
    assert await listeners_from(standby.xds_port) >= 1


async def test_edits_update_envoyfilters_and_broken_edits_keep_them(pair: Pair) -> None:
    await pair.until(lambda: pair.has_efs(ef_names()), "EnvoyFilters written")
    leader = await pair.leader()

    pair.cluster.apply(metarouter(20))  # MetaRouter edit: the inbound EF is updated
    await pair.until(
        lambda: pair.has_efs(ef_names(), lambda f: inbound_tokens(f) == 20), "rate limit 20"
    )
    pair.cluster.apply(service_entry(port=9091))  # new port: new names, stale ones deleted
    await pair.until(lambda: pair.has_efs(ef_names(9091)), "EnvoyFilters of port 9091")

    writes = len(pair.ef_writes(leader))
    pair.cluster.apply(metarouter(40, broken=True))
    pair.cluster.apply(service_entry(port=9092, broken=True))
    await pair.until(lambda: "config:" in leader.log() and " ERROR " in leader.log(), "reported")
    await asyncio.sleep(QUIET_WINDOW)
    assert len(pair.ef_writes(leader)) == writes, "a broken edit changed EnvoyFilters"
    found = await pair.envoyfilters()
    assert set(found) == ef_names(9091)
    assert inbound_tokens(found, 9091) == 20

    pair.cluster.apply(metarouter(50))  # fixed: writing resumes
    await pair.until(
        lambda: pair.has_efs(ef_names(9091), lambda f: inbound_tokens(f, 9091) == 50),
        "rate limit 50",
    )
    assert all(pair.ef_writes(r) == [] for r in pair.replicas if r is not leader)
