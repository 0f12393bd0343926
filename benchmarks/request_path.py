"""Microbenchmark: the proxy's Python CPU per request on a plain echo path (µs/request).

The request path of ``make bench``'s Thrift or Dubbo echo (``configs/aeraki-thrift.yaml``: one
route on method ``echo``; ``configs/aeraki-dubbo.yaml``: one route on interface and method,
one upstream connection per client; no retries, timeouts, faults or filters), without the
sockets: a real
:class:`~aeraki.proxy.listener.ListenerRuntime` with real downstream and upstream connection
objects, codecs, pool and metrics observer, on a real event loop, but with in-memory
transports. A downstream transport's write hands the client the response and queues its next
request (``call_soon``, a new loop tick, as a socket read would be); an upstream transport's
write queues the echo server's reply. ``connections`` clients run closed loops side by side
(one request in flight each), as the load generator does.

With ``--route-attachment`` the Dubbo route also matches the attachment ``env=bench``
(``configs/aeraki-dubbo-attachment.yaml``), so every request loads its attachments, as the
routes of Aeraki's e2e tests and of the reference's dubbo test do.

What it leaves out is the same for every version of the code (syscalls, the kernel, the
peers), so the difference between two runs is the difference in the proxy's own Python work:
use it to compare a change against its baseline (interleaved runs, the minimum of several
repeats), not as an absolute figure. It is deterministic (fixed requests, fixed count) and
bounded (``requests`` per repeat).

    .venv/bin/python -m benchmarks.request_path [--protocol thrift|dubbo] [--requests 20000]
        [--repeat 7] [--connections 50] [--loop uvloop|asyncio] [--route-attachment]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.connection import DownstreamConnection
from aeraki.proxy.listener import ListenerRuntime
from aeraki.proxy.upstream.cluster import ClusterManager
from aeraki.proxy.upstream.connection import UpstreamConnection
from benchmarks import wire

CONFIGS = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class Protocol:
    """One protocol's echo: its proxy config, a client's request, the server's reply, and
    where the request id sits (copied from request to reply, as a server does)."""

    config: Path
    request: Callable[[int], bytes]
    reply: bytes
    id_at: int
    id_size: int


PROTOCOLS: dict[str, Protocol] = {
    "thrift": Protocol(
        CONFIGS / "aeraki-thrift.yaml",
        wire.thrift_echo_call,
        wire.thrift_echo_reply(0),
        wire.THRIFT_SEQID_OFFSET,
        4,
    ),
    "dubbo": Protocol(
        CONFIGS / "aeraki-dubbo.yaml",
        wire.dubbo_echo_request,
        wire.dubbo_echo_response(0),
        wire.DUBBO_ID_OFFSET,
        8,
    ),
}


#: Configs whose route also matches an attachment (``--route-attachment``), by protocol.
ATTACHMENT_CONFIGS: dict[str, Path] = {"dubbo": CONFIGS / "aeraki-dubbo-attachment.yaml"}


class _Transport:
    """The part of ``asyncio.Transport`` the proxy's connections use, in memory."""

    def __init__(self, on_write: Any) -> None:
        self._on_write = on_write
        self.closing = False

    def write(self, data: bytes) -> None:
        self._on_write(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        """Never needed here (the client reads everything)."""

    def resume_reading(self) -> None:
        """Never needed here."""


def _runtime(protocol: Protocol) -> ListenerRuntime:
    text = protocol.config.read_text()
    for name in ("listen_port", "upstream_port", "admin_port"):
        text = text.replace("{" + name + "}", "1")
    config = bootstrap_from_dict(yaml.safe_load(text), source=str(protocol.config))
    return ListenerRuntime(config.listeners[0], ClusterManager(config.clusters))


class _Bench:
    """Closed-loop clients and an echo upstream around one listener runtime."""

    def __init__(self, protocol: Protocol, connections: int) -> None:
        runtime = _runtime(protocol)
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.clients: list[tuple[DownstreamConnection, bytes]] = []
        self.issued = self.answered = self.total = 0
        self.done: asyncio.Future[None] | None = None
        cluster = runtime.clusters.clusters["echo"]
        pool = cluster.pool_for(cluster.hosts[0], runtime.codec_cls, multiplexed=False)
        for index in range(connections):
            downstream = DownstreamConnection(runtime)
            request = protocol.request(index)
            downstream.connection_made(cast(Any, _Transport(self._client(downstream, request))))
            self.clients.append((downstream, request))
            upstream = UpstreamConnection(pool, runtime.codec_cls, multiplexed=False)
            upstream.connection_made(cast(Any, _Transport(self._server(upstream))))
            pool.limits.connections += 1
            pool._on_connected(upstream, None)  # as if its connect had just succeeded

    def _client(self, downstream: DownstreamConnection, request: bytes) -> Any:
        call_soon = self.loop.call_soon

        def on_response(data: bytes) -> None:
            self.answered += 1
            if self.issued < self.total:
                self.issued += 1
                call_soon(downstream.data_received, request)
            elif self.answered == self.total and self.done is not None:
                self.done.set_result(None)

        return on_response

    def _server(self, upstream: UpstreamConnection) -> Any:
        """The echo server's side of ``upstream``: the reply carries the request's id (the
        pool pairs clients and upstream connections in any order)."""
        call_soon = self.loop.call_soon
        start, end = self.protocol.id_at, self.protocol.id_at + self.protocol.id_size
        head, tail = self.protocol.reply[:start], self.protocol.reply[end:]

        def on_request(data: bytes) -> None:
            call_soon(upstream.data_received, head + data[start:end] + tail)

        return on_request

    async def run(self, requests: int) -> float:
        """Seconds of process CPU for ``requests`` requests."""
        self.issued = self.answered = 0
        self.total = requests
        self.done = self.loop.create_future()
        start = time.process_time()
        for downstream, request in self.clients[:requests]:
            self.issued += 1
            downstream.data_received(request)
        await asyncio.wait_for(self.done, 120.0)
        elapsed = time.process_time() - start
        self.done = None
        return elapsed

    def check(self, expected: int) -> None:
        """Every request got its upstream response (not a local reply): the path measured is
        the one intended."""
        stats = self.clients[0][0].listener.stats
        if stats.response_success != expected or stats.local_response_business_exception:
            raise SystemExit(
                f"request_path: {stats.response_success} upstream responses for {expected} "
                f"requests, {stats.local_response_business_exception} local replies"
            )


async def measure(
    requests: int,
    repeat: int,
    connections: int,
    protocol: str = "thrift",
    route_attachment: bool = False,
) -> list[float]:
    """µs per request of each repeat (after one warm-up run)."""
    chosen = PROTOCOLS[protocol]
    if route_attachment:
        chosen = dataclasses.replace(chosen, config=ATTACHMENT_CONFIGS[protocol])
    bench = _Bench(chosen, connections)
    warmup = min(requests, 5000)
    await bench.run(warmup)
    runs = [await bench.run(requests) / requests * 1e6 for _ in range(repeat)]
    bench.check(warmup + repeat * requests)
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="thrift")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--route-attachment",
        action="store_true",
        help=f"route on an attachment too ({', '.join(sorted(ATTACHMENT_CONFIGS))} only)",
    )
    args = parser.parse_args(argv)
    if args.route_attachment and args.protocol not in ATTACHMENT_CONFIGS:
        parser.error(f"--route-attachment: no attachments in {args.protocol}")
    job = measure(
        args.requests, args.repeat, args.connections, args.protocol, args.route_attachment
    )
    if args.loop == "uvloop":
        import uvloop

        runs = uvloop.run(job)
    else:
        runs = asyncio.run(job)
    routed = ", route on an attachment" if args.route_attachment else ""
    print(
        f"request path ({args.protocol} echo{routed}, {args.connections} connections, "
        f"{args.loop}): "
        f"min {min(runs):.2f} µs/request, median {sorted(runs)[len(runs) // 2]:.2f} "
        f"({args.repeat} × {args.requests} requests)"
    )


if __name__ == "__main__":
    main()
