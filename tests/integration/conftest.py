"""Fixtures that start real peers on 127.0.0.1 (see tests/integration/peers/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.peers.procs import ProcessGroup
from tests.integration.peers.thrift_peer import ThriftServer, ThriftServerCache, start_thrift_server

ThriftServerFactory = Callable[..., ThriftServer]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is an integration test (uses real peers)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Per-test process group: everything spawned through it is stopped (by PID) at teardown."""
    with ProcessGroup(tmp_path_factory.mktemp("peer-logs")) as group:
        yield group


@pytest.fixture(scope="session")
def session_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Session-wide process group for peers shared between tests (stopped at session end)."""
    with ProcessGroup(tmp_path_factory.mktemp("session-peer-logs")) as group:
        yield group


@pytest.fixture(scope="session")
def thrift_servers(session_peers: ProcessGroup) -> ThriftServerCache:
    """Shared Echo servers: ``thrift_servers.get("apache", "header", "compact", "v2")``."""
    return ThriftServerCache(session_peers)


@pytest.fixture
def thrift_server_factory(peers: ProcessGroup) -> ThriftServerFactory:
    """Fresh Echo servers owned by this test: ``factory(impl, transport, protocol, label="v1")``."""

    def make(impl: str, transport: str, protocol: str, label: str = "v1") -> ThriftServer:
        return start_thrift_server(peers, impl, transport, protocol, label=label)

    return make
