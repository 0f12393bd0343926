"""State-of-the-world ADS against the in-process server, through a real gRPC stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest
from envoy.config.listener.v3 import listener_pb2

from aeraki.control.xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ProxyStatus,
    Snapshot,
    SnapshotCache,
    StreamKind,
    XdsCallbacks,
    XdsServer,
)
from aeraki.errors import ConfigError
from tests.control.xds.client import AdsClient
from tests.control.xds.conftest import ClientFactory
from tests.control.xds.resources import (
    eds_cluster,
    load_assignment,
    meta_listener,
    route_config,
    tcp_listener,
)


def snapshot(endpoint_port: int = 9001, *, with_l2: bool = True) -> Snapshot:
    msgs = [
        eds_cluster("c1"),
        load_assignment("c1", endpoint_port),
        tcp_listener("l1", 10001, "c1"),
        meta_listener("m1", 10002, "svc_20880"),
        route_config("svc_20880", "c1"),
    ]
    if with_l2:
        msgs.append(tcp_listener("l2", 10003, "c1"))
    return Snapshot.from_messages(*msgs)


def names(resp: object) -> list[str]:
    out = []
    for res in resp.resources:  # type: ignore[attr-defined]
        if res.type_url == LISTENER_TYPE:
            msg = listener_pb2.Listener()
            res.Unpack(msg)
            out.append(msg.name)
        else:
            out.append(res.type_url)
    return out


async def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # a poll interval, bounded by the deadline


async def fetch_all(client: AdsClient, snap: Snapshot) -> None:
    """Subscribe like Envoy does (CDS, EDS, LDS, RDS), ACKing each response."""
    client.subscribe(CLUSTER_TYPE)
    resp = await client.recv()
    assert (resp.type_url, resp.version_info) == (CLUSTER_TYPE, snap.version(CLUSTER_TYPE))
    client.ack(resp)
    client.subscribe(ENDPOINT_TYPE, "c1")
    resp = await client.recv()
    assert (resp.type_url, len(resp.resources)) == (ENDPOINT_TYPE, 1)
    client.ack(resp, ["c1"])
    client.subscribe(LISTENER_TYPE)
    resp = await client.recv()
    assert names(resp) == ["l1", "l2", "m1"]
    client.ack(resp)
    client.subscribe(ROUTE_TYPE, "svc_20880")
    resp = await client.recv()
    assert resp.type_url == ROUTE_TYPE
    client.ack(resp, ["svc_20880"])
    assert await client.barrier() == []


async def test_initial_fetch_and_acks_are_recorded(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    snap = snapshot()
    cache.set_snapshot("n1", snap)
    client = await ads_client("n1")
    await fetch_all(client, snap)
    [proxy] = xds_server.proxies()
    assert (proxy.node_id, proxy.kind, proxy.node_key) == ("n1", StreamKind.SOTW, "n1")
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert proxy.acked_version(type_url) == snap.version(type_url)
    assert proxy.types[ENDPOINT_TYPE].subscribed == ("c1",)
    assert proxy.types[LISTENER_TYPE].wildcard
    assert xds_server.stats.nacks_total == 0
    assert xds_server.stats.acks_total >= 4


async def test_stream_waits_for_its_snapshot(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    client = await ads_client("late")
    client.subscribe(CLUSTER_TYPE)
    await wait_for(
        lambda: [p.subscribed_types for p in xds_server.proxies()] == [(CLUSTER_TYPE,)],
        "the subscription to be seen",
    )
    assert xds_server.stats.responses_total == 0  # no snapshot yet: nothing answered
    cache.set_snapshot("late", snapshot())
    resp = await client.recv()
    assert resp.type_url == CLUSTER_TYPE


async def test_nack_keeps_state_records_reason_and_is_not_resent(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    client = await ads_client("n1")
    client.subscribe(LISTENER_TYPE)
    first = await client.recv()
    client.ack(first)
    cache.set_snapshot("n1", snapshot(with_l2=False))
    second = (await client.barrier())[0]
    client.nack(second, "bad listener l1: address in use", previous_version=first.version_info)
    assert await client.barrier() == []  # the same version is not pushed again
    [proxy] = xds_server.proxies()
    status = proxy.types[LISTENER_TYPE]
    assert status.last_nack_reason == "bad listener l1: address in use"
    assert status.last_nack_version == second.version_info
    assert status.acked_version == first.version_info  # the proxy still runs the old one
    assert xds_server.stats.nacks_total == 1
    cache.set_snapshot("n1", snapshot())  # a new snapshot is pushed again
    [third] = await client.barrier()
    assert names(third) == ["l1", "l2", "m1"]


async def test_change_pushes_only_changed_types_and_identical_content_nothing(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    snap = snapshot()
    cache.set_snapshot("n1", snap)
    client = await ads_client("n1")
    await fetch_all(client, snap)
    assert cache.set_snapshot("n1", snapshot()) is False
    assert await client.barrier() == []
    changed = snapshot(endpoint_port=9002)
    cache.set_snapshot("n1", changed)
    [resp] = await client.barrier()
    assert (resp.type_url, resp.version_info) == (ENDPOINT_TYPE, changed.version(ENDPOINT_TYPE))


async def test_push_order_is_cds_eds_lds_rds(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    client = await ads_client("n1")
    await fetch_all(client, snapshot())
    new = Snapshot.from_messages(
        eds_cluster("c1"),
        eds_cluster("c2"),
        load_assignment("c1", 9009),
        load_assignment("c2", 9010),
        tcp_listener("l1", 10001, "c2"),
        meta_listener("m1", 10002, "svc_20880"),
        route_config("svc_20880", "c2"),
    )
    cache.set_snapshot("n1", new)
    order = [r.type_url for r in await client.barrier()]
    assert order == [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]


async def test_removed_listener_is_absent_from_the_next_response(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    client = await ads_client("n1")
    client.subscribe(LISTENER_TYPE)
    client.ack(await client.recv())
    cache.set_snapshot("n1", snapshot(with_l2=False))
    [resp] = await client.barrier()
    assert names(resp) == ["l1", "m1"]


async def test_one_response_in_flight_per_type(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    client = await ads_client("n1")
    client.subscribe(LISTENER_TYPE)
    first = await client.recv()
    cache.set_snapshot("n1", snapshot(with_l2=False))
    cache.set_snapshot("n1", snapshot(endpoint_port=1, with_l2=False))
    assert await client.barrier() == []  # not ACKed yet: changes wait
    client.ack(first)
    [resp] = await client.barrier()
    assert names(resp) == ["l1", "m1"]


async def test_stale_nonce_is_ignored(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    client = await ads_client("n1")
    client.subscribe(LISTENER_TYPE)
    resp = await client.recv()
    client.send(type_url=LISTENER_TYPE, response_nonce="no-such-nonce", version_info="x")
    assert await client.barrier() == []
    assert xds_server.stats.stale_total == 1
    assert xds_server.proxies()[0].acked_version(LISTENER_TYPE) == ""
    client.ack(resp)


async def test_nodes_get_their_own_snapshots(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("a", Snapshot.from_messages(tcp_listener("for-a", 1, "c")))
    cache.set_snapshot("b", Snapshot.from_messages(tcp_listener("for-b", 2, "c")))
    client_a, client_b = await ads_client("a"), await ads_client("b")
    client_a.subscribe(LISTENER_TYPE)
    client_b.subscribe(LISTENER_TYPE)
    assert names(await client_a.recv()) == ["for-a"]
    assert names(await client_b.recv()) == ["for-b"]


async def test_group_key_shares_one_snapshot() -> None:
    cache = SnapshotCache(lambda node: node.cluster)
    server = XdsServer(cache)
    await server.start("127.0.0.1", 0)
    try:
        cache.set_snapshot("gw", Snapshot.from_messages(tcp_listener("shared", 1, "c")))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            clients = [AdsClient(channel, f"pod-{i}", cluster="gw") for i in range(2)]
            for client in clients:
                client.subscribe(LISTENER_TYPE)
                assert names(await client.recv()) == ["shared"]
            assert {p.node_key for p in server.proxies()} == {"gw"}
            for client in clients:
                await client.close()
    finally:
        await server.stop(None)


async def test_reconnection_gets_the_current_state(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    first = await ads_client("n1")
    first.subscribe(LISTENER_TYPE)
    first.ack(await first.recv())
    await first.close()
    await wait_for(lambda: not xds_server.proxies(), "the closed stream to be forgotten")
    cache.set_snapshot("n1", snapshot(with_l2=False))
    again = await ads_client("n1")
    again.subscribe(LISTENER_TYPE, version_info="old-version")
    assert names(await again.recv()) == ["l1", "m1"]


async def test_inconsistent_snapshot_is_refused_and_nothing_is_pushed(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("n1", snapshot())
    client = await ads_client("n1")
    client.subscribe(LISTENER_TYPE)
    client.ack(await client.recv())
    bad = Snapshot.from_messages(meta_listener("m1", 10002, "gone_20880"))
    with pytest.raises(ConfigError, match="gone_20880") as info:
        cache.set_snapshot("n1", bad)
    assert info.value.path.endswith("rds.route_config_name")
    assert await client.barrier() == []


class Recorder(XdsCallbacks):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_stream_open(self, status: ProxyStatus) -> None:
        self.events.append(("open", status.node_id))

    def on_stream_closed(self, status: ProxyStatus) -> None:
        self.events.append(("closed", status.node_id))

    def on_ack(self, status: ProxyStatus, type_url: str, version: str) -> None:
        self.events.append(("ack", type_url, version))

    def on_nack(self, status: ProxyStatus, type_url: str, version: str, reason: str) -> None:
        self.events.append(("nack", type_url, version, reason))


async def test_callbacks_see_open_ack_nack_and_close(cache: SnapshotCache) -> None:
    recorder = Recorder()
    server = XdsServer(cache, recorder)
    await server.start("127.0.0.1", 0)
    snap = snapshot()
    cache.set_snapshot("n1", snap)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            client = AdsClient(channel, "n1")
            client.subscribe(LISTENER_TYPE)
            first = await client.recv()
            client.ack(first)
            cache.set_snapshot("n1", snapshot(with_l2=False))
            [second] = await client.barrier()
            client.nack(second, "nope")
            await client.barrier()
            await client.close()
            await wait_for(lambda: not server.proxies(), "the stream to close")
    finally:
        await server.stop(None)
    version = snap.version(LISTENER_TYPE)
    assert [e for e in recorder.events if e[1] == LISTENER_TYPE or e[0] != "ack"] == [
        ("open", "n1"),
        ("ack", LISTENER_TYPE, version),
        ("nack", LISTENER_TYPE, second.version_info, "nope"),
        ("closed", "n1"),
    ]
