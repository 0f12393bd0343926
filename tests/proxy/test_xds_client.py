"""The proxy as an ADS client, against a scripted ADS server over real gRPC on loopback.

The scripted server answers every subscription with the resources the test set and records
each request, so ACKs, NACKs and their versions can be asserted exactly. (The control
plane's own server is tested against this client in the control-plane suites.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, duration_pb2

from aeraki.proxy.config import AdsConfig, ClusterConfig, EndpointConfig, ProxyConfig, SocketAddress
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.xds_apply import TYPE_CDS, TYPE_EDS, TYPE_LDS, TYPE_RDS
from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2 as mpp
from tests.proxy.harness import FakeClient, FakeUpstream, is_error

WAIT = 5.0


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _address(port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
    )


def eds_cluster(name: str) -> any_pb2.Any:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=1),
    )
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    return _pack(cluster)


def assignment(name: str, *ports: int) -> any_pb2.Any:
    endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=_address(p))
        )
        for p in ports
    ]
    return _pack(
        endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=endpoints)],
        )
    )


def meta_listener(name: str, port: int, rds: str) -> any_pb2.Any:
    proxy = mpp.MetaProtocolProxy(stat_prefix=name)
    proxy.protocol.name = "fake"
    proxy.protocol.codec.name = "aeraki.meta_protocol.codec.fake"
    proxy.rds.route_config_name = rds
    proxy.rds.config_source.CopyFrom(
        config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())
    )
    network_filter = listener_components_pb2.Filter(
        name="aeraki.meta_protocol_proxy", typed_config=_pack(proxy)
    )
    return _pack(
        listener_pb2.Listener(
            name=name,
            address=_address(port),
            filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
        )
    )


def routes(name: str, *rules: tuple[str | None, str]) -> any_pb2.Any:
    """An RDS carrier: each rule is (method to match exactly or None for any, cluster)."""
    out = []
    for method, cluster in rules:
        match = route_components_pb2.RouteMatch(prefix="")
        if method is not None:
            match.headers.add(name="method", exact_match=method)
        out.append(
            route_components_pb2.Route(
                match=match, route=route_components_pb2.RouteAction(cluster=cluster)
            )
        )
    host = route_components_pb2.VirtualHost(name="all", domains=["*"], routes=out)
    return _pack(route_pb2.RouteConfiguration(name=name, virtual_hosts=[host]))


class ScriptedAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Serves ``resources`` (type -> list) on SotW and delta streams; records requests."""

    def __init__(self) -> None:
        self.resources: dict[str, list[any_pb2.Any]] = {}
        self.versions: dict[str, int] = {}
        #: delta only: a resource's own version (by type and name) instead of its type's
        self.resource_versions: dict[tuple[str, str], str] = {}
        self.requests: list[Any] = []
        self.queues: list[asyncio.Queue[str]] = []
        self.changed = asyncio.Condition()

    def set(self, type_url: str, resources: list[any_pb2.Any]) -> None:
        self.resources[type_url] = resources
        self.versions[type_url] = self.versions.get(type_url, 0) + 1
        for queue in self.queues:
            queue.put_nowait(type_url)

    async def _record(self, request: Any) -> None:
        self.requests.append(request)
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[Any], bool]) -> Any:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: any(predicate(r) for r in self.requests)), WAIT
            )
        return next(r for r in self.requests if predicate(r))

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        async for response in self._serve(request_iterator, delta=False):
            yield response

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in self._serve(request_iterator, delta=True):
            yield response

    async def _serve(self, requests: AsyncIterator[Any], *, delta: bool) -> AsyncIterator[Any]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queues.append(queue)
        subscribed: set[str] = set()

        async def reader() -> None:
            async for request in requests:
                await self._record(request)
                if request.type_url not in subscribed and not request.response_nonce:
                    subscribed.add(request.type_url)
                    queue.put_nowait(request.type_url)

        task = asyncio.get_running_loop().create_task(reader())
        try:
            while True:
                type_url = await queue.get()
                if type_url not in subscribed or type_url not in self.resources:
                    continue
                version = str(self.versions[type_url])
                items = self.resources[type_url]
                if delta:
                    yield discovery_pb2.DeltaDiscoveryResponse(
                        type_url=type_url,
                        system_version_info=version,
                        nonce=f"{type_url}-{version}",
                        resources=[
                            discovery_pb2.Resource(
                                name=_name(r),
                                version=self.resource_versions.get((type_url, _name(r)), version),
                                resource=r,
                            )
                            for r in items
                        ],
                    )
                else:
                    yield discovery_pb2.DiscoveryResponse(
                        type_url=type_url,
                        version_info=version,
                        nonce=f"{type_url}-{version}",
                        resources=items,
                    )
        finally:
            task.cancel()
            self.queues.remove(queue)


def _name(resource: any_pb2.Any) -> str:
    for cls in (
        cluster_pb2.Cluster,
        listener_pb2.Listener,
        route_pb2.RouteConfiguration,
    ):
        message = cls()
        if resource.Unpack(message):
            return str(message.name)
    message = endpoint_pb2.ClusterLoadAssignment()
    resource.Unpack(message)
    return str(message.cluster_name)


@contextlib.asynccontextmanager
async def ads_server(port: int = 0) -> AsyncIterator[tuple[ScriptedAds, int, grpc.aio.Server]]:
    servicer = ScriptedAds()
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield servicer, bound, server
    finally:
        await server.stop(None)


def proxy_config(ads_port: int, *, delta: bool = False) -> ProxyConfig:
    return ProxyConfig(
        node_id="proxy-1",
        clusters=(
            ClusterConfig(
                name="xds",
                endpoints=(EndpointConfig(address=SocketAddress("127.0.0.1", ads_port)),),
            ),
        ),
        ads=AdsConfig(cluster="xds", delta=delta, lds=True, cds=True),
    )


def acked(type_url: str, version: str) -> Callable[[Any], bool]:
    def check(request: Any) -> bool:
        return bool(
            request.type_url == type_url
            and request.response_nonce == f"{type_url}-{version}"
            and not request.HasField("error_detail")
        )

    return check


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_configuration_arrives_and_route_changes_apply_on_open_connections(
    delta: bool, free_port_factory: Callable[[], int]
) -> None:
    v1, v2 = await FakeUpstream("v1").start(), await FakeUpstream("v2").start()
    listen_port = free_port_factory()
    async with ads_server() as (ads, ads_port, _):
        ads.set(TYPE_CDS, [eds_cluster("v1"), eds_cluster("v2")])
        ads.set(TYPE_EDS, [assignment("v1", v1.port), assignment("v2", v2.port)])
        ads.set(TYPE_LDS, [meta_listener("fake", listen_port, "fake-routes")])
        ads.set(TYPE_RDS, [routes("fake-routes", (None, "v1"))])
        proxy = ProxyServer(proxy_config(ads_port, delta=delta))
        await proxy.start()
        try:
            await asyncio.wait_for(proxy.wait_ready(), WAIT)
            for type_url in (TYPE_CDS, TYPE_EDS, TYPE_LDS, TYPE_RDS):
                await ads.wait_for(acked(type_url, "1"))
            dump = proxy.config_dump()
            assert [listener["name"] for listener in dump["listeners"]] == ["fake"]
            assert {c["name"] for c in dump["clusters"]} >= {"v1", "v2"}
            assert dump["rds_routes"]["fake-routes"][0]["cluster"] == "v1"
            assert dump["xds"]["types"]["envoy.config.route.v3.RouteConfiguration"]["version"]
            client = await FakeClient().connect(listen_port)
            assert (await client.call(1)).get_string("server") == "v1"
            ads.set(TYPE_RDS, [routes("fake-routes", (None, "v2"))])
            await ads.wait_for(acked(TYPE_RDS, "2"))
            # the same client connection, next request: the new route, no error
            assert (await client.call(2)).get_string("server") == "v2"
            assert proxy.listeners[0].runtime.stats.cx_total == 1
            await client.close()
        finally:
            await proxy.shutdown()
            v1.close()
            v2.close()


async def test_bad_routes_are_nacked_and_the_last_good_ones_stay(
    free_port_factory: Callable[[], int],
) -> None:
    v1 = await FakeUpstream("v1").start()
    listen_port = free_port_factory()
    async with ads_server() as (ads, ads_port, _):
        ads.set(TYPE_CDS, [eds_cluster("v1")])
        ads.set(TYPE_EDS, [assignment("v1", v1.port)])
        ads.set(TYPE_LDS, [meta_listener("fake", listen_port, "r")])
        ads.set(TYPE_RDS, [routes("r", ("known", "v1"))])
        proxy = ProxyServer(proxy_config(ads_port))
        await proxy.start()
        try:
            await asyncio.wait_for(proxy.wait_ready(), WAIT)
            bad = route_pb2.RouteConfiguration(name="r")
            host = bad.virtual_hosts.add(name="all", domains=["*"])
            rule = host.routes.add(route=route_components_pb2.RouteAction(cluster="v1"))
            rule.match.prefix = ""
            rule.match.headers.add(name="method").safe_regex_match.regex = "(unclosed"
            ads.set(TYPE_RDS, [_pack(bad)])
            nack = await ads.wait_for(
                lambda r: r.type_url == TYPE_RDS and r.HasField("error_detail")
            )
            assert "(unclosed" in nack.error_detail.message
            assert nack.version_info == "1"  # still on the last good version
            client = await FakeClient().connect(listen_port)
            assert (await client.call(1, {"method": "known"})).get_string("server") == "v1"
            assert is_error(await client.call(2, {"method": "other"}), "ROUTE_NOT_FOUND")
            await client.close()
        finally:
            await proxy.shutdown()
            v1.close()


async def test_removed_listener_stops_accepting(free_port_factory: Callable[[], int]) -> None:
    listen_port = free_port_factory()
    async with ads_server() as (ads, ads_port, _):
        ads.set(TYPE_CDS, [])
        ads.set(TYPE_LDS, [meta_listener("fake", listen_port, "r")])
        ads.set(TYPE_RDS, [routes("r", (None, "nowhere"))])
        proxy = ProxyServer(proxy_config(ads_port))
        await proxy.start()
        try:
            await asyncio.wait_for(proxy.wait_ready(), WAIT)
            client = await FakeClient().connect(listen_port)
            await client.close()
            ads.set(TYPE_LDS, [])
            await ads.wait_for(acked(TYPE_LDS, "2"))
            assert proxy.listeners == []
            with pytest.raises(ConnectionRefusedError):
                await FakeClient().connect(listen_port)
        finally:
            await proxy.shutdown()


async def test_proxy_keeps_serving_while_the_control_plane_is_away(
    free_port_factory: Callable[[], int],
) -> None:
    v1 = await FakeUpstream("v1").start()
    listen_port, ads_port = free_port_factory(), free_port_factory()
    resources = {
        TYPE_CDS: [eds_cluster("v1")],
        TYPE_EDS: [assignment("v1", v1.port)],
        TYPE_LDS: [meta_listener("fake", listen_port, "r")],
        TYPE_RDS: [routes("r", (None, "v1"))],
    }
    async with ads_server(ads_port) as (ads, _, _):
        for type_url, items in resources.items():
            ads.set(type_url, items)
        proxy = ProxyServer(proxy_config(ads_port))
        await proxy.start()
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
    try:
        assert proxy.xds is not None
        await asyncio.wait_for(proxy.xds.wait_connected(False), WAIT)
        client = await FakeClient().connect(listen_port)
        assert (await client.call(1)).get_string("server") == "v1"  # last config in force
        async with ads_server(ads_port) as (ads, _, _):  # the control plane comes back
            for type_url, items in resources.items():
                ads.set(type_url, items)
            await ads.wait_for(lambda r: r.type_url == TYPE_LDS)
            await asyncio.wait_for(proxy.xds.wait_connected(True), WAIT)
            assert (await client.call(2)).get_string("server") == "v1"
        await client.close()
    finally:
        await proxy.shutdown()
        v1.close()


async def test_node_metadata_reaches_the_control_plane() -> None:
    async with ads_server() as (ads, ads_port, _):
        ads.set(TYPE_CDS, [])
        ads.set(TYPE_LDS, [])
        config = dataclasses.replace(
            proxy_config(ads_port), node_metadata={"NAMESPACE": "meta", "SERVICES": ["a.b"]}
        )
        proxy = ProxyServer(config)
        await proxy.start()
        try:
            request = await ads.wait_for(lambda r: r.type_url == TYPE_LDS)
            assert request.node.id == "proxy-1"
            assert request.node.metadata["NAMESPACE"] == "meta"
            assert list(request.node.metadata["SERVICES"]) == ["a.b"]
        finally:
            await proxy.shutdown()
