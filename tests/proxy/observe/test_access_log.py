"""Access logs through the real proxy core (fake codec, loopback TCP): one line for every
ending — success, no route, overflow, timeout, connect failure, rate limited, one-way and
abandoned — in text and JSON, written per loop tick to a real file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import struct
from pathlib import Path

from aeraki.codec.api import MessageType
from aeraki.proxy.config import AccessLogConfig, CircuitBreakerConfig, ProxyConfig
from aeraki.proxy.observe.access_log import LogSink, flush_all
from aeraki.proxy.server import ProxyServer
from tests.proxy.filters.helpers import LOCAL, local_config, running, with_filters
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, exact, is_error, listener, route

TEXT = (
    "%REQ(METHOD)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %ATTEMPTS% "
    "%RESPONSE_CODE_DETAILS%\n"
)
JSON = {
    "method": "%REQ(METHOD)%",
    "code": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "received": "%BYTES_RECEIVED%",
}


def logged(config: ProxyConfig, *logs: AccessLogConfig) -> ProxyConfig:
    first = config.listeners[0]
    proxy = dataclasses.replace(first.proxy, access_logs=logs)
    return dataclasses.replace(config, listeners=(dataclasses.replace(first, proxy=proxy),))


def lines(path: Path) -> list[str]:
    flush_all()
    return path.read_text().splitlines()


async def wait_lines(path: Path, count: int) -> list[str]:
    """The log's lines once ``count`` are there (bounded: requests end asynchronously)."""
    for _ in range(500):
        if len(found := lines(path)) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} lines expected, got {found}")


async def test_every_ending_is_logged_in_text_and_json(tmp_path: Path, free_port: int) -> None:
    text, js = tmp_path / "text.log", tmp_path / "json.log"
    up = await FakeUpstream("v1").start()
    limited = dataclasses.replace(
        cluster("small", up.port), circuit_breakers=CircuitBreakerConfig(max_requests=1)
    )
    config = listener(
        route("small", match=[exact("method", "busy")]),
        route("c1", match=[exact("method", "slow")], timeout=0.1),
        route("dead", match=[exact("method", "refused")]),
        route("c1", match=[exact("method", "ok")]),
        clusters=[cluster("c1", up.port), limited, cluster("dead", free_port)],
    )
    config = logged(
        config,
        AccessLogConfig(path=str(text), text_format=TEXT),
        AccessLogConfig(path=str(js), json_format=JSON),
    )
    try:
        async with running(config) as server:
            client = await FakeClient().connect(server.listeners[0].port)
            assert (await client.call(1, {"method": "ok"})).get_string("server") == "v1"
            assert is_error(await client.call(2, {"method": "nowhere"}), "ROUTE_NOT_FOUND")
            client.send(3, {"method": "busy", "action": "hang"})
            await up.wait_received(2)
            assert is_error(await client.call(4, {"method": "busy"}), "OVER_LIMIT")
            assert is_error(await client.call(5, {"method": "slow", "action": "hang"}), "TIMEOUT")
            assert is_error(await client.call(6, {"method": "refused"}), "UNSPECIFIED")
            client.send(7, {"method": "ok"}, MessageType.ONEWAY)
            await up.wait_received(4)
            assert client.writer is not None
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.writer.transport.abort()  # reset: the client is gone, request 3 abandoned
            found = await wait_lines(text, 7)
    finally:
        up.close()
    assert sorted(found) == sorted(
        [
            "ok 0 - c1 1 via_upstream",
            "nowhere 1 NR - 0 meta_protocol_router:_no_matched_route_for_request_'2'_(nowhere)",
            "busy 1 UO small 1 meta_protocol_upstream_request:_too_many_requests",
            "slow 1 UT c1 1 meta_protocol_router:_request_timed_out_after_0.1s",
            found[[f.startswith("refused") for f in found].index(True)],
            "ok 0 - c1 1 -",
            "busy 0 DC small 1 downstream_remote_disconnect",
        ]
    ), found
    refused = next(f for f in found if f.startswith("refused"))
    assert refused.startswith("refused 1 UF dead 1 ")
    records = [json.loads(line) for line in lines(js)]
    assert len(records) == 7
    by_method = {(r["method"], r["flags"]) for r in records}
    assert by_method == {
        ("ok", None),
        ("nowhere", "NR"),
        ("busy", "UO"),
        ("slow", "UT"),
        ("refused", "UF"),
        ("busy", "DC"),
    }
    assert all(isinstance(r["received"], int) and r["received"] > 0 for r in records)
    assert {r["code"] for r in records} == {0, 1}


async def test_rate_limited_request_is_logged_rl(tmp_path: Path) -> None:
    path = tmp_path / "rl.log"
    up = await FakeUpstream("v1").start()
    config = logged(
        listener(route("c1"), clusters=[cluster("c1", up.port)]),
        AccessLogConfig(path=str(path), text_format="%RESPONSE_FLAGS% %UPSTREAM_CLUSTER%"),
    )
    bucket = {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"}
    config = with_filters(
        config, (LOCAL, local_config({"stat_prefix": "rl", "token_bucket": bucket}))
    )
    try:
        async with running(config) as server:
            client = await FakeClient().connect(server.listeners[0].port)
            assert (await client.call(1, {"method": "m"})).get_string("server") == "v1"
            assert is_error(await client.call(2, {"method": "m"}), "OVER_LIMIT")
            await client.close()
            found = await wait_lines(path, 2)
    finally:
        up.close()
    assert found == ["- c1", "RL -"]


async def test_lines_of_one_tick_are_written_together(tmp_path: Path) -> None:
    """A burst's lines are buffered until the loop turns, then written in one go."""
    path = tmp_path / "burst.log"
    sink = LogSink(str(path))
    for i in range(3):
        sink.append(f"line {i}\n")
    assert path.read_text() == ""
    await asyncio.sleep(0)
    assert path.read_text() == "line 0\nline 1\nline 2\n"


async def test_proxy_without_access_log_has_no_logger(tmp_path: Path) -> None:
    server = ProxyServer(listener(route("c1"), clusters=[cluster("c1")]))
    await server.start()
    try:
        assert not any(
            type(o).__name__ == "AccessLogger" for o in server.listeners[0].runtime.observers
        )
    finally:
        await server.shutdown()
