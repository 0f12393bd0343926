"""Clusters: static host sets, STRICT_DNS resolution, host-set swaps."""

from __future__ import annotations

from aeraki.proxy.config import ClusterConfig, DiscoveryType, EndpointConfig, SocketAddress
from aeraki.proxy.upstream.cluster import Cluster, ClusterManager
from aeraki.proxy.upstream.host import Host
from aeraki.testing.fake_codec import FakeCodec


def _config(host: str, discovery: DiscoveryType) -> ClusterConfig:
    return ClusterConfig(
        name="c",
        discovery=discovery,
        endpoints=(EndpointConfig(address=SocketAddress(host, 9000), weight=3),),
    )


def test_static_cluster_has_its_endpoints_at_once() -> None:
    cluster = Cluster(_config("127.0.0.1", DiscoveryType.STATIC))
    assert [(h.key, h.weight) for h in cluster.hosts] == [("127.0.0.1:9000", 3)]
    assert cluster.lb.choose(None) is cluster.hosts[0]


async def test_strict_dns_cluster_resolves_names_before_serving() -> None:
    manager = ClusterManager([_config("localhost", DiscoveryType.STRICT_DNS)])
    cluster = manager.get("c")
    assert cluster is not None
    assert cluster.hosts == []  # nothing until resolved
    await manager.start()
    try:
        keys = {h.key for h in cluster.hosts}
        assert "127.0.0.1:9000" in keys
        assert all(h.weight == 3 for h in cluster.hosts)
        assert cluster.lb.choose(None) in cluster.hosts
    finally:
        manager.close()


async def test_unresolvable_name_leaves_cluster_empty_not_broken() -> None:
    manager = ClusterManager([_config("no-such-host.invalid", DiscoveryType.STRICT_DNS)])
    await manager.start()
    try:
        cluster = manager.get("c")
        assert cluster is not None
        assert cluster.hosts == []
        assert cluster.lb.choose(None) is None
    finally:
        manager.close()


async def test_host_swap_keeps_surviving_hosts_and_closes_pools_of_removed_ones() -> None:
    cluster = Cluster(
        ClusterConfig(
            name="c",
            endpoints=(
                EndpointConfig(address=SocketAddress("127.0.0.1", 1)),
                EndpointConfig(address=SocketAddress("127.0.0.1", 2)),
            ),
        )
    )
    kept, dropped = cluster.hosts
    kept.active_requests = 4
    pool_kept = cluster.pool_for(kept, FakeCodec, multiplexed=False)
    pool_dropped = cluster.pool_for(dropped, FakeCodec, multiplexed=False)
    cluster.set_hosts([Host(SocketAddress("127.0.0.1", 1)), Host(SocketAddress("127.0.0.1", 3))])
    assert cluster.hosts[0] is kept  # live counters survive the swap
    assert kept.active_requests == 4
    assert [h.key for h in cluster.hosts] == ["127.0.0.1:1", "127.0.0.1:3"]
    assert pool_dropped.is_closed
    assert not pool_kept.is_closed
    assert cluster.pools == [pool_kept]
