"""Debounce: quiet period, max delay and merging on a fake clock; the asyncio driver."""

from __future__ import annotations

import asyncio

import pytest

from aeraki.control.xds import DebouncedPusher, Debouncer, union


def ev(*keys: str) -> frozenset[str]:
    return frozenset(keys)


def test_fires_after_the_quiet_period_with_merged_events() -> None:
    # Binary-exact times (multiples of 1/16) keep float rounding out of the comparisons.
    d = Debouncer(union, quiet=0.125, max_delay=1.0)
    assert d.due_at() is None
    assert d.take(0.0) is None
    d.add(ev("a"), 0.0)
    d.add(ev("b"), 0.0625)
    assert d.due_at() == 0.1875
    assert d.take(0.125) is None
    assert d.take(0.1875) == ev("a", "b")
    assert d.merged_count == 2
    assert not d.has_pending
    assert d.take(10.0) is None


def test_max_delay_bounds_a_steady_trickle() -> None:
    d = Debouncer(union, quiet=0.125, max_delay=1.0)
    now = 0.0
    fired = None
    while fired is None:
        d.add(ev(f"k{now}"), now)
        now += 0.0625  # always inside the quiet period
        fired = d.take(now)
    assert now == 1.0
    assert len(fired) == 16


def test_defaults_and_validation() -> None:
    d = Debouncer(union)
    assert (d.quiet, d.max_delay) == (0.1, 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        Debouncer(union, quiet=-1)


async def test_driver_pushes_merged_events_once() -> None:
    pushed: list[frozenset[str]] = []
    done = asyncio.Event()

    async def push(event: frozenset[str]) -> None:
        pushed.append(event)
        done.set()

    clock = [0.0]
    # A frozen fake clock with zero quiet time: due at once, no real waiting involved.
    pusher = DebouncedPusher(push, union, quiet=0.0, max_delay=0.0, clock=lambda: clock[0])
    pusher.notify(ev("a"))
    pusher.notify(ev("b"))
    pusher.start()
    await asyncio.wait_for(done.wait(), 5)
    await pusher.stop()
    assert pushed == [ev("a", "b")]
    assert pusher.pushes == 1


async def test_driver_retries_a_failed_push_then_gives_up() -> None:
    calls: list[frozenset[str]] = []
    done = asyncio.Event()

    def push(event: frozenset[str]) -> None:
        calls.append(event)
        if len(calls) == 4:
            done.set()
        raise RuntimeError("translation failed")

    pusher = DebouncedPusher(push, union, quiet=0.0, max_delay=0.0, max_retries=3)
    pusher.start()
    pusher.notify(ev("a"))
    await asyncio.wait_for(done.wait(), 5)
    await pusher.stop()
    assert calls == [ev("a")] * 4  # first try + 3 retries
    assert pusher.failures == 4
