"""CPU per Dubbo request through our proxy, measured in one process (a cheap stand-in for
``make bench`` when the machine is shared): closed-loop clients, the proxy
(:class:`~aeraki.proxy.server.ProxyServer`, the routes of ``benchmarks/configs/aeraki-dubbo
.yaml``: interface + method) and an echo provider all run on one uvloop loop over loopback TCP.
The same clients talk to the echo provider directly too; the difference of process CPU time
per request is the proxy's cost. Frames are the benchmark's (``benchmarks/wire.py``).

Run: ``.venv/bin/python -m tests.codec.dubbo.bench_proxy_loop [--mux] [--rounds 5]``
(``--mux``: ``multiplexing: true``, so ids are rewritten both ways).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any, cast

import uvloop

from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.server import ProxyServer
from benchmarks import wire

LOOPBACK = "127.0.0.1"
REQUEST = wire.dubbo_echo_request(7)
RESPONSE = wire.dubbo_echo_response(7)


def _frames(buffer: bytearray) -> list[bytes]:
    """Cut the complete frames off ``buffer`` (16-byte header, body length at 12)."""
    out = []
    while len(buffer) >= 16:
        end = 16 + int.from_bytes(buffer[12:16], "big")
        if len(buffer) < end:
            break
        out.append(bytes(buffer[:end]))
        del buffer[:end]
    return out


class Echo(asyncio.Protocol):
    """The provider: answers each request with the benchmark's response, under its id."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        replies = [RESPONSE[:4] + f[4:12] + RESPONSE[12:] for f in _frames(self.buffer)]
        if replies:
            self.transport.write(b"".join(replies))


class Client(asyncio.Protocol):
    """One closed-loop consumer connection: a new request as soon as an answer arrives."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        for frame in _frames(self.buffer):
            assert frame[3] == 20, frame
            if self.run.answered():
                self.transport.write(REQUEST)


class Run:
    """Counts answers; marks the start and end of the measured window."""

    def __init__(self, warmup: int, measured: int) -> None:
        self.warmup, self.total = warmup, warmup + measured
        self.count = 0
        self.cpu = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def answered(self) -> bool:
        self.count += 1
        if self.count == self.warmup:
            self.cpu = time.process_time()
        elif self.count == self.total:
            self.cpu = time.process_time() - self.cpu
            self.done.set_result(None)
        return self.count < self.total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _bootstrap(listen: int, upstream: int, mux: bool) -> dict[str, Any]:
    """``benchmarks/configs/aeraki-dubbo.yaml`` (or ``-mux``) without the admin listener."""
    route = {
        "name": "echo",
        "match": {
            "metadata": [
                {"name": "interface", "exact_match": wire.DUBBO_INTERFACE},
                {"name": "method", "exact_match": wire.DUBBO_METHOD},
            ]
        },
        "route": {"cluster": "echo"},
    }
    proxy = {
        "@type": "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy",
        "stat_prefix": "bench",
        "protocol": {
            "name": "dubbo",
            "codec": {"name": "aeraki.meta_protocol.codec.dubbo"},
            "multiplexing": mux,
        },
        "route_config": {"name": "local", "routes": [route]},
    }
    address = {"socket_address": {"address": LOOPBACK, "port_value": listen}}
    upstream_address = {"socket_address": {"address": LOOPBACK, "port_value": upstream}}
    endpoint = {"endpoint": {"address": upstream_address}}
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "dubbo",
                    "address": address,
                    "filter_chains": [
                        {"filters": [{"name": "aeraki.meta_protocol_proxy", "typed_config": proxy}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [{"lb_endpoints": [endpoint]}],
                    },
                }
            ],
        }
    }


async def _measure(port: int, connections: int, warmup: int, measured: int) -> float:
    """CPU µs of this whole process per answered request, over ``measured`` answers."""
    loop = asyncio.get_running_loop()
    run = Run(warmup, measured)
    transports = []
    for _ in range(connections):
        transport, _ = await loop.create_connection(lambda: Client(run), LOOPBACK, port)
        transports.append(transport)
    await asyncio.wait_for(run.done, 120)
    for transport in transports:
        transport.close()
    return run.cpu / measured * 1e6


async def main(mux: bool, rounds: int, connections: int, measured: int) -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(Echo, LOOPBACK, 0)
    upstream = echo.sockets[0].getsockname()[1]
    listen = _free_port()
    server = ProxyServer(bootstrap_from_dict(_bootstrap(listen, upstream, mux)))
    await server.start()
    direct, proxied = [], []
    for _ in range(rounds):  # interleaved, so drift and other load hit both alike
        direct.append(await _measure(upstream, connections, measured // 5, measured))
        proxied.append(await _measure(listen, connections, measured // 5, measured))
    await server.shutdown()
    echo.close()
    d, p = statistics.median(direct), statistics.median(proxied)
    mode = "multiplexed" if mux else "exclusive"
    print(f"dubbo {mode}, {connections} connections, {rounds} rounds x {measured} requests")
    print(f"  direct (clients + echo)     {d:6.2f} µs CPU/request  {sorted(direct)}")
    print(f"  through the proxy           {p:6.2f} µs CPU/request")
    print(f"  proxy's share (difference)  {p - d:6.2f} µs CPU/request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mux", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    uvloop.run(main(args.mux, args.rounds, args.connections, args.requests))
