"""Fixtures that start real peers on 127.0.0.1 (see tests/integration/peers/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers.dubbo import DubboProvider, start_dubbo_provider
from tests.integration.peers.envoy import Envoy, envoy_binary, start_envoy
from tests.integration.peers.procs import ProcessGroup
from tests.integration.peers.thrift_peer import ThriftServer, ThriftServerCache, start_thrift_server

ThriftServerFactory = Callable[..., ThriftServer]
EnvoyFactory = Callable[..., Envoy]


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


@pytest.fixture(scope="session")
def dubbo_provider(session_peers: ProcessGroup) -> DubboProvider:
    """A shared Java Dubbo provider labelled "v1" (started once per session)."""
    return start_dubbo_provider(session_peers, label="v1")


@pytest.fixture
def dubbo_provider_factory(peers: ProcessGroup) -> Callable[[str], DubboProvider]:
    """Fresh Java providers owned by this test: ``factory("v2")``."""

    def make(label: str = "v1") -> DubboProvider:
        return start_dubbo_provider(peers, label=label)

    return make


@pytest.fixture
def envoy_factory(peers: ProcessGroup, tmp_path: Path) -> EnvoyFactory:
    """Start real Envoy: ``factory(bootstrap, port_names=("listener",))`` -> :class:`Envoy`.

    Fails (does not skip) when the Envoy binary is not installed: run ``make setup``.
    """
    if envoy_binary() is None:
        pytest.fail("Envoy binary not installed; run `make setup`")

    def make(bootstrap: str | Mapping[str, Any], port_names: tuple[str, ...] = ()) -> Envoy:
        return start_envoy(peers, bootstrap, port_names=port_names, work_dir=tmp_path / "envoy")

    return make
