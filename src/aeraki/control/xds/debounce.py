"""Debounce: merge bursts of change events into one push.

The algorithm is Aeraki's and Istio's (reference §13.4; istio ``pilot/pkg/xds/discovery.go``
``debounce``): on each event remember ``last = now`` (and ``first = now`` when nothing was
pending); fire when ``now - last >= quiet`` (the burst is over) or ``now - first >= max_delay``
(a steady trickle of events must not starve pushes forever). Defaults are sized for one machine
(100 ms / 1 s) rather than Aeraki's cluster-wide 1 s / 10 s.

Two layers, so the timing logic is tested with a fake clock and no sleeping:

- :class:`Debouncer` — pure state: ``add(event, now)``, ``due_at()``, ``take(now)``.
- :class:`DebouncedPusher` — the asyncio driver: ``notify(event)`` never blocks a producer (the
  event is merged into the pending one — Aeraki's 100-slot channel could stall RDS, §13.4 quirk);
  a push that raises is retried with the same merged event, at most ``max_retries`` times in a
  row, then dropped until the next event (Aeraki: 3 retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_QUIET",
    "DebouncedPusher",
    "Debouncer",
    "union",
]

log = logging.getLogger(__name__)

E = TypeVar("E")

#: Quiet period: a burst of edits (an editor saving, a kubectl apply of many objects) lands
#: within tens of milliseconds; 100 ms catches it without a user noticing the delay.
DEFAULT_QUIET = 0.1
#: Longest a pending change waits while events keep coming.
DEFAULT_MAX_DELAY = 1.0
#: Consecutive failed pushes retried before waiting for the next event (Aeraki's value).
DEFAULT_MAX_RETRIES = 3


def union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    """Merge function for events that are sets of changed keys."""
    return a | b


@dataclass(slots=True)
class Debouncer(Generic[E]):
    """Pure debounce state; the caller supplies the time.

    Args:
        merge: combines the pending event with a new one (e.g. :func:`union`).
        quiet: seconds without events after which the pending event is due.
        max_delay: seconds after the first pending event at which it is due regardless.
    """

    merge: Callable[[E, E], E]
    quiet: float = DEFAULT_QUIET
    max_delay: float = DEFAULT_MAX_DELAY
    _pending: E | None = None
    _has_pending: bool = False
    _first: float = 0.0
    _last: float = 0.0
    merged_count: int = 0  # events merged into the pending one (for metrics/logs)

    def __post_init__(self) -> None:
        if self.quiet < 0 or self.max_delay < 0:
            raise ValueError("quiet and max_delay must be >= 0")

    @property
    def has_pending(self) -> bool:
        return self._has_pending

    def add(self, event: E, now: float) -> None:
        """Record ``event`` at time ``now``, merging it into the pending one."""
        if self._has_pending:
            assert self._pending is not None
            self._pending = self.merge(self._pending, event)
            self.merged_count += 1
        else:
            self._pending, self._has_pending, self._first, self.merged_count = event, True, now, 1
        self._last = now

    def due_at(self) -> float | None:
        """When the pending event becomes due (None when nothing is pending)."""
        if not self._has_pending:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def take(self, now: float) -> E | None:
        """The merged event if it is due at ``now`` (and reset), else None."""
        due = self.due_at()
        if due is None or now < due:
            return None
        event, self._pending, self._has_pending = self._pending, None, False
        return event


PushFn = Callable[[E], Awaitable[None] | None]


class DebouncedPusher(Generic[E]):
    """Runs ``push(merged_event)`` for debounced events on the running event loop.

    Args:
        push: called with each merged event; may be sync or async.
        merge: how events combine (see :class:`Debouncer`).
        quiet, max_delay: see :class:`Debouncer`.
        max_retries: consecutive failures retried before the event is dropped.
        clock: monotonic time source (injectable for tests).
    """

    def __init__(
        self,
        push: PushFn[E],
        merge: Callable[[E, E], E],
        *,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_retries: int = DEFAULT_MAX_RETRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._push = push
        self._debouncer = Debouncer(merge, quiet, max_delay)
        self._max_retries = max_retries
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pushes = 0
        self.failures = 0

    def notify(self, event: E) -> None:
        """Record a change; never blocks, never raises."""
        self._debouncer.add(event, self._clock())
        self._wake.set()

    def start(self) -> None:
        """Start the driver task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the driver; a pending event is dropped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        retries = 0
        while True:
            due = self._debouncer.due_at()
            self._wake.clear()
            if due is None:
                await self._wake.wait()
                continue
            delay = due - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            event = self._debouncer.take(self._clock())
            if event is None:
                continue
            retries = await self._push_once(event, retries)

    async def _push_once(self, event: E, retries: int) -> int:
        """Push; on failure re-queue the event. Returns the new consecutive-failure count."""
        try:
            result = self._push(event)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a failed push must not kill the pipeline
            self.failures += 1
            log.exception("xds: push failed (attempt %d)", retries + 1)
            if retries < self._max_retries:
                self._debouncer.add(event, self._clock())
                return retries + 1
            log.error("xds: giving up on this change after %d retries", retries)
            return 0
        self.pushes += 1
        return 0
