"""The proxy core end to end over loopback TCP with the fake codec: routing, pools,
multiplexing, failures, timeouts, heartbeats, mirroring, mutation, idle and drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from aeraki.codec.api import MessageType
from aeraki.proxy.config import LbPolicy, ProxyConfig
from aeraki.proxy.server import ProxyServer
from tests.proxy.harness import (
    FakeClient,
    FakeUpstream,
    cluster,
    exact,
    is_error,
    listener,
    route,
)


@asynccontextmanager
async def running(config: ProxyConfig, drain: float = 5.0) -> AsyncIterator[ProxyServer]:
    server = ProxyServer(config, drain_timeout=drain)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


@asynccontextmanager
async def upstreams(*labels: str) -> AsyncIterator[list[FakeUpstream]]:
    ups = [await FakeUpstream(label).start() for label in labels]
    try:
        yield ups
    finally:
        for up in ups:
            up.close()


async def client_of(server: ProxyServer) -> FakeClient:
    return await FakeClient().connect(server.listeners[0].port)


def stat(server: ProxyServer, name: str) -> int:
    return server.stats()[f"meta_protocol.fake.test.{name}"]


async def test_method_routing_sends_each_request_to_its_cluster() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route("c1", match=[exact("method", "sayHello")]),
            route("c2"),
            clusters=[cluster("c1", v1.port), cluster("c2", v2.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            hello = await client.call(1, {"method": "sayHello"})
            other = await client.call(2, {"method": "other"})
            assert (hello.get_string("server"), hello.request_id) == ("v1", 1)
            assert (other.get_string("server"), other.request_id) == ("v2", 2)
            assert hello.get_string("echo-x-meta-protocol-application-protocol") == ""
            await client.close()
            assert stat(server, "request") == 2
            assert stat(server, "response_success") == 2


async def test_no_route_gets_route_not_found_reply_and_connection_stays_open() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", match=[exact("method", "known")]), clusters=[cluster("c1", v1.port)]
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(5, {"method": "unknown"})
            assert is_error(reply, "ROUTE_NOT_FOUND")
            assert reply.request_id == 5
            assert "no matched route for request '5'" in reply.get_string("error-message")
            ok = await client.call(6, {"method": "known"})
            assert ok.get_string("server") == "v1"
            await client.close()


async def test_unknown_cluster_and_no_hosts_get_their_error_types() -> None:
    config = listener(
        route("missing", match=[exact("method", "a")]),
        route("empty"),
        clusters=[cluster("empty")],
    )
    async with running(config) as server:
        client = await client_of(server)
        assert is_error(await client.call(1, {"method": "a"}), "CLUSTER_NOT_FOUND")
        assert is_error(await client.call(2, {"method": "b"}), "NO_HEALTHY_UPSTREAM")
        await client.close()


async def test_weighted_split_follows_weights() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route(weighted=[("c1", 80), ("c2", 20)]),
            clusters=[cluster("c1", v1.port), cluster("c2", v2.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            total = 1000
            for i in range(total):
                client.send(i + 1, {"method": "m"})
            labels = [(await client.receive()).get_string("server") for _ in range(total)]
            share = labels.count("v1") / total
            assert 0.75 <= share <= 0.85, share
            await client.close()


async def test_exclusive_mode_reuses_an_idle_upstream_connection() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            for i in range(5):
                assert (await client.call(i + 1)).get_string("server") == "v1"
            assert v1.connections == 1
            await client.close()


async def test_pipelined_requests_in_exclusive_mode_each_get_their_answer() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            for i in range(20):
                client.send(i + 1, {"n": str(i + 1)})
            replies = [await client.receive() for _ in range(20)]
            assert sorted(r.request_id for r in replies) == list(range(1, 21))
            assert all(r.get_string("echo-n") == str(r.request_id) for r in replies)
            await client.close()


async def test_multiplexed_mode_matches_out_of_order_responses_on_one_connection() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)], multiplexing=True)
        async with running(config) as server:
            clients = [await client_of(server) for _ in range(3)]
            for n, client in enumerate(clients):
                # every client uses the same ids: the proxy must keep them apart
                client.send(1, {"action": "hold", "who": str(n)})
                client.send(2, {"action": "hold", "who": f"{n}b"})
            await v1.wait_received(6)
            assert v1.connections == 1  # shared: the fake codec rewrites ids
            assert len({md.request_id for md in v1.received}) == 6
            v1.release_held()
            for client in clients:
                got = {(await client.receive()).request_id: None for _ in range(2)}
                assert set(got) == {1, 2}
            for n, client in enumerate(clients):
                reply = await client.call(3, {"who": str(n)})
                assert reply.get_string("echo-who") == str(n)
                await client.close()


async def test_upstream_close_before_response_answers_with_local_error() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(9, {"action": "close"})
            assert is_error(reply, "UNSPECIFIED")
            assert "remote connection failure" in reply.get_string("error-message")
            assert (await client.call(10)).get_string("server") == "v1"
            await client.close()


async def test_multiplexed_upstream_close_fails_every_waiting_request() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)], multiplexing=True)
        async with running(config) as server:
            client = await client_of(server)
            client.send(1, {"action": "hang"})
            client.send(2, {"action": "hang"})
            await v1.wait_received(2)
            client.send(3, {"action": "close"})
            replies = [await client.receive() for _ in range(3)]
            assert sorted(r.request_id for r in replies) == [1, 2, 3]
            assert all(is_error(r, "UNSPECIFIED") for r in replies)
            await client.close()


async def test_connect_failure_is_answered_not_hung(free_port: int) -> None:
    config = listener(route("c1"), clusters=[cluster("c1", free_port)])
    async with running(config) as server:
        client = await client_of(server)
        reply = await client.call(4)
        assert is_error(reply, "UNSPECIFIED")
        assert f"127.0.0.1:{free_port}" in reply.get_string("error-message")
        await client.close()


async def test_route_timeout_answers_and_late_response_never_reaches_next_request() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1", timeout=0.2), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"action": "hold"})
            assert is_error(reply, "TIMEOUT")
            v1.release_held()  # the late answer must be dropped with its connection
            follow = await client.call(2, {"method": "next"})
            assert (follow.request_id, follow.get_string("echo-method")) == (2, "next")
            assert stat(server, "request_timeout") == 1
            await client.close()


async def test_wrong_response_id_is_not_forwarded() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(7, {"action": "wrong-id"})
            assert reply.request_id == 7
            assert is_error(reply, "BAD_RESPONSE")
            await client.close()


async def test_heartbeat_is_answered_by_the_proxy() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            client.send(42, message_type=MessageType.HEARTBEAT)
            reply = await client.receive()
            assert (reply.message_type, reply.request_id) == (MessageType.HEARTBEAT, 42)
            assert v1.received == []
            await client.close()


async def test_oneway_is_forwarded_without_reply() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            client.send(1, {"method": "fire"}, message_type=MessageType.ONEWAY)
            received = await v1.wait_received(1)
            assert received[0].message_type is MessageType.ONEWAY
            reply = await client.call(2, {"method": "after"})
            assert reply.request_id == 2  # the oneway produced no reply of its own
            assert stat(server, "request_oneway") == 1
            await client.close()


async def test_request_and_response_mutation_are_applied() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", request_mutation=[("foo", "bar")], response_mutation=[("via", "aeraki")]),
            clusters=[cluster("c1", v1.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"method": "m"})
            assert v1.received[0].get_string("foo") == "bar"
            assert reply.get_string("echo-foo") == "bar"
            assert reply.get_string("via") == "aeraki"
            await client.close()


async def test_mirror_gets_a_copy_and_never_changes_the_reply() -> None:
    async with upstreams("main", "shadow") as (main, shadow):
        config = listener(
            route("c1", mirrors=["c2"]),
            clusters=[cluster("c1", main.port), cluster("c2", shadow.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"method": "m"})
            assert reply.get_string("server") == "main"
            mirrored = await shadow.wait_received(1)
            assert mirrored[0].get_string("method") == "m"
            await client.close()


async def test_garbage_closes_only_that_connection() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            good = await client_of(server)
            bad = await client_of(server)
            bad.send_raw(b"\xff\xff\xff\xff garbage")
            assert await bad.wait_closed() == b""
            assert (await good.call(1)).get_string("server") == "v1"
            assert stat(server, "request_decoding_error") == 1
            await good.close()
            await bad.close()


async def test_idle_timeout_closes_silent_connections() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)], idle_timeout=0.2)
        async with running(config) as server:
            client = await client_of(server)
            assert (await client.call(1)).request_id == 1
            assert await client.wait_closed() == b""
            assert stat(server, "idle_timeout") == 1
            await client.close()


async def test_graceful_shutdown_finishes_requests_in_flight() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        server = ProxyServer(config, drain_timeout=5.0)
        await server.start()
        client = await client_of(server)
        port = server.listeners[0].port
        client.send(1, {"action": "hold"})
        await v1.wait_received(1)
        shutdown = asyncio.get_running_loop().create_task(server.shutdown())
        await asyncio.sleep(0)  # a yield: shutdown's first step (stop accepting) runs
        with pytest.raises(ConnectionRefusedError):
            await FakeClient().connect(port)
        v1.release_held()
        reply = await client.receive()
        assert reply.request_id == 1
        assert reply.get_string("server") == "v1"
        assert await shutdown is True
        assert await client.wait_closed() == b""
        await client.close()


async def test_admin_ready_and_stats(free_port: int) -> None:
    from dataclasses import replace

    from aeraki.proxy.config import AdminConfig, SocketAddress

    async with upstreams("v1") as (v1,):
        config = replace(
            listener(route("c1"), clusters=[cluster("c1", v1.port)]),
            admin=AdminConfig(address=SocketAddress("127.0.0.1", free_port)),
        )
        async with running(config):
            for path, expect in (
                ("/ready", "LIVE"),
                ("/stats", "request_decoding_success"),
                ("/config_dump", '"listeners"'),
                ("/clusters", "c1::127.0.0.1"),
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", free_port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                body = (await asyncio.wait_for(reader.read(), 5)).decode()
                writer.close()
                assert body.startswith("HTTP/1.1 200"), body
                assert expect in body, (path, body)


async def test_request_that_cannot_be_encoded_gets_a_local_reply() -> None:
    async with upstreams("v1") as (v1,):
        too_long = "k" * 70000  # the fake protocol's header keys are at most 65535 bytes
        config = listener(
            route("c1", request_mutation=[(too_long, "v")]), clusters=[cluster("c1", v1.port)]
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(3, {"method": "m"})
            assert is_error(reply, "UNSPECIFIED")
            assert "cannot encode request" in reply.get_string("error-message")
            assert v1.received == []
            await client.close()


async def test_hash_policy_pins_each_key_to_one_host_on_maglev() -> None:
    async with upstreams("a", "b", "c") as ups:
        config = listener(
            route("ring", hash_policy=["user"]),
            clusters=[cluster("ring", *(u.port for u in ups), lb=LbPolicy.MAGLEV)],
        )
        async with running(config) as server:
            client = await client_of(server)
            seen: dict[str, set[str]] = {}
            request_id = 0
            for user in (f"user-{n}" for n in range(30)):
                for _ in range(4):
                    request_id += 1
                    reply = await client.call(request_id, {"user": user})
                    seen.setdefault(user, set()).add(reply.get_string("server"))
            assert all(len(servers) == 1 for servers in seen.values()), seen
            spread = {next(iter(servers)) for servers in seen.values()}
            assert spread == {"a", "b", "c"}  # 30 keys over 3 hosts use every host
            await client.close()
