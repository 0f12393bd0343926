"""Coalesced writes: at most one ``transport.write`` per connection per event-loop tick.

DESIGN §4 rule 1. Bytes written to a connection are queued and flushed by one ``call_soon``
callback at the end of the tick, so everything produced for a connection while the loop
handled that tick's reads (many clients' requests on a shared upstream, many responses of one
upstream read for a client) leaves in a single write.

A flush at the end of each read's dispatch instead (tried, see benchmarks/RESULTS.md) wrote
sooner but woke the peers more often: the upstream echo server's cost per request rose from
~10 to ~15 µs and the proxy's from ~33 to ~41 µs (Dubbo, 50 connections). Per-tick it stays.
"""

from __future__ import annotations

import asyncio

__all__ = ["CoalescedWriter"]


class CoalescedWriter:
    """Mixin for a protocol object that owns ``self.transport``."""

    transport: asyncio.Transport | None
    _out: list[bytes]
    _loop: asyncio.AbstractEventLoop

    def write(self, data: bytes) -> None:
        """Queue ``data`` for this tick's flush."""
        if not self._out:
            self._loop.call_soon(self.flush)
        self._out.append(data)

    def flush(self) -> None:
        """Write everything queued, in one call."""
        out = self._out
        if not out:
            return
        self._out = []
        transport = self.transport
        # uvloop raises on a write to a closing transport (asyncio only logs): check first.
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.after_flush()

    def after_flush(self) -> None:
        """Hook run after each flush (a draining connection closes itself here)."""
