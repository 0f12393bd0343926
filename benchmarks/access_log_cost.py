"""Microbenchmark: what an access log costs a request (µs per request, best of several runs).

One ``AccessLogger.on_request_done`` per request — render the line from the ended request and
buffer it — with the buffer written to ``/dev/null`` every 1,024 lines (the sink's cap; in the
proxy a tick's lines go out together, so the write is amortised the same way). Rows:

* ``envoy default text`` — :data:`aeraki.proxy.observe.format.DEFAULT_TEXT_FORMAT`;
* ``aeraki default text`` — Aeraki's §6.6 mesh format (what ``--access-log`` alone gives);
* ``json (15 keys)`` — Aeraki's default JSON map;
* ``small text`` — four operators.

A listener without an access log has no observer: its cost is one truth test.

    .venv/bin/python -m benchmarks.access_log_cost [--requests 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import cast

from aeraki.codec.api import Metadata
from aeraki.control.envoyfilter.mesh import DEFAULT_ACCESS_LOG_FORMAT, JSON_ACCESS_LOG_FORMAT
from aeraki.proxy.config import AccessLogConfig, ListenerConfig, MetaProtocolConfig, SocketAddress
from aeraki.proxy.observe.access_log import AccessLogger, LogSink, compile_format
from aeraki.proxy.observe.format import DEFAULT_TEXT_FORMAT
from aeraki.proxy.request import ActiveRequest


class _Listener:
    application_protocol = "thrift"
    config = ListenerConfig(
        name="l",
        address=SocketAddress("127.0.0.1", 9090),
        proxy=MetaProtocolConfig(stat_prefix="s", application_protocol="thrift", codec="c"),
    )


class _Downstream:
    peer = "127.0.0.1:40000"
    transport = None
    listener = _Listener()


class _Host:
    key = "127.0.0.1:9091"


class _Request:
    """The attributes of ``ActiveRequest`` an access log reads: a successful Thrift call."""

    def __init__(self) -> None:
        md = Metadata(origin=b"x" * 140)
        md.operation_name = "echo"
        md.put_string("method", "echo")
        md.put_string("x-meta-protocol-application-protocol", "thrift")
        response = Metadata(origin=b"y" * 130)
        self.metadata = md
        self.response = response
        self.local_error = None
        self.route = None
        self.downstream = _Downstream()
        self.cluster_name = "outbound|9090||echo"
        self.last_host = _Host()
        self.attempts = 1
        self.delayed = False
        self.upstream = None
        self.is_oneway = False
        now = time.monotonic()
        self.started = now - 0.0012
        self.ended = now


def _cost(config: AccessLogConfig, requests: int, repeat: int) -> float:
    return asyncio.run(_in_loop(config, requests, repeat))


async def _in_loop(config: AccessLogConfig, requests: int, repeat: int) -> float:
    """Run in a loop that never turns: lines buffer as in one busy tick, written every 1,024."""
    sink = LogSink("/dev/null")
    logger = AccessLogger(compile_format(config, "bench"), sink)
    request = cast(ActiveRequest, _Request())
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(requests):
            logger.on_request_done(request)
        sink.flush()
        best = min(best, time.perf_counter() - start)
    return best / requests * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rows: list[tuple[str, AccessLogConfig]] = [
        ("envoy default text", AccessLogConfig(path="/dev/null", text_format=DEFAULT_TEXT_FORMAT)),
        (
            "aeraki default text",
            AccessLogConfig(path="/dev/null", text_format=DEFAULT_ACCESS_LOG_FORMAT),
        ),
        (
            "json (15 keys)",
            AccessLogConfig(path="/dev/null", json_format=dict(JSON_ACCESS_LOG_FORMAT)),
        ),
        (
            "small text",
            AccessLogConfig(
                path="/dev/null",
                text_format="%METHOD% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%\n",
            ),
        ),
    ]
    print(f"access log cost, best of {args.repeat} × {args.requests} requests")
    for name, config in rows:
        print(f"  {name:22} {_cost(config, args.requests, args.repeat):6.2f} µs/request")


if __name__ == "__main__":
    main()
