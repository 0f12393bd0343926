"""Stopping on SIGTERM/SIGINT, the one way every long-running command does it.

A Kubernetes pod gets SIGTERM, a terminal user presses Ctrl-C (SIGINT): both mean "finish
what is in flight, then exit". Each command (proxy, proxy worker, supervisor, control plane,
``aeraki run``) waits on the event this sets and then drains; the handlers are removed when
the command is done, so a loop reused afterwards (tests) keeps its default behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event | None = None) -> Iterator[asyncio.Event]:
    """``stop`` (or a new event), set by SIGTERM or SIGINT while inside.

    Off the main thread a loop cannot take signal handlers: the event is then set only by
    its owner (e.g. a test running ``aeraki run`` in a thread).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
