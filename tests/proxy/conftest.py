"""Run every async proxy test on both event loops the proxy supports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import uvloop


def pytest_asyncio_loop_factories() -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio hook: each async test runs once per loop factory."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
