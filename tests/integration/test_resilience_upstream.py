# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""Circuit breaking, outlier detection and TCP health checks with real peers (issue 4 items 3–4).

- Manifests → control plane → our proxy (the e2e harness of test_control_e2e): a
  DestinationRule ``connectionPool`` of 1 connection + 1 pending request answers the third
  concurrent Thrift call with OverLimit at once; ``outlierDetection`` ejects the Dubbo
  provider that returned errors (it then gets no traffic) and re-admits it after
  ``baseEjectionTime``.
- ``aeraki proxy`` as a process with a bootstrap cluster that health-checks two Thrift
  servers: one killed by PID is marked unhealthy and gets no traffic; restarted on the same
  port it is marked healthy again.
- The same DestinationRule translated for a stock Envoy node: Envoy ACKs the clusters and
  runs the circuit breakers and outlier detection we sent.

Every wait is for a fact (a stat, a host flag, an ACK), polled with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from thriftpy2.thrift import TApplicationException

from aeraki.control.translate import NodeInfo, TranslateOptions, translate
from aeraki.control.validation import load_config
from aeraki.control.xds import (
    Snapshot,
    SnapshotCache,
    XdsServer,
)
from aeraki.proxy.admin import admin_routes
from aeraki.proxy.upstream.cluster import Cluster
from tests.integration.aeraki_proxy import (
    bootstrap,
    meta_listener,
    meta_route,
    new_port,
    start_aeraki_proxy,
    static_cluster,
)
from tests.integration.peers.dubbo import STATUS_OK, DubboProvider, request_frame
from tests.integration.peers.envoy import ads_bootstrap, envoy_binary, start_envoy
from tests.integration.peers.procs import (
    LOOPBACK,
    REPO_ROOT,
    ProcessGroup,
    free_ports,
    poll_until,
    wait_for_port,
)
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import start_thrift_server
from tests.integration.test_control_e2e import (
    DUBBO,
    THRIFT,
    WAIT,
    Mesh,
    dubbo_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    mesh,  # noqa: F401
    route,
    thrift_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    thrift_router,
)


def _cluster(mesh: Mesh, host: str, subset: str, port: int) -> Cluster:
    cluster = mesh.proxy.clusters.get(f"outbound|{port}|{subset}|{host}")
    assert cluster is not None, sorted(mesh.proxy.clusters.clusters)
    return cluster


def _with_policy(text: str, subset: str, policy: str) -> str:
    """The mesh's ServiceEntry + DestinationRule text with ``policy`` on ``subset``
    (``subset`` "" = the top-level trafficPolicy)."""
    if not subset:
        return text + f"  trafficPolicy: {policy}\n"
    entry = f"    - {{name: {subset}, labels: {{version: {subset}}}}}"
    assert entry in text
    return text.replace(
        entry, f"    - {{name: {subset}, labels: {{version: {subset}}}, trafficPolicy: {policy}}}"
    )


# --------------------------------------------------------------------------- circuit breaking


async def test_third_concurrent_call_gets_over_limit_at_once(mesh: Mesh) -> None:
    pool = "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}"
    text = (mesh.root / "thrift.yaml").read_text()
    await mesh.apply("thrift.yaml", _with_policy(text, "v1", pool))
    await mesh.apply("thrift-route.yaml", thrift_router(route("v1", (THRIFT, "v1", None))))
    stats = _cluster(mesh, THRIFT, "v1", mesh.thrift_port).stats
    results: dict[str, str] = {}

    def slow_call(name: str) -> None:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.thrift_port) as c:
            results[name] = c.slow(1500)

    first = asyncio.create_task(asyncio.to_thread(slow_call, "first"))
    await mesh.plane.wait_until(lambda: stats.upstream_rq_active == 1, WAIT)
    second = asyncio.create_task(asyncio.to_thread(slow_call, "second"))
    await mesh.plane.wait_until(lambda: stats.upstream_rq_pending_active == 1, WAIT)

    def third_call() -> str:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.thrift_port) as c:
            try:
                return str(c.whoami())
            except TApplicationException as exc:
                return f"error: {exc.message}"

    third = await asyncio.to_thread(third_call)
    assert third == "error: meta protocol upstream request: too many pending requests"
    await asyncio.gather(first, second)
    assert results == {"first": "v1", "second": "v1"}
    assert stats.upstream_rq_pending_overflow == 1
    assert stats.upstream_cx_total == 1  # never more than the one connection
    assert (
        mesh.proxy.stats()[
            f"cluster.outbound|{mesh.thrift_port}|v1|{THRIFT}.upstream_rq_pending_overflow"
        ]
        == 1
    )


# --------------------------------------------------------------------------- outlier detection


def _dubbo_fail_frames(count: int) -> list[bytes]:
    return [request_frame(i + 1, "fail", ["boom"]) for i in range(count)]


async def test_host_returning_errors_is_ejected_then_readmitted(
    mesh: Mesh, dubbo_pair: tuple[DubboProvider, DubboProvider]
) -> None:
    """Both providers answer ``fail`` with an exception (an error response); the first to
    fail twice in a row is ejected, and ejecting the other one too would exceed
    maxEjectionPercent 50. The ejected one gets no traffic until baseEjectionTime has
    passed, then takes its share again."""
    outlier = (
        "{outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 2s,"
        " maxEjectionPercent: 50}}"
    )
    text = (mesh.root / "dubbo.yaml").read_text()
    await mesh.apply("dubbo.yaml", _with_policy(text, "", outlier))
    cluster = _cluster(mesh, DUBBO, "", mesh.dubbo_port)
    replies = await asyncio.to_thread(mesh.dubbo, _dubbo_fail_frames(4))
    assert [r.status for r in replies] == [STATUS_OK] * 4  # exceptions travel with status OK
    ejected = [h for h in cluster.hosts if h.failed_outlier_check]
    assert len(ejected) == 1, cluster.hosts
    assert cluster.stats.outlier_detection_ejections_enforced_consecutive_5xx == 1
    page = await asyncio.to_thread(_admin_clusters, mesh)
    assert f"{ejected[0].key}::health_flags::/failed_outlier_check" in page
    label = {f"127.0.0.1:{d.port}": d.label for d in dubbo_pair}[ejected[0].key]
    survivor = {"v1", "v2"} - {label}
    assert set(await asyncio.to_thread(mesh.dubbo_values, "whoami", (), 20)) == survivor
    await mesh.plane.wait_until(lambda: ejected[0].healthy, WAIT)
    assert set(await asyncio.to_thread(mesh.dubbo_values, "whoami", (), 20)) == {"v1", "v2"}
    assert cluster.stats.outlier_detection_ejections_active == 0


def _admin_clusters(mesh: Mesh) -> str:
    status, _, body = admin_routes(mesh.proxy)["/clusters"]()
    assert status == 200
    return body


# --------------------------------------------------------------------------- TCP health checks


def _thrift_argv(port: int, label: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.integration.peers.thrift_server",
        "--impl",
        "thriftpy2",
        "--transport",
        "framed",
        "--protocol",
        "binary",
        "--port",
        str(port),
        "--label",
        label,
    ]


def _host_flags(admin: Callable[[str], str], port: int) -> str:
    for line in admin("/clusters").splitlines():
        if f"127.0.0.1:{port}::health_flags::" in line:
            return line.rsplit("::", 1)[1]
    return ""


def test_tcp_health_check_follows_a_killed_and_restarted_server(
    peers: ProcessGroup, tmp_path: Path
) -> None:
    v1 = start_thrift_server(peers, "thriftpy2", "framed", "binary", label="v1")
    v2 = start_thrift_server(peers, "thriftpy2", "framed", "binary", label="v2")
    cluster = static_cluster("echo", [v1.port, v2.port])
    cluster["health_checks"] = [
        {
            "timeout": "0.5s",
            "interval": "0.1s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 2,
            "tcp_health_check": {},
        }
    ]
    listen = new_port()
    config = bootstrap(
        [meta_listener("echo", listen, "thrift", [meta_route("echo")])], [cluster], new_port()
    )
    proxy = start_aeraki_proxy(peers, config, tmp_path)

    def labels(calls: int) -> Counter[str]:
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, listen) as c:
            return Counter(c.whoami() for _ in range(calls))

    def flags_are(port: int, flags: str) -> Callable[[], bool]:
        return lambda: _host_flags(proxy.admin, port) == flags

    poll_until(flags_are(v1.port, "healthy"), timeout=WAIT, what="v1 checked healthy")
    poll_until(flags_are(v2.port, "healthy"), timeout=WAIT, what="v2 checked healthy")
    assert set(labels(20)) == {"v1", "v2"}

    peers.stop(v2.process)  # killed by PID
    poll_until(flags_are(v2.port, "/failed_active_hc"), timeout=WAIT, what="v2 unhealthy")
    assert labels(20) == {"v1": 20}  # no call fails: the dead host gets no traffic

    restarted = peers.spawn(
        "thrift-v2-restarted",
        _thrift_argv(v2.port, "v2"),
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        port=v2.port,
    )
    wait_for_port(LOOPBACK, v2.port, alive=restarted.alive, what="restarted v2")
    poll_until(flags_are(v2.port, "healthy"), timeout=WAIT, what="v2 healthy again")
    assert set(labels(20)) == {"v1", "v2"}
    stats = proxy.stats()
    assert stats["cluster.echo.health_check_failure"] >= 2
    assert stats["cluster.echo.health_check_healthy"] == 2


# --------------------------------------------------------------------------- real Envoy


NATIVE_DUBBO = """\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: dubbo-demoservice
  namespace: dubbo
  annotations: {interface: org.apache.dubbo.samples.basic.api.DemoService}
spec:
  hosts: [org.apache.dubbo.samples.basic.api.demoservice]
  addresses: [127.0.0.1]
  ports: [{number: LISTEN, name: tcp-dubbo-demo, protocol: TCP}]
  resolution: STATIC
  endpoints:
    - {address: 127.0.0.1, ports: {tcp-dubbo-demo: 1}, labels: {version: v1}}
    - {address: 127.0.0.1, ports: {tcp-dubbo-demo: 2}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: dubbo-sample-provider
  namespace: dubbo
spec:
  host: org.apache.dubbo.samples.basic.api.demoservice
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10}
      http: {http1MaxPendingRequests: 5, http2MaxRequests: 20, maxRequestsPerConnection: 100,
             maxRetries: 2}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 15s,
                       maxEjectionPercent: 50}
  subsets:
    - name: v1
      labels: {version: v1}
      trafficPolicy:
        outlierDetection: {consecutiveErrors: 4, splitExternalLocalOriginErrors: true,
                           consecutiveLocalOriginFailures: 2}
    - {name: v2, labels: {version: v2}}
"""


async def test_real_envoy_acks_circuit_breakers_and_outlier_detection(
    peers: ProcessGroup, tmp_path: Path
) -> None:
    if envoy_binary() is None:
        pytest.fail("Envoy binary not installed; run `make setup`")
    listen, xds = free_ports(2)
    manifest = tmp_path / "dubbo.yaml"
    manifest.write_text(NATIVE_DUBBO.replace("LISTEN", str(listen)))
    config = load_config([manifest])
    assert not config.errors, [p.format() for p in config.errors]
    node = NodeInfo(id="envoy-cb", cluster="cb", metadata={"AERAKI_DATA_PLANE": "envoy"})
    translation = translate(config, node, TranslateOptions())
    clusters = [r for r in translation.resources if isinstance(r, cluster_pb2.Cluster)]
    assert sum(c.HasField("circuit_breakers") for c in clusters) == 3  # subsets inherit
    assert sum(c.HasField("outlier_detection") for c in clusters) == 3
    snap = Snapshot.from_messages(*translation.resources)
    cache = SnapshotCache()
    cache.set_snapshot(node.id, snap)
    server = XdsServer(cache)
    port = await server.start(LOOPBACK, xds)
    text = ads_bootstrap(node_id=node.id, node_cluster="cb", api_type="GRPC", xds_port=port)
    envoy = await asyncio.to_thread(start_envoy, peers, text, work_dir=tmp_path / "envoy")
    try:
        types = snap.type_urls()

        def acked() -> bool:
            proxies = [p for p in server.proxies() if p.node_id == node.id]
            if not proxies:
                return False
            nacks = {s.type_url: s.last_nack_reason for s in proxies[0].types.values() if s.nacks}
            assert not nacks, nacks
            return all(proxies[0].acked_version(t) == snap.version(t) for t in types)

        await _eventually(acked)
        dump = json.loads(
            await asyncio.to_thread(
                envoy.admin_get, "/config_dump?resource=dynamic_active_clusters"
            )
        )
        live = {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}
        for cluster in clusters:
            running = live[cluster.name]
            assert ("circuit_breakers" in running) == cluster.HasField("circuit_breakers")
            assert ("outlier_detection" in running) == cluster.HasField("outlier_detection")
            if cluster.typed_extension_protocol_options:
                assert "typed_extension_protocol_options" in running, running
        assert all(v == 0 for v in envoy.stats(r"\.update_rejected$").values())
    finally:
        await asyncio.to_thread(peers.stop, envoy.process)
        await server.stop(None)


async def _eventually(check: Callable[[], bool]) -> None:
    for _ in range(int(WAIT / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)  # poll interval of a bounded wait for Envoy's ACK
    raise AssertionError("Envoy did not ACK in time")
