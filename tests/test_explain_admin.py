"""``aeraki explain --admin``: the configuration a running proxy holds, read back from its
admin API, explains a request exactly as the configuration it came from does — for a proxy
fed by a real control plane over ADS (RDS routes, EDS hosts) and for a bootstrap's static
listeners."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from aeraki.cli import main
from aeraki.control.cli import RUN_NODE_ID, local_proxy_bootstrap
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from aeraki.proxy.bootstrap import bootstrap_from_dict, load_bootstrap
from aeraki.proxy.config import AdminConfig, OutlierConfig, SocketAddress
from aeraki.proxy.server import ProxyServer
from tests.test_explain import DUBBO_FRAME, E2E, e2e_mesh

REPO = Path(__file__).resolve().parents[1]
WAIT = 10.0


def run_explain(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["explain", *argv, "--json", "--random", "42"]) == 0
    listeners: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["listeners"]
    return sorted(listeners, key=lambda t: t["listener"])


@asynccontextmanager
async def served_over_ads(root: Path, admin_port: int) -> AsyncIterator[str]:
    """A control plane on the manifests in ``root`` and our proxy as its ADS client, in sync;
    yields the proxy's admin address."""
    source = FileSource(root, interval=0.1)
    plane = ControlPlane(source, xds_port=0, quiet=0.05, max_delay=0.5)
    port = await plane.start()
    proxy = ProxyServer(bootstrap_from_dict(local_proxy_bootstrap(port, admin_port=admin_port)))
    await proxy.start()
    try:
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
        await plane.wait_until(lambda: plane.in_sync(RUN_NODE_ID), WAIT)
        yield f"127.0.0.1:{admin_port}"
    finally:
        await proxy.shutdown()
        await plane.stop()


async def test_a_proxy_fed_over_ads_explains_like_its_manifests(
    tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    root = e2e_mesh(tmp_path, E2E / "metarouters" / "metarouter-traffic-splitting.yaml")
    async with served_over_ads(root, free_port) as admin:
        for request in (["--frame", str(DUBBO_FRAME)], ["method=sayHello", "user=bob"]):
            live = await asyncio.to_thread(run_explain, capsys, "--admin", admin, *request)
            offline = run_explain(capsys, "--manifests", str(root), *request)
            assert live == offline
    (dubbo,) = live
    assert dubbo["metadata"]["user"] == "bob"
    assert dubbo["route_source"].startswith("RDS org.apache.dubbo.samples.basic.api.demoservice")
    assert len(dubbo["cluster"]["weights"]) == 2
    assert dubbo["host"]["hosts"] == 1  # the EDS hosts of the subset, from /clusters


async def test_a_bootstrap_proxy_explains_like_its_bootstrap(
    free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = REPO / "examples" / "bootstraps" / "dubbo.yaml"
    config = load_bootstrap(path)
    admin = AdminConfig(address=SocketAddress("127.0.0.1", free_port))
    proxy = ProxyServer(dataclasses.replace(config, admin=admin))
    await proxy.start()
    attributes = ["interface=org.apache.dubbo.samples.basic.api.DemoService", "method=sayHello"]
    try:
        live = await asyncio.to_thread(
            run_explain, capsys, "--admin", f"127.0.0.1:{free_port}", *attributes, "foo=bar"
        )
    finally:
        await proxy.shutdown()
    static = run_explain(capsys, "-c", str(path), *attributes, "foo=bar")
    for item in static:  # the proxy binds port 0 listeners to a real port
        item.pop("address")
    for item in live:
        item.pop("address")
    assert live == static
    assert live[0]["route"] is not None


def test_an_admin_address_that_does_not_answer_is_one_line(
    free_port_factory: Callable[[], int], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port_factory()
    assert main(["explain", "--admin", f"127.0.0.1:{port}", "method=x"]) == 1
    err = capsys.readouterr().err
    assert f"cannot fetch http://127.0.0.1:{port}/config_dump" in err


async def test_a_live_proxy_s_ejected_host_is_not_picked(
    free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Health comes from ``/clusters``: after outlier detection ejected the dead host, the
    explanation balances over the live one only, as the proxy now does."""
    from tests.proxy.harness import cluster, listener, route
    from tests.proxy.test_server import client_of, running, upstreams

    async with upstreams("dead") as (dead,):
        dead_port = dead.port
    async with upstreams("v1") as (v1,):
        live_port = v1.port
        outlier = OutlierConfig(consecutive_5xx=1, max_ejection_percent=50)
        c1 = dataclasses.replace(cluster("c1", live_port, dead_port), outlier_detection=outlier)
        admin = AdminConfig(address=SocketAddress("127.0.0.1", free_port))
        config = dataclasses.replace(listener(route("c1"), clusters=[c1]), admin=admin)
        async with running(config) as server:
            client = await client_of(server)
            for request_id in (1, 2):
                await client.call(request_id)
            await client.close()
            traces = []
            for seed in range(4):
                traces += await asyncio.to_thread(
                    run_explain, capsys, "--admin", f"127.0.0.1:{free_port}", "--seed", str(seed)
                )
    hosts = {t["host"]["host"] for t in traces}
    assert hosts == {f"127.0.0.1:{live_port}"}
    assert {(t["host"]["hosts"], t["host"]["healthy"]) for t in traces} == {(2, 1)}


def _offline_equivalent(listeners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A live proxy's filter steps as an offline view shows them: only the local rate limit's
    word on tokens differs (a live proxy's are not in its admin API)."""
    from aeraki.explain.filters import FRESH_TOKENS, LIVE_TOKENS

    for listener in listeners:
        for step in listener["filters"]:
            if step["details"].get("tokens") == LIVE_TOKENS:
                step["details"]["tokens"] = FRESH_TOKENS
                step["effect"] = step["effect"].removesuffix("; live tokens not shown")
    return listeners


async def test_a_live_proxy_s_rate_limits_explain_like_its_manifests(
    tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The filter configs come back from /config_dump (JSON) as the messages they were; the
    only difference is that a live proxy's bucket tokens are not shown."""
    from tests.explain.test_filters import LOCAL, RLS_SERVICE, limits_router

    limits = """\
  localRateLimit:
    tokenBucket: {fillInterval: 60s, maxTokens: 5, tokensPerFill: 5}
    conditions:
      - tokenBucket: {fillInterval: 60s, maxTokens: 2, tokensPerFill: 2}
        match: {attributes: {method: {exact: sayHello}}}
  globalRateLimit:
    domain: production
    match: {attributes: {method: {prefix: say}}}
    rateLimitService: "outbound|8081||rate-limit-server.metaprotocol.svc.cluster.local"
    requestTimeout: 2s
    descriptors: [{property: method, descriptorKey: method}]
"""
    root = e2e_mesh(tmp_path)
    (root / "limits.yaml").write_text(limits_router(limits))
    (root / "rls.yaml").write_text(RLS_SERVICE)
    async with served_over_ads(root, free_port) as admin:
        for request in (["--frame", str(DUBBO_FRAME)], ["method=whoami"]):
            live = await asyncio.to_thread(run_explain, capsys, "--admin", admin, *request)
            offline = run_explain(capsys, "--manifests", str(root), *request)
            (step, _, _) = live[0]["filters"]
            assert step["name"] == LOCAL
            assert step["effect"].endswith("; live tokens not shown")
            assert _offline_equivalent(live) == offline
    names = [f["name"].rsplit(".", 1)[1] for f in live[0]["filters"]]
    assert names == ["local_ratelimit", "ratelimit", "router"]
    assert live[0]["filters"][0]["details"]["bucket"] == "default"  # method=whoami


async def test_a_bootstrap_proxy_s_filters_explain_like_its_bootstrap(
    free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = REPO / "tests" / "test_explain_data" / "filters.yaml"
    config = load_bootstrap(path)
    admin = AdminConfig(address=SocketAddress("127.0.0.1", free_port))
    proxy = ProxyServer(dataclasses.replace(config, admin=admin))
    await proxy.start()
    try:
        live = await asyncio.to_thread(
            run_explain, capsys, "--admin", f"127.0.0.1:{free_port}", "method=sayHello"
        )
    finally:
        await proxy.shutdown()
    static = run_explain(capsys, "-c", str(path), "method=sayHello")
    for item in static + live:  # the proxy binds port 0 listeners to a real port
        item.pop("address")
    assert _offline_equivalent(live) == static
    assert len(live[0]["filters"]) == 5
