# ruff: noqa: F811  (pytest fixtures imported from test_xds_envoy are parameters here)
"""Real Envoy accepts our state-of-the-world responses that carry only what changed.

For every type but LDS and CDS the xDS protocol lets a SotW response hold just the changed
resources (absence deletes nothing), and our server does so (``control/xds/streams.py``): one
MetaRouter edit sends one route configuration, not all of them. Here Envoy holds two RDS route
tables and two EDS clusters; changing one of each must update it while the other keeps serving
— checked through Envoy's own traffic and config dump, and in our server's per-stream counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aeraki.control.xds import (
    ENDPOINT_TYPE,
    ROUTE_TYPE,
    Snapshot,
    SnapshotCache,
    XdsServer,
)
from tests.control.xds.resources import eds_cluster, load_assignment, tcp_listener
from tests.integration.peers.envoy import Envoy
from tests.integration.peers.procs import free_ports
from tests.integration.test_xds_envoy import (
    NODE,
    Ports,
    acked,
    api_type,  # noqa: F401  (a fixture launch_envoy uses; SotW is the case that matters)
    direct_routes,
    echo,  # noqa: F401
    echo_through,
    eventually,
    http_get,
    http_listener,
    launch_envoy,  # noqa: F401
    ports,  # noqa: F401
)


def rds_updates(envoy: Envoy) -> dict[str, int]:
    """Envoy's ``update_success`` count of each RDS route table (HCM stat prefix = listener)."""
    stats = envoy.stats(r"\.rds\.r[12]\.update_success$")
    return {
        table: stats.get(f"http.{listener}.rds.{table}.update_success", -1)
        for listener, table in (("http1", "r1"), ("http2", "r2"))
    }


def two_of_each(ports: Ports, extra: tuple[int, int], r1: str, r2: str, c2_port: int) -> Snapshot:
    http1, http2 = extra
    tcp2 = ports.tcp
    return Snapshot.from_messages(
        eds_cluster("c1"),
        eds_cluster("c2"),
        load_assignment("c1", ports.echo),
        load_assignment("c2", c2_port),
        http_listener("http1", http1, "r1"),
        http_listener("http2", http2, "r2"),
        tcp_listener("tcp2", tcp2, "c2"),
        direct_routes("r1", r1),
        direct_routes("r2", r2),
    )


async def test_only_changed_routes_and_endpoints_are_sent_and_the_rest_keeps_serving(
    ports: Ports,
    echo: asyncio.Server,
    launch_envoy: Callable[[], Awaitable[Envoy]],
    api_type: str,
) -> None:
    http1, http2, dead = free_ports(3)
    cache = SnapshotCache()
    server = XdsServer(cache)
    await server.start("127.0.0.1", ports.xds)
    try:
        first = two_of_each(ports, (http1, http2), "one", "two", dead)
        cache.set_snapshot(NODE, first)
        envoy = await launch_envoy()
        await eventually(lambda: acked(server, first), "Envoy to ACK every type")
        assert await asyncio.to_thread(http_get, http1) == "one"
        assert await asyncio.to_thread(http_get, http2) == "two"
        before = await asyncio.to_thread(rds_updates, envoy)
        assert min(before.values()) >= 1  # both tables were received once

        # r1 and c2 change (c2 now points at the echo server); r2 and c1 do not.
        second = two_of_each(ports, (http1, http2), "one, edited", "two", ports.echo)
        responses = server.stats.responses_total
        cache.set_snapshot(NODE, second)
        await eventually(lambda: acked(server, second), "Envoy to ACK the change")
        await eventually(
            lambda: http_get(http1) == "one, edited", "the edited route", blocking=True
        )
        assert await asyncio.to_thread(http_get, http2) == "two"  # not re-sent, still served
        assert await echo_through(ports.tcp, b"via c2") == b"via c2"  # c2's new endpoint
        assert server.stats.responses_total - responses == 2  # one RDS and one EDS response
        # Envoy saw r1 updated and r2 not even mentioned (it counts updates per route table).
        after = await asyncio.to_thread(rds_updates, envoy)
        assert (after["r1"] - before["r1"], after["r2"] - before["r2"]) == (1, 0)
        sent = second.resources(ROUTE_TYPE)["r1"], second.resources(ENDPOINT_TYPE)["c2"]
        assert all(
            res.version != first.resources(t)[res.name].version
            for res, t in zip(sent, (ROUTE_TYPE, ENDPOINT_TYPE), strict=True)
        )
    finally:
        await server.stop(None)
