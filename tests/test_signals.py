"""SIGTERM/SIGINT set the stop event while inside ``stop_on_signals``, and only then."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from aeraki.signals import stop_on_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_sets_the_event_and_the_handler_goes_on_exit(sig: int) -> None:
    before = signal.getsignal(sig)
    with stop_on_signals() as stop:
        during = signal.getsignal(sig)
        assert during != before  # the loop's handler is in place
        os.kill(os.getpid(), sig)  # this process, which the test runs in
        await asyncio.wait_for(stop.wait(), 5)
    # gone (asyncio puts Python's default back for SIGINT, not the runner's own)
    assert signal.getsignal(sig) not in (during, signal.SIG_IGN)


def test_off_the_main_thread_the_owner_sets_it() -> None:
    outcome: list[bool] = []

    async def in_thread() -> None:
        given = asyncio.Event()
        with stop_on_signals(given) as stop:
            assert stop is given
            stop.set()
        outcome.append(given.is_set())

    thread = threading.Thread(target=asyncio.run, args=(in_thread(),))
    thread.start()
    thread.join(10)
    assert outcome == [True]
