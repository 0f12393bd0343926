"""The proxy's admin API over real HTTP: ``/config_dump`` with route policies and xDS
versions, ``/clusters`` (text and JSON) with live host state, runtime log levels."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from aeraki.proxy.config import (
    AdminConfig,
    FaultAbortConfig,
    FaultConfig,
    OutlierConfig,
    ProxyConfig,
    RetryOn,
    RetryPolicyConfig,
    SocketAddress,
)
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.xds_apply import TYPE_CDS, TYPE_EDS, TYPE_LDS, TYPE_RDS
from tests.proxy.harness import cluster, exact, listener, route
from tests.proxy.test_server import client_of, running, upstreams
from tests.proxy.test_xds_client import (
    WAIT,
    acked,
    ads_server,
    assignment,
    eds_cluster,
    meta_listener,
    proxy_config,
    routes,
)


async def http(port: int, method: str, path: str) -> tuple[int, str]:
    """One admin request; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = (await asyncio.wait_for(reader.read(), 5)).decode()
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return int(head.split()[1]), body


def with_admin(config: ProxyConfig, port: int) -> ProxyConfig:
    return replace(config, admin=AdminConfig(address=SocketAddress("127.0.0.1", port)))


async def test_config_dump_shows_route_policies_and_static_versions(free_port: int) -> None:
    retry = RetryPolicyConfig(num_retries=2, per_try_timeout=0.5, retry_on=RetryOn.RESET)
    fault = FaultConfig(abort=FaultAbortConfig(error_type="OVER_LIMIT", numerator=10))
    config = listener(
        route(
            "c1",
            match=[exact("method", "sayHello")],
            timeout=1.5,
            retry_policy=retry,
            fault=fault,
            request_mutation=[("foo", "bar")],
            hash_policy=["user"],
        ),
        clusters=[cluster("c1", 1)],
    )
    async with running(with_admin(config, free_port)):
        status, body = await http(free_port, "GET", "/config_dump")
    assert status == 200
    dump = json.loads(body)
    (live,) = dump["listeners"]
    assert live["version_info"] == "static"
    assert dump["clusters"][0]["version_info"] == "static"
    (dumped,) = live["proxy"]["route_table"]["routes"]
    assert dumped["timeout"] == 1.5
    assert dumped["retry_policy"]["num_retries"] == 2
    assert dumped["retry_policy"]["retry_on"] == ["reset"]
    assert dumped["fault"]["abort"]["error_type"] == "OVER_LIMIT"
    assert dumped["request_mutation"] == [["foo", "bar"]]
    assert dumped["hash_policy"] == ["user"]


async def test_config_dump_gives_each_dynamic_resource_its_xds_version(
    free_port_factory: Callable[[], int],
) -> None:
    listen_port, admin_port = free_port_factory(), free_port_factory()
    async with upstreams("v1") as (v1,), ads_server() as (ads, ads_port, _):
        ads.set(TYPE_CDS, [eds_cluster("v1")])
        ads.set(TYPE_EDS, [assignment("v1", v1.port)])
        ads.set(TYPE_LDS, [meta_listener("fake", listen_port, "fake-routes")])
        ads.set(TYPE_RDS, [routes("fake-routes", ("sayHello", "v1"))])
        proxy = ProxyServer(with_admin(proxy_config(ads_port), admin_port))
        await proxy.start()
        try:
            await asyncio.wait_for(proxy.wait_ready(), WAIT)
            for type_url in (TYPE_CDS, TYPE_EDS, TYPE_LDS, TYPE_RDS):
                await ads.wait_for(acked(type_url, "1"))
            ads.set(TYPE_RDS, [routes("fake-routes", ("other", "v1"))])
            await ads.wait_for(acked(TYPE_RDS, "2"))
            status, body = await http(admin_port, "GET", "/config_dump")
        finally:
            await proxy.shutdown()
    assert status == 200
    dump = json.loads(body)
    assert [(item["name"], item["version_info"]) for item in dump["listeners"]] == [("fake", "1")]
    versions = {item["name"]: item["version_info"] for item in dump["clusters"]}
    assert versions == {"xds": "static", "v1": "1"}
    eds = {item["name"]: item["endpoints_version_info"] for item in dump["clusters"]}
    assert eds == {"xds": "", "v1": "1"}
    assert dump["rds_versions"] == {"fake-routes": "2"}
    (dumped,) = dump["rds_routes"]["fake-routes"]
    assert dumped["cluster"] == "v1"
    assert dumped["match"][0]["value"] == "other"


async def test_config_dump_gives_delta_resources_their_own_versions(
    free_port_factory: Callable[[], int],
) -> None:
    ports = [free_port_factory() for _ in range(2)]
    async with upstreams("v1", "v2") as (v1, v2), ads_server() as (ads, ads_port, _):
        ads.resource_versions = {
            (TYPE_CDS, "v1"): "c-aaa",
            (TYPE_CDS, "v2"): "c-bbb",
            (TYPE_LDS, "a"): "l-111",
            (TYPE_LDS, "b"): "l-222",
        }
        ads.set(TYPE_CDS, [eds_cluster("v1"), eds_cluster("v2")])
        ads.set(TYPE_EDS, [assignment("v1", v1.port), assignment("v2", v2.port)])
        ads.set(
            TYPE_LDS,
            [
                meta_listener("a", ports[0], "fake-routes"),
                meta_listener("b", ports[1], "fake-routes"),
            ],
        )
        ads.set(TYPE_RDS, [routes("fake-routes", ("sayHello", "v1"))])
        proxy = ProxyServer(with_admin(proxy_config(ads_port, delta=True), free_port_factory()))
        await proxy.start()
        try:
            await asyncio.wait_for(proxy.wait_ready(), WAIT)
            for type_url in (TYPE_CDS, TYPE_EDS, TYPE_LDS, TYPE_RDS):
                await ads.wait_for(acked(type_url, "1"))
            dump = proxy.config_dump()
        finally:
            await proxy.shutdown()
    assert {item["name"]: item["version_info"] for item in dump["listeners"]} == {
        "a": "l-111",
        "b": "l-222",
    }
    clusters = {item["name"]: item for item in dump["clusters"] if item["name"] != "xds"}
    assert {name: c["version_info"] for name, c in clusters.items()} == {
        "v1": "c-aaa",
        "v2": "c-bbb",
    }
    # endpoints and routes carry no override here: each has its type's version, "1"
    assert {name: c["endpoints_version_info"] for name, c in clusters.items()} == {
        "v1": "1",
        "v2": "1",
    }
    assert dump["rds_versions"] == {"fake-routes": "1"}
    assert dump["xds"]["types"]["envoy.config.listener.v3.Listener"]["resource_versions"] == {
        "a": "l-111",
        "b": "l-222",
    }


async def test_clusters_show_active_requests_connections_and_health(free_port: int) -> None:
    async with upstreams("v1") as (v1,):
        port = v1.port
        config = listener(route("c1"), clusters=[cluster("c1", port)])
        async with running(with_admin(config, free_port)) as server:
            client = await client_of(server)
            client.send(1, {"action": "hold"})
            await v1.wait_received(1)
            status, text = await http(free_port, "GET", "/clusters")
            _, body = await http(free_port, "GET", "/clusters?format=json")
            v1.release_held()
            assert (await client.receive()).request_id == 1
            await client.close()
            _, after = await http(free_port, "GET", "/clusters")
    assert status == 200
    host = f"c1::127.0.0.1:{port}"
    lines = set(text.splitlines())
    assert {
        f"{host}::rq_active::1",
        f"{host}::cx_active::1",
        f"{host}::health_flags::healthy",
        f"{host}::outlier_ejections::0",
        "c1::default_priority::max_requests::1024",
        "c1::in_panic::false",
    } <= lines
    assert f"{host}::rq_active::0" in after.splitlines()
    (status_json,) = json.loads(body)["cluster_statuses"]
    assert status_json["name"] == "c1"
    assert status_json["host_statuses"][0]["rq_active"] == 1
    assert status_json["stats"]["upstream_rq_total"] == 1


async def test_clusters_show_an_ejected_host(free_port: int) -> None:
    """A host that refuses connections is ejected by outlier detection after one failure
    (connect failures count as gateway errors, so as 5xx): ``/clusters`` flags it and counts
    the ejection; the live host stays healthy."""
    async with upstreams("dead") as (dead,):
        dead_port = dead.port
    async with upstreams("v1") as (v1,):
        live_port = v1.port
        outlier = OutlierConfig(consecutive_5xx=1, max_ejection_percent=50)
        c1 = replace(cluster("c1", live_port, dead_port), outlier_detection=outlier)
        config = listener(route("c1"), clusters=[c1])
        async with running(with_admin(config, free_port)) as server:
            client = await client_of(server)
            for request_id in (1, 2):  # round robin: one call per host
                await client.call(request_id)
            await client.close()
            _, text = await http(free_port, "GET", "/clusters")
            _, body = await http(free_port, "GET", "/clusters?format=json")
    lines = set(text.splitlines())
    assert f"c1::127.0.0.1:{dead_port}::health_flags::/failed_outlier_check" in lines
    assert f"c1::127.0.0.1:{dead_port}::outlier_ejections::1" in lines
    assert f"c1::127.0.0.1:{live_port}::health_flags::healthy" in lines
    assert f"c1::127.0.0.1:{live_port}::outlier_ejections::0" in lines
    (status_json,) = json.loads(body)["cluster_statuses"]
    assert status_json["stats"]["upstream_cx_connect_fail"] == 1
    assert status_json["stats"]["outlier_detection_ejections_active"] == 1


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    names = [n for n in logging.root.manager.loggerDict if n.startswith("aeraki")]
    saved = {n: logging.getLogger(n).level for n in [*names, "aeraki"]}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_log_levels")
async def test_logging_levels_change_at_runtime(free_port: int) -> None:
    config = listener(route("c1"), clusters=[cluster("c1", 1)])
    async with running(with_admin(config, free_port)):
        status, body = await http(free_port, "POST", "/logging?level=debug")
        assert status == 200, body
        assert logging.getLogger("aeraki.proxy.server").getEffectiveLevel() == logging.DEBUG
        status, body = await http(free_port, "POST", "/logging?proxy.server=error")
        assert status == 200, body
        assert logging.getLogger("aeraki.proxy.server").level == logging.ERROR
        assert logging.getLogger("aeraki").level == logging.DEBUG
        status, listing = await http(free_port, "GET", "/logging")
        assert "  aeraki.proxy.server: error" in listing.splitlines()
        # a bad request changes nothing, and says what was wrong
        status, body = await http(free_port, "POST", "/logging?level=info&proxy.server=loud")
        assert status == 400
        assert "'loud'" in body
        assert logging.getLogger("aeraki").level == logging.DEBUG
        status, body = await http(free_port, "POST", "/logging?nosuch.logger=info")
        assert (status, "unknown logger 'nosuch.logger'" in body) == (400, True)
        status, _ = await http(free_port, "GET", "/logging?level=debug")
        assert status == 404  # changes are POST only
        status, _ = await http(free_port, "POST", "/config_dump")
        assert status == 404


async def test_stats_json_counts_requests(free_port: int) -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", v1.port)])
        async with running(with_admin(config, free_port)) as server:
            client = await client_of(server)
            assert (await client.call(1)).request_id == 1
            await client.close()
            status, body = await http(free_port, "GET", "/stats?format=json")
    assert status == 200
    stats = json.loads(body)
    assert stats["meta_protocol.fake.test.request"] == 1
    assert stats["cluster.c1.upstream_rq_total"] == 1
