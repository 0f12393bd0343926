"""Closed-loop load generator: N connections, one request in flight on each, uvloop.

It is written to be cheap so that it is never the bottleneck (its ceiling is measured and
reported on its own): requests are pre-encoded once with the real wire format
(:mod:`benchmarks.wire`) and only the Thrift seqid / Dubbo request id is spliced in per request;
responses are cut by their length prefix and checked only by a few bytes (message type or
status, and the id of the request they answer), never decoded.

The run is bounded in time (warm-up + measure seconds) *and* in count (``--max-requests``), and
aborts if no response arrives for ``--stall`` seconds. CPU time of the watched processes
(utime+stime from ``/proc/<pid>/stat``, child processes included) and their VmRSS are sampled
by this process exactly at the edges of the measured window, so the CPU per request has no
skew from pipes or polling.

    python -m benchmarks.loadgen thrift|dubbo --port N [--connections 50] [--warmup 10]
        [--seconds 15] [--watch NAME=PID ...] [--cpu C]

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import uvloop

from benchmarks import wire

_LEN = struct.Struct(">I")
_TICK = os.sysconf("SC_CLK_TCK")


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (all threads' children), so worker processes count too."""
    out = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    out += proc_tree(int(child))
    except FileNotFoundError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid``'s process tree, in seconds (all threads of each process)."""
    ticks = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid``'s process tree in KiB."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except FileNotFoundError:
            continue
    return total


def core_busy_ticks() -> dict[str, int]:
    """Busy (non-idle, non-iowait) ticks per CPU from ``/proc/stat``: is a core saturated, and
    is anything besides the benchmark running on it?"""
    out: dict[str, int] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals]
                out[name[3:]] = sum(v[:8]) - v[3] - v[4]
    return out


def self_cpu_seconds() -> float:
    """This generator's own CPU time (to report its cost per request)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Wire:
    """How to build request ``n`` and check the response to it, for one protocol."""

    header_size: int
    frame_size: Callable[[bytes | bytearray, int], int]
    head: bytes
    tail: bytes
    id_width: int
    #: offset and expected value of the byte telling success (Thrift REPLY type, Dubbo status)
    ok_offset: int
    ok_value: int
    id_offset: int

    def request(self, n: int) -> bytes:
        return self.head + n.to_bytes(self.id_width, "big") + self.tail


def thrift_wire() -> Wire:
    """Framed binary ``echo(string)`` with the seqid at a fixed offset."""
    template = wire.thrift_echo_call(0)
    off = wire.THRIFT_SEQID_OFFSET
    return Wire(
        header_size=4,
        frame_size=lambda b, p: 4 + int(_LEN.unpack_from(b, p)[0]),
        head=template[:off],
        tail=template[off + 4 :],
        id_width=4,
        ok_offset=7,
        ok_value=wire.THRIFT_REPLY,
        id_offset=off,
    )


def dubbo_wire() -> Wire:
    """Hessian2 ``EchoService.echo(String)`` request with the id in the header."""
    template = wire.dubbo_echo_request(0)
    off = wire.DUBBO_ID_OFFSET
    return Wire(
        header_size=wire.DUBBO_HEADER_SIZE,
        frame_size=lambda b, p: wire.DUBBO_HEADER_SIZE + int(_LEN.unpack_from(b, p + 12)[0]),
        head=template[:off],
        tail=template[off + 8 :],
        id_width=8,
        ok_offset=3,
        ok_value=wire.DUBBO_STATUS_OK,
        id_offset=off,
    )


@dataclass
class Stats:
    """Shared counters; ``recording`` is True only inside the measured window."""

    done: int = 0
    errors: int = 0
    recording: bool = False
    sending: bool = True
    latencies: list[float] = field(default_factory=list)
    last_done_at: float = 0.0


class Client(asyncio.Protocol):
    """One connection: send, wait for the whole response, record, send the next."""

    def __init__(self, w: Wire, stats: Stats, first_id: int, on_lost: Callable[[], None]):
        self.w = w
        self.stats = stats
        self.next_id = first_id
        self.expect = b""
        self.sent_at = 0.0
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self) -> None:
        n = self.next_id
        self.next_id = (n + 1) & 0x7FFFFFFF
        w = self.w
        self.expect = n.to_bytes(w.id_width, "big")
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(w.head + self.expect + w.tail)

    def data_received(self, data: bytes) -> None:
        w = self.w
        if self.buf:
            self.buf += data
            frame: bytes | bytearray = self.buf
        else:
            frame = data
        if len(frame) < w.header_size or len(frame) < w.frame_size(frame, 0):
            if frame is data:
                self.buf += data
            return
        now = time.perf_counter()
        size = w.frame_size(frame, 0)
        stats = self.stats
        if (
            len(frame) != size
            or frame[w.ok_offset] != w.ok_value
            or frame[w.id_offset : w.id_offset + w.id_width] != self.expect
        ):
            stats.errors += 1
        stats.done += 1
        stats.last_done_at = now
        if stats.recording:
            stats.latencies.append(now - self.sent_at)
        if self.buf:
            self.buf.clear()
        if stats.sending:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run(
    kind: str,
    port: int,
    connections: int,
    warmup: float,
    seconds: float,
    max_requests: int,
    stall: float,
    watch: dict[str, int],
) -> dict[str, Any]:
    """Warm up, then measure one window; return the results as JSON-ready data."""
    loop = asyncio.get_running_loop()
    w = thrift_wire() if kind == "thrift" else dubbo_wire()
    stats = Stats(last_done_at=time.perf_counter())
    lost: list[int] = []
    clients: list[Client] = []
    for i in range(connections):
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda i=i: Client(w, stats, i * 1_000_000 + 1, lambda: lost.append(1)),  # type: ignore[misc]
                "127.0.0.1",
                port,
            ),
            timeout=5.0,
        )
        clients.append(proto)
    for c in clients:
        c.send()

    async def phase(duration: float) -> None:
        """Sleep ``duration`` in short steps, failing fast on stalls, lost connections, caps."""
        end = time.perf_counter() + duration
        while (now := time.perf_counter()) < end:
            await asyncio.sleep(min(0.25, end - now))
            if lost and stats.sending:
                raise RuntimeError(f"{len(lost)} connection(s) closed by the peer")
            if time.perf_counter() - stats.last_done_at > stall:
                raise RuntimeError(f"no response for {stall:.0f}s (done={stats.done})")
            if stats.done >= max_requests:
                return

    await phase(warmup)
    cpu0 = {name: cpu_seconds(pid) for name, pid in watch.items()}
    gen0 = self_cpu_seconds()
    busy0 = core_busy_ticks()
    done0, err0, t0 = stats.done, stats.errors, time.perf_counter()
    stats.recording = True
    await phase(seconds)
    stats.recording = False
    t1, done1, err1 = time.perf_counter(), stats.done, stats.errors
    gen1 = self_cpu_seconds()
    busy1 = core_busy_ticks()
    cpu1 = {name: cpu_seconds(pid) for name, pid in watch.items()}
    rss = {name: rss_kib(pid) for name, pid in watch.items()}
    stats.sending = False
    for c in clients:
        assert c.transport is not None
        c.transport.close()
    lat = sorted(stats.latencies)
    requests = done1 - done0
    elapsed = t1 - t0
    return {
        "kind": kind,
        "connections": connections,
        "requests": requests,
        "seconds": elapsed,
        "rps": requests / elapsed if elapsed > 0 else 0.0,
        "errors": err1 - err0,
        "p50_ms": _percentile(lat, 0.50) * 1e3,
        "p99_ms": _percentile(lat, 0.99) * 1e3,
        "cpu_s": {name: cpu1[name] - cpu0[name] for name in watch},
        "rss_kib": rss,
        "generator_cpu_s": gen1 - gen0,
        "core_busy": {
            c: (busy1[c] - busy0[c]) / _TICK / elapsed if elapsed > 0 else 0.0 for c in busy1
        },
    }


def _watch_arg(text: str) -> tuple[str, int]:
    name, _, pid = text.partition("=")
    if not name or not pid.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PID, got {text!r}")
    return name, int(pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["thrift", "dubbo"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--max-requests", type=int, default=20_000_000)
    parser.add_argument("--stall", type=float, default=5.0)
    parser.add_argument("--watch", type=_watch_arg, action="append", default=[])
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        result = uvloop.run(
            run(
                args.kind,
                args.port,
                args.connections,
                args.warmup,
                args.seconds,
                args.max_requests,
                args.stall,
                dict(args.watch),
            )
        )
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
