"""The Lease-elected EnvoyFilter writer and its wiring into the control plane and the CLI.

In process, against the fake API server (no real cluster runs here). The elector's algorithm
itself is pinned by tests/control/sources/test_leader.py; these tests pin what was wired
around it: who writes, when the runtime offers the config, what stopping does, and the
settings. tests/integration/test_control_writer.py runs two real replica processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from aeraki.control import cli
from aeraki.control.envoyfilter.reconcile import list_managed
from aeraki.control.leadership import (
    DEFAULT_LEASE_NAMESPACE,
    EnvoyFilterLeader,
    LeaseConfig,
    default_identity,
    default_namespace,
)
from aeraki.control.model import ConfigSnapshot
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from aeraki.control.sources.kubeclient import ClusterConfig, KubeClient
from aeraki.control.validation import load_config
from tests.control.sources.fake_apiserver import FakeApiServer
from tests.control.sources.helpers import poll_until
from tests.control.test_runtime import FakeTranslator
from tests.integration.test_control_writer import ef_names, metarouter, service_entry

LEASE_NS = "aeraki-system"
LEASE = ("coordination.k8s.io/v1", "Lease", LEASE_NS, "aeraki-controller")
SHORT: dict[str, float] = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}


class FakeClock:
    """Virtual time for the elector: each sleep advances it (and yields to the loop)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0.001)


def write_manifests(root: Path, *docs: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mesh.yaml").write_text(yaml.safe_dump_all(docs))


def config_of(tmp_path: Path, *docs: dict[str, Any]) -> ConfigSnapshot:
    write_manifests(tmp_path / "cfg", *docs)
    config = load_config([tmp_path / "cfg"])
    assert not config.errors, [p.format() for p in config.errors]
    return config


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    server.register("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters")
    await server.start()
    yield server
    await server.stop()


class Clients:
    """One KubeClient per token: the fake's ``auth_headers`` then say who sent what."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.clients: list[KubeClient] = []

    def __call__(self, token: str) -> KubeClient:
        client = KubeClient(ClusterConfig(server=self.server.url, token=token), request_timeout=5)
        self.clients.append(client)
        return client

    def ef_requests(self, token: str, writes_only: bool = False) -> list[tuple[str, str]]:
        pairs = zip(self.server.requests, self.server.auth_headers, strict=True)
        return [
            (m, p)
            for (m, p, _), auth in pairs
            if auth == f"Bearer {token}"
            and "/envoyfilters" in p
            and (not writes_only or m in ("POST", "PUT", "DELETE"))
        ]

    async def names(self) -> set[str]:
        return {f"{ns}/{n}" for ns, n in await list_managed(self("observer"))}


@pytest.fixture
async def clients(apiserver: FakeApiServer) -> AsyncIterator[Clients]:
    made = Clients(apiserver)
    yield made
    for client in made.clients:
        await client.close()


def leader(client: KubeClient, identity: str, **options: Any) -> EnvoyFilterLeader:
    timing = {k: options.pop(k) for k in list(SHORT) if k in options}
    lease = LeaseConfig(namespace=LEASE_NS, identity=identity, **(SHORT | timing))
    options.setdefault("quiet", 0.01)
    options.setdefault("max_delay", 0.05)
    return EnvoyFilterLeader(client, lease, **options)


def holder(server: FakeApiServer) -> str:
    lease = server.get(*LEASE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


# --------------------------------------------------------------------------- settings


def test_identity_and_namespace_defaults(tmp_path: Path) -> None:
    assert default_identity({"POD_NAME": "aeraki-7d9f-x2"}) == "aeraki-7d9f-x2"
    mine = default_identity({})
    assert mine.endswith(f"_{os.getpid()}")
    (tmp_path / "namespace").write_text("mesh-control\n")
    assert default_namespace({"POD_NAMESPACE": "ns1"}, tmp_path) == "ns1"
    assert default_namespace({}, tmp_path) == "mesh-control"
    assert default_namespace({}, tmp_path / "absent") == DEFAULT_LEASE_NAMESPACE


@pytest.mark.parametrize(
    ("lease", "renew", "retry"), [(2.0, 2.0, 0.2), (2.0, 1.0, 0.9), (2.0, 1.0, 0.0)]
)
def test_lease_timing_must_be_ordered(lease: float, renew: float, retry: float) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        LeaseConfig(lease_duration=lease, renew_deadline=renew, retry_period=retry)


def _parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, cli.Command]]:
    parser = argparse.ArgumentParser(prog="aeraki")
    commands = cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv), commands


def test_control_flags_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("POD_NAME", "POD_NAMESPACE", "AERAKI_LEASE_DURATION"):
        monkeypatch.delenv(var, raising=False)
    args, _ = _parse(["control", "--kubernetes"])
    assert (args.lease_name, args.lease_namespace, args.leader_identity) == (
        "aeraki-controller",
        "",
        "",
    )
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (15.0, 10.0, 2.0)
    assert (args.no_envoyfilters, args.mesh_config) == (False, "")
    monkeypatch.setenv("POD_NAME", "aeraki-0")
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    monkeypatch.setenv("AERAKI_LEASE_DURATION", "4")
    argv = ["--renew-deadline", "3", "--retry-period", "0.5", "--no-envoyfilters"]
    args, _ = _parse(["control", "--kubernetes", *argv])
    assert (args.leader_identity, args.lease_namespace) == ("aeraki-0", "ops")
    assert (args.lease_duration, args.retry_period, args.no_envoyfilters) == (4.0, 0.5, True)
    lease = cli._lease(args)
    assert (lease.identity, lease.namespace, lease.name) == ("aeraki-0", "ops", "aeraki-controller")
    # every tunable is declared once
    assert not set(cli.LEADER_SETTINGS) & set(cli.SETTINGS)


def test_control_refuses_bad_lease_timing_and_mesh_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, commands = _parse(["control", "--kubernetes", "--renew-deadline", "20"])
    assert commands["control"](args) == 2
    assert "renew deadline" in capsys.readouterr().err
    args, commands = _parse(["control", "--kubernetes", "--mesh-config", str(tmp_path / "no")])
    assert commands["control"](args) == 2
    bad = tmp_path / "mesh.yaml"
    bad.write_text("accessLogEncoding: XML\n")
    args, commands = _parse(["control", "--kubernetes", "--mesh-config", str(bad)])
    assert commands["control"](args) == 2
    assert "accessLogEncoding" in capsys.readouterr().err


# --------------------------------------------------------------------------- the role


async def test_only_the_lease_holder_writes_and_the_standby_takes_over_on_stop(
    tmp_path: Path, apiserver: FakeApiServer, clients: Clients
) -> None:
    config = config_of(tmp_path, service_entry(), metarouter(10))
    a = leader(clients("a"), "a")
    await a.start()
    await poll_until(lambda: a.is_leader)
    b = leader(clients("b"), "b")
    await b.start()
    for role in (a, b):  # the runtime offers every push to every replica's role
        role.offer(config)
    await poll_until(lambda: len(clients.ef_requests("a", writes_only=True)) == 2)
    assert await clients.names() == ef_names()
    assert clients.ef_requests("b") == []  # the standby never touches EnvoyFilters
    assert (a.terms, b.terms, holder(apiserver)) == (1, 0, "a")

    await a.stop()  # SIGTERM path: cancel → release the Lease
    assert holder(apiserver) in ("", "b")
    await poll_until(lambda: b.writer is not None, within=SHORT["lease_duration"])
    edited = config_of(tmp_path, service_entry(port=9091), metarouter(10))
    b.offer(edited)
    a.offer(edited)  # a stopped role ignores offers
    await poll_until(lambda: len(clients.ef_requests("b", writes_only=True)) == 4)
    assert await clients.names() == ef_names(9091)
    assert len(clients.ef_requests("a", writes_only=True)) == 2
    await b.stop()
    assert holder(apiserver) == ""


async def test_losing_the_lease_stops_the_writer(
    tmp_path: Path, apiserver: FakeApiServer, clients: Clients
) -> None:
    a = leader(clients("a"), "a")
    a.offer(config_of(tmp_path, service_entry(), metarouter(10)))
    await a.start()
    await poll_until(lambda: len(clients.ef_requests("a", writes_only=True)) == 2)
    lease = apiserver.get(*LEASE)
    assert lease is not None
    # Another replica took the Lease (e.g. ours was partitioned away long enough).
    apiserver.update(lease | {"spec": lease["spec"] | {"holderIdentity": "usurper"}})
    await poll_until(lambda: not a.is_leader)
    assert a.writer is None
    writes = len(clients.ef_requests("a"))
    a.offer(config_of(tmp_path, service_entry(port=9095), metarouter(10)))
    await asyncio.sleep(0.3)  # > the writer's debounce: nothing may be written
    assert len(clients.ef_requests("a")) == writes
    assert await clients.names() == ef_names()
    await a.stop()
    assert holder(apiserver) == "usurper"  # not ours: not released


async def test_a_crashed_leaders_lease_is_taken_after_it_expires(
    tmp_path: Path, apiserver: FakeApiServer, clients: Clients
) -> None:
    """No release (the holder crashed): the standby waits ``lease_duration`` on its own
    clock (virtual here) from when it saw the record, then leads and writes."""
    spec = {"holderIdentity": "crashed", "leaseDurationSeconds": 15, "leaseTransitions": 0}
    apiserver.create(
        {
            "apiVersion": LEASE[0],
            "kind": "Lease",
            "metadata": {"name": LEASE[3], "namespace": LEASE_NS},
            "spec": spec,
        }
    )
    clock = FakeClock()
    b = leader(
        clients("b"),
        "b",
        lease_duration=15.0,
        renew_deadline=10.0,
        retry_period=2.0,
        clock=clock,
    )
    b.offer(config_of(tmp_path, service_entry(), metarouter(10)))
    start = clock.t
    await b.start()
    await poll_until(lambda: b.is_leader, within=5)
    assert clock.t - start >= 15.0
    await poll_until(lambda: len(clients.ef_requests("b", writes_only=True)) == 2)
    await b.stop()


async def test_without_the_envoyfilter_kind_the_leader_waits_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeApiServer()  # no EnvoyFilter kind: Istio is not installed
    await server.start()
    client = KubeClient(ClusterConfig(server=server.url, token="a"), request_timeout=5)
    a = leader(client, "a", probe_interval=0.05)
    try:
        a.offer(config_of(tmp_path, service_entry(), metarouter(10)))
        await a.start()
        await poll_until(lambda: a.is_leader)
        probes = "/apis/networking.istio.io/v1alpha3/envoyfilters"
        await poll_until(lambda: sum(p == probes for _, p, _ in server.requests) >= 3)
        assert a.writer is None
        warnings = [r for r in caplog.records if "does not serve EnvoyFilters" in r.message]
        assert len(warnings) == 1
        server.register("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters")
        await poll_until(
            lambda: any(m == "POST" and "/envoyfilters" in p for m, p, _ in server.requests)
        )
        assert a.writer is not None
    finally:
        await a.stop()
        await client.close()
        await server.stop()


# --------------------------------------------------------------------------- the runtime


class RecordingRole:
    """A Role that records what the runtime does with it."""

    def __init__(self, plane: list[ControlPlane]) -> None:
        self.plane = plane
        self.events: list[str] = []
        self.offers: list[ConfigSnapshot] = []

    async def start(self) -> None:
        self.events.append(f"start serving={self.plane[0].server.port > 0}")

    async def stop(self) -> None:
        self.events.append("stop")

    def offer(self, config: ConfigSnapshot) -> None:
        self.offers.append(config)


async def test_runtime_offers_the_last_good_config_after_each_push(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    write_manifests(root, service_entry(), metarouter(10))
    holder_: list[ControlPlane] = []
    role = RecordingRole(holder_)
    source = FileSource(root, interval=0.05)
    plane = ControlPlane(
        source, xds_port=0, translator=FakeTranslator(), node_info=lambda n: n, roles=[role]
    )
    holder_.append(plane)
    await plane.start()
    try:
        assert role.events == ["start serving=True"]
        await plane.wait_until(lambda: len(role.offers) == 1)
        assert role.offers[0] is plane.config  # after the sync, not before
        assert [r.meta.name for r in role.offers[0].meta_routers] == ["thrift"]

        (root / "mesh.yaml").write_text(  # a broken MetaRouter: the last good one is offered
            yaml.safe_dump_all([service_entry(), metarouter(20, broken=True)])
        )
        await plane.wait_until(lambda: len(role.offers) == 2)
        offered = role.offers[1]
        assert offered.has_errors  # the problem is reported…
        (router,) = offered.meta_routers  # …and the resource is still in force
        assert router.spec == role.offers[0].meta_routers[0].spec
    finally:
        await plane.stop()
    assert role.events == ["start serving=True", "stop"]


async def test_role_stops_before_the_sources_close(tmp_path: Path) -> None:
    order: list[str] = []

    class Source(FileSource):
        async def close(self) -> None:
            order.append("source closed")
            await super().close()

    class Role:
        async def start(self) -> None:
            order.append("role started")

        async def stop(self) -> None:
            order.append("role stopped")

        def offer(self, config: ConfigSnapshot) -> None:
            pass

    plane = ControlPlane(
        Source(tmp_path, interval=0.05),
        xds_port=0,
        translator=FakeTranslator(),
        node_info=lambda n: n,
        roles=[Role()],
    )
    await plane.start()
    await plane.stop()
    assert order == ["role started", "role stopped", "source closed"]
