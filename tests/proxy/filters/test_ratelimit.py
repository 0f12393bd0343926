"""Global rate limit: the filter against a real RLS (grpc.aio, the real proto) in a running
proxy — descriptors sent, OVER_LIMIT answered, failures both ways, the deadline, a client
that leaves while its request waits — and the config checks."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aeraki.codec.api import ErrorType, Metadata
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap import ConfigErrors, bootstrap_from_dict
from aeraki.proxy.filters.ratelimit import (
    DEFAULT_TIMEOUT,
    RateLimitFilter,
    check_config,
    compile_settings,
)
from aeraki.proxy.server import ProxyServer
from tests.integration.peers.rls import RateLimitServer
from tests.proxy.filters.helpers import GLOBAL, global_config, running, stats, with_filters
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, is_error, listener, route
from tests.proxy.test_bootstrap import TC, base, tc

STATS = ["ok", "over_limit", "error", "failure_mode_allowed"]
OVER_LIMIT = ErrorType.OVER_LIMIT.name
HELLO = (("method", "sayHello"),)


def rls_config(
    *,
    match: list[dict[str, Any]] | None = None,
    deny: bool = True,
    timeout: str | None = "5s",
    cluster_name: str = "rls",
) -> Any:
    data: dict[str, Any] = {
        "domain": "production",
        "failure_mode_deny": deny,
        "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": cluster_name}}},
        "descriptors": [
            {"property": "method", "descriptor_key": "method"},
            {"property": "user", "descriptor_key": "who"},
        ],
    }
    if match is not None:
        data["match"] = {"metadata": match}
    if timeout is not None:
        data["timeout"] = timeout
    return global_config(data)


@asynccontextmanager
async def proxy_with(config: Any, rls_port: int) -> AsyncIterator[tuple[ProxyServer, FakeUpstream]]:
    """A proxy routing everything to one fake upstream, the RLS cluster on ``rls_port``."""
    up = await FakeUpstream("v1").start()
    try:
        proxy_config = with_filters(
            listener(route("c1"), clusters=[cluster("c1", up.port), cluster("rls", rls_port)]),
            (GLOBAL, config),
        )
        async with running(proxy_config) as server:
            yield server, up
    finally:
        up.close()


async def calls(server: ProxyServer, headers: list[dict[str, str]]) -> list[Metadata]:
    """One request per header set, each answered before the next, on one connection."""
    client = await FakeClient().connect(server.listeners[0].port)
    try:
        return [await client.call(i + 1, h) for i, h in enumerate(headers)]
    finally:
        await client.close()


async def test_over_limit_answer_is_an_over_limit_reply_and_descriptors_are_sent() -> None:
    async with RateLimitServer({("production", HELLO): 2}) as rls:
        async with proxy_with(rls_config(), rls.port) as (server, up):
            replies = await calls(server, [{"method": "sayHello"}] * 3 + [{"method": "other"}])
            assert [is_error(r, OVER_LIMIT) for r in replies] == [False, False, True, False]
            assert "has been rate limited" in replies[2].get_string("error-message")
            assert len(up.received) == 3
            assert stats(server, "ratelimit", STATS) == {
                "ok": 3,
                "over_limit": 1,
                "error": 0,
                "failure_mode_allowed": 0,
            }
        # One descriptor per configured entry, one entry each; a missing property is "".
        assert rls.seen()[0] == ("production", [HELLO, (("who", ""),)])
        assert rls.seen()[3] == ("production", [(("method", "other"),), (("who", ""),)])


async def test_only_matching_requests_ask_and_an_empty_match_means_all() -> None:
    match = [{"name": "method", "exact_match": "sayHello"}]
    async with RateLimitServer() as rls:
        async with proxy_with(rls_config(match=match), rls.port) as (server, _):
            await calls(server, [{"method": "sayHello"}, {"method": "other"}, {}])
        assert len(rls.requests) == 1
    async with RateLimitServer() as rls:
        async with proxy_with(rls_config(match=[]), rls.port) as (server, _):
            await calls(server, [{"method": "sayHello"}, {"method": "other"}, {}])
        assert len(rls.requests) == 3  # the reference limits none of them (§22.3 defect)


@pytest.mark.parametrize("deny", [True, False])
async def test_unreachable_service_follows_failure_mode(deny: bool, free_port: int) -> None:
    async with proxy_with(rls_config(deny=deny), free_port) as (server, up):
        replies = await calls(server, [{"method": "sayHello"}] * 2)
        assert [is_error(r, OVER_LIMIT) for r in replies] == [deny, deny]
        assert len(up.received) == (0 if deny else 2)
        assert stats(server, "ratelimit", STATS) == {
            "ok": 0,
            "over_limit": 0,
            "error": 2,
            "failure_mode_allowed": 0 if deny else 2,
        }
    if deny:
        assert "failure_mode_deny" in replies[0].get_string("error-message")


@pytest.mark.parametrize("deny", [True, False])
async def test_missing_cluster_is_a_failed_call(deny: bool, free_port: int) -> None:
    config = rls_config(deny=deny, cluster_name="nowhere")
    async with proxy_with(config, free_port) as (server, up):
        (reply,) = await calls(server, [{"method": "sayHello"}])
        assert is_error(reply, OVER_LIMIT) is deny
        assert len(up.received) == (0 if deny else 1)
    if deny:
        assert "unknown cluster 'nowhere'" in reply.get_string("error-message")


@pytest.mark.parametrize("deny", [True, False])
async def test_service_slower_than_the_timeout_is_a_failed_call(deny: bool) -> None:
    """The service holds its answer until released: the request is decided without it, so
    the deadline was honoured (no wall-clock assertion)."""
    async with RateLimitServer({("production", HELLO): 0}) as rls:
        rls.hold()
        async with proxy_with(rls_config(deny=deny, timeout="0.05s"), rls.port) as (server, up):
            (reply,) = await calls(server, [{"method": "sayHello"}])
            assert rls.answered == 0  # still held: the proxy did not wait for it
            assert is_error(reply, OVER_LIMIT) is deny
            assert len(up.received) == (0 if deny else 1)
            assert stats(server, "ratelimit", ["error"]) == {"error": 1}
            rls.release()


async def test_a_waiting_request_does_not_block_the_connection() -> None:
    """While one request waits for the service, a later one on the same connection (not
    matched) is answered: the call does not block the event loop or the connection."""
    match = [{"name": "method", "exact_match": "sayHello"}]
    async with RateLimitServer() as rls:
        rls.hold()
        async with proxy_with(rls_config(match=match), rls.port) as (server, up):
            client = await FakeClient().connect(server.listeners[0].port)
            client.send(1, {"method": "sayHello"})
            await rls.wait_requests(1)
            client.send(2, {"method": "other"})
            first = await client.receive()
            assert first.request_id == 2
            rls.release()
            second = await client.receive()
            assert second.request_id == 1
            assert not is_error(second, OVER_LIMIT)
            await client.close()
            assert [md.get_string("method") for md in up.received] == ["other", "sayHello"]


async def test_request_whose_client_left_is_not_resumed() -> None:
    async with RateLimitServer() as rls:
        rls.hold()
        async with proxy_with(rls_config(), rls.port) as (server, up):
            client = await FakeClient().connect(server.listeners[0].port)
            client.send(1, {"method": "sayHello"})
            await rls.wait_requests(1)
            # A reset, not a half-close (after which the proxy would still answer).
            assert client.writer is not None
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.writer.transport.abort()
            runtime = server.listeners[0].runtime
            await asyncio.wait_for(runtime._drained.wait(), 5.0)  # the connection is gone
            assert runtime.stats.cx_destroy_remote_with_active_rq == 1  # it was waiting
            (rate_limit,) = runtime.decoder_filters
            assert isinstance(rate_limit, RateLimitFilter)
            waiting = list(rate_limit.client.tasks)
            assert len(waiting) == 1
            rls.release()
            await asyncio.wait_for(asyncio.gather(*waiting), 5.0)  # the answer was handled
            assert stats(server, "ratelimit", ["ok"]) == {"ok": 1}
            assert up.received == []


# -- config -----------------------------------------------------------------------------------
def test_settings_defaults_and_property_case() -> None:
    config = rls_config(timeout=None)
    settings = compile_settings(config)
    assert settings.timeout == DEFAULT_TIMEOUT == 0.020
    assert settings.descriptors == (("method", "method"), ("who", "user"))
    assert settings.match.tests == ()
    refs: list[tuple[str, str]] = []
    assert check_config(config, "c", refs) == []
    assert refs == [("c.rate_limit_service.grpc_service.envoy_grpc.cluster_name", "rls")]


@pytest.mark.parametrize(
    ("data", "path", "text"),
    [
        ({"domain": ""}, "c.domain", "required"),
        ({"descriptors": []}, "c.descriptors", "at least one"),
        ({"descriptors": [{"property": "m"}]}, "c.descriptors[0].descriptor_key", "required"),
        ({"timeout": "0s"}, "c.timeout", "positive"),
        (
            {"rate_limit_service": {}},
            "c.rate_limit_service.grpc_service.envoy_grpc.cluster_name",
            "required",
        ),
        (
            {
                "rate_limit_service": {
                    "grpc_service": {"envoy_grpc": {"cluster_name": "x"}},
                    "transport_api_version": "V2",
                }
            },
            "c.rate_limit_service.transport_api_version",
            "V3",
        ),
        (
            {"match": {"metadata": [{"name": "", "exact_match": "x"}]}},
            "c.match.metadata[0].name",
            "must not be empty",
        ),
    ],
)
def test_config_errors_name_their_path(data: dict[str, Any], path: str, text: str) -> None:
    good = {
        "domain": "d",
        "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "rls"}}},
        "descriptors": [{"property": "method", "descriptor_key": "method"}],
    }
    config = global_config(good | data)
    errors = {e.path: e.message for e in check_config(config, "c", [])}
    assert path in errors, errors
    assert text in errors[path]
    with pytest.raises(ConfigError):
        compile_settings(config)


def test_bootstrap_checks_the_service_cluster_and_unsupported_fields() -> None:
    url = "type.googleapis.com/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit"
    service = {"grpc_service": {"envoy_grpc": {"cluster_name": "c"}}}
    config = {
        "@type": url,
        "domain": "d",
        "rate_limit_service": service,
        "descriptors": [{"property": "method", "descriptor_key": "method"}],
    }
    good = base()
    tc(good)["meta_protocol_filters"] = [
        {"name": GLOBAL, "config": config},
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    assert bootstrap_from_dict(good, "t.yaml").listeners[0].proxy.filters[0].name == GLOBAL

    bad = base()
    unknown = {"grpc_service": {"envoy_grpc": {"cluster_name": "nope"}, "timeout": "1s"}}
    tc(bad)["meta_protocol_filters"] = [
        {"name": GLOBAL, "config": config | {"rate_limit_service": unknown}},
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(bad, "t.yaml")
    where = TC + ".meta_protocol_filters[0].config.rate_limit_service.grpc_service"
    errors = {p.path: p.message for p in info.value.problems}
    assert errors[where + ".timeout"] == "not supported yet"
    assert errors[where + ".envoy_grpc.cluster_name"] == "unknown cluster 'nope'"
