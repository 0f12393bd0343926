"""Generic fixtures shared by every test suite (unit and integration)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel reported free just now."""
    return _free_port()


@pytest.fixture
def free_port_factory() -> Callable[[], int]:
    """Call it to get another free 127.0.0.1 port (distinct from the ones it gave before)."""
    given: set[int] = set()

    def make() -> int:
        for _ in range(100):
            port = _free_port()
            if port not in given:
                given.add(port)
                return port
        raise RuntimeError("no fresh free port after 100 tries")

    return make
