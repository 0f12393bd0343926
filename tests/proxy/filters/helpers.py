"""Filter configs as protos and proxies running them (fake codec, real loopback TCP)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf import json_format

from aeraki.proxy.config import FilterConfig, ProxyConfig
from aeraki.proxy.server import ProxyServer
from aeraki.xds.gen.meta_protocol_proxy.filters.local_ratelimit.v1alpha import (
    local_ratelimit_pb2,
)
from aeraki.xds.gen.meta_protocol_proxy.filters.ratelimit.v1alpha import ratelimit_pb2
from aeraki.xds.gen.meta_protocol_proxy.filters.router.v1alpha import router_pb2

LOCAL = "aeraki.meta_protocol.filters.local_ratelimit"
GLOBAL = "aeraki.meta_protocol.filters.ratelimit"
ROUTER = "aeraki.meta_protocol.filters.router"


def local_config(data: dict[str, Any]) -> Any:
    """A ``LocalRateLimit`` from its JSON form."""
    return json_format.ParseDict(data, local_ratelimit_pb2.LocalRateLimit())


def global_config(data: dict[str, Any]) -> Any:
    """A ``RateLimit`` from its JSON form."""
    return json_format.ParseDict(data, ratelimit_pb2.RateLimit())


def with_filters(config: ProxyConfig, *filters: tuple[str, Any]) -> ProxyConfig:
    """``config`` with its first listener running ``filters`` before the router."""
    entries = (
        *(FilterConfig(name=name, config=cfg) for name, cfg in filters),
        FilterConfig(name=ROUTER, config=router_pb2.Router()),
    )
    first = config.listeners[0]
    proxy = dataclasses.replace(first.proxy, filters=entries)
    return dataclasses.replace(
        config, listeners=(dataclasses.replace(first, proxy=proxy), *config.listeners[1:])
    )


@asynccontextmanager
async def running(config: ProxyConfig) -> AsyncIterator[ProxyServer]:
    server = ProxyServer(config, drain_timeout=2.0)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


def local_limit_stats(server: ProxyServer, stat_prefix: str) -> dict[str, int]:
    """The local rate limit counters of the filter configured with ``stat_prefix``, by the
    reference's names (``meta_protocol.<stat_prefix>.local_rate_limit.<stat>``, §22.2)."""
    every = server.stats()
    assert not [n for n in every if n.startswith("meta_protocol.fake.test.local_rate_limit")]
    prefix = f"meta_protocol.{stat_prefix}.local_rate_limit."
    return {n: every[prefix + n] for n in ("ok", "rate_limited")}


def stats(server: ProxyServer, prefix: str, names: Sequence[str]) -> dict[str, int]:
    """The listener stats ``<prefix>.<name>`` of the test listener (``meta_protocol.fake.test``)."""
    every = server.stats()
    return {n: every[f"meta_protocol.fake.test.{prefix}.{n}"] for n in names}
