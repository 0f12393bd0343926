"""Fixtures: an in-process xDS server on 127.0.0.1:0 and ADS clients connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from aeraki.control.xds import SnapshotCache, XdsServer
from tests.control.xds.client import AdsClient

ClientFactory = Callable[..., Awaitable[AdsClient]]


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
async def xds_server(cache: SnapshotCache) -> AsyncIterator[XdsServer]:
    server = XdsServer(cache)
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop(None)


@pytest.fixture
async def ads_client(xds_server: XdsServer) -> AsyncIterator[ClientFactory]:
    """``await ads_client("node-1", delta=False)`` -> a connected :class:`AdsClient`."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{xds_server.port}")
    clients: list[AdsClient] = []

    async def make(node_id: str, *, delta: bool = False, cluster: str = "test") -> AdsClient:
        client = AdsClient(channel, node_id, delta=delta, cluster=cluster)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
    await channel.close()
