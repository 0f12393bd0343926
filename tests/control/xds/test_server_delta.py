"""Incremental (delta) ADS against the in-process server, through a real gRPC stream."""

from __future__ import annotations

from aeraki.control.xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    Snapshot,
    SnapshotCache,
    StreamKind,
    XdsServer,
)
from tests.control.xds.client import AdsClient
from tests.control.xds.conftest import ClientFactory
from tests.control.xds.resources import eds_cluster, load_assignment, tcp_listener


def snapshot(endpoint_port: int = 9001, listeners: tuple[str, ...] = ("l1", "l2")) -> Snapshot:
    return Snapshot.from_messages(
        eds_cluster("c1"),
        eds_cluster("c2"),
        load_assignment("c1", endpoint_port),
        load_assignment("c2", 9100),
        *(tcp_listener(name, 10000 + i, "c1") for i, name in enumerate(listeners)),
    )


def versions(resp: object) -> dict[str, str]:
    return {r.name: r.version for r in resp.resources}  # type: ignore[attr-defined]


async def subscribe_all(client: AdsClient, snap: Snapshot) -> None:
    client.subscribe(CLUSTER_TYPE)
    resp = await client.recv()
    assert resp.system_version_info == snap.version(CLUSTER_TYPE)
    assert set(versions(resp)) == {"c1", "c2"}
    client.ack(resp)
    client.subscribe(ENDPOINT_TYPE, "c1", "c2")
    resp = await client.recv()
    assert versions(resp) == {n: r.version for n, r in snap.resources(ENDPOINT_TYPE).items()}
    client.ack(resp)
    client.subscribe(LISTENER_TYPE)
    resp = await client.recv()
    assert set(versions(resp)) == {"l1", "l2"}
    client.ack(resp)
    assert await client.barrier() == []


async def test_initial_fetch_and_acks(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    snap = snapshot()
    cache.set_snapshot("d1", snap)
    client = await ads_client("d1", delta=True)
    await subscribe_all(client, snap)
    [proxy] = xds_server.proxies()
    assert proxy.kind is StreamKind.DELTA
    assert proxy.types[CLUSTER_TYPE].wildcard
    assert proxy.types[ENDPOINT_TYPE].subscribed == ("c1", "c2")
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE):
        assert proxy.acked_version(type_url) == snap.version(type_url)


async def test_change_sends_only_the_changed_resource(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("d1", snapshot())
    client = await ads_client("d1", delta=True)
    await subscribe_all(client, snapshot())
    changed = snapshot(endpoint_port=9002)
    cache.set_snapshot("d1", changed)
    [resp] = await client.barrier()
    assert resp.type_url == ENDPOINT_TYPE
    assert versions(resp) == {"c1": changed.resources(ENDPOINT_TYPE)["c1"].version}
    assert list(resp.removed_resources) == []


async def test_removal_is_named_in_removed_resources(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("d1", snapshot())
    client = await ads_client("d1", delta=True)
    await subscribe_all(client, snapshot())
    cache.set_snapshot("d1", snapshot(listeners=("l1",)))
    [resp] = await client.barrier()
    assert (resp.type_url, list(resp.resources), list(resp.removed_resources)) == (
        LISTENER_TYPE,
        [],
        ["l2"],
    )


async def test_nack_is_recorded_and_not_resent(
    cache: SnapshotCache, xds_server: XdsServer, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("d1", snapshot())
    client = await ads_client("d1", delta=True)
    client.subscribe(LISTENER_TYPE)
    first = await client.recv()
    client.ack(first)
    cache.set_snapshot("d1", snapshot(listeners=("l1", "l2", "l3")))
    [second] = await client.barrier()
    assert set(versions(second)) == {"l3"}
    client.nack(second, "l3: cannot bind")
    assert await client.barrier() == []
    status = xds_server.proxies()[0].types[LISTENER_TYPE]
    assert (status.nacks, status.last_nack_reason) == (1, "l3: cannot bind")
    assert status.acked_version == first.system_version_info


async def test_reconnect_with_initial_versions_skips_what_the_client_has(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    old = snapshot()
    cache.set_snapshot("d1", snapshot(endpoint_port=9002, listeners=("l1", "l3")))
    client = await ads_client("d1", delta=True)
    known = {n: r.version for n, r in old.resources(LISTENER_TYPE).items()}
    client.subscribe(LISTENER_TYPE, initial_resource_versions=known)
    resp = await client.recv()
    assert set(versions(resp)) == {"l3"}  # l1 unchanged: not resent
    assert list(resp.removed_resources) == ["l2"]
    client.ack(resp)
    client.subscribe(
        ENDPOINT_TYPE,
        "c2",
        initial_resource_versions={"c2": old.resources(ENDPOINT_TYPE)["c2"].version},
    )
    resp = await client.recv()  # the first request is always answered, even with nothing new
    assert (list(resp.resources), list(resp.removed_resources)) == ([], [])


async def test_unsubscribe_and_nonexistent_names(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("d1", snapshot())
    client = await ads_client("d1", delta=True)
    client.subscribe(ENDPOINT_TYPE, "c1", "nope")
    resp = await client.recv()
    assert set(versions(resp)) == {"c1"}
    assert list(resp.removed_resources) == ["nope"]  # said once, so the client stops waiting
    client.ack(resp)
    client.send(type_url=ENDPOINT_TYPE, resource_names_unsubscribe=["c1"])
    assert await client.barrier() == []  # the server has seen the unsubscription
    cache.set_snapshot("d1", snapshot(endpoint_port=9003))
    assert await client.barrier() == []  # c1 changed but is no longer subscribed
    client.subscribe(ENDPOINT_TYPE, "c1")
    resp = await client.recv()
    assert set(versions(resp)) == {"c1"}


async def test_explicit_wildcard_and_per_node_scoping(
    cache: SnapshotCache, ads_client: ClientFactory
) -> None:
    cache.set_snapshot("a", Snapshot.from_messages(tcp_listener("for-a", 1, "c")))
    cache.set_snapshot("b", Snapshot.from_messages(tcp_listener("for-b", 2, "c")))
    client_a = await ads_client("a", delta=True)
    client_b = await ads_client("b", delta=True)
    client_a.subscribe(LISTENER_TYPE, "*")
    client_b.subscribe(LISTENER_TYPE)
    assert set(versions(await client_a.recv())) == {"for-a"}
    assert set(versions(await client_b.recv())) == {"for-b"}
