"""Shared test helpers: drain a source into a queue and take events with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aeraki.control.sources.api import ConfigSource, ResourceEvent


class Watch:
    """Drain a source's stream in a task and take from it with deadlines (no fixed sleeps).

    A task, because cancelling a step of an async generator (``wait_for(anext(...))``) ends it.
    """

    def __init__(self, source: ConfigSource, interval: float = 0.02) -> None:
        self.source = source
        self.interval = interval
        self.queue: asyncio.Queue[ResourceEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._drain())
        OPEN_WATCHES.append(self)

    async def _drain(self) -> None:
        async for event in self.source.events():
            self.queue.put_nowait(event)

    async def take(self, count: int, within: float = 5.0) -> list[ResourceEvent]:
        got: list[ResourceEvent] = []
        async with asyncio.timeout(within):
            while len(got) < count:
                got.append(await self.queue.get())
        return got

    async def quiet(self, polls: int = 5) -> list[ResourceEvent]:
        """Events arriving within a few poll intervals (expected: none)."""
        try:
            return await self.take(1, within=self.interval * polls)
        except TimeoutError:
            return []

    async def close(self) -> None:
        if self in OPEN_WATCHES:
            OPEN_WATCHES.remove(self)
        await self.source.close()
        await asyncio.wait_for(self.task, 5)


OPEN_WATCHES: list[Watch] = []


async def close_all_watches() -> None:
    """Teardown: a failed test must not leave sources polling into the next one."""
    for watch in list(OPEN_WATCHES):
        await watch.close()


async def poll_until(
    predicate: Callable[[], bool], within: float = 5.0, step: float = 0.01
) -> None:
    """Wait until ``predicate()`` holds (checked every ``step`` s) or raise TimeoutError."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - state owned by another task, bounded
            await asyncio.sleep(step)
