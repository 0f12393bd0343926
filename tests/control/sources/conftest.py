"""Fixtures: a fake API server on 127.0.0.1 with Aeraki's watched kinds, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aeraki.control.sources.api import DEFAULT_KINDS
from aeraki.control.sources.kubeclient import ClusterConfig, KubeClient
from tests.control.sources.fake_apiserver import FakeApiServer
from tests.control.sources.helpers import close_all_watches


@pytest.fixture(autouse=True)
async def _close_watches() -> AsyncIterator[None]:
    yield
    await close_all_watches()


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    for k in DEFAULT_KINDS:
        server.register(k.group, k.version, k.kind, k.plural, k.namespaced)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def kube(apiserver: FakeApiServer) -> AsyncIterator[KubeClient]:
    client = KubeClient(ClusterConfig(server=apiserver.url, token="t0ken"), request_timeout=5.0)
    yield client
    await close_all_watches()  # before the client closes under the sources' feet
    await client.close()
