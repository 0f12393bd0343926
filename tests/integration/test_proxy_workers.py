# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""``aeraki proxy --workers N`` with real peers: the workers share the listeners, the
supervisor's admin sums what they did, a local rate limit is one limit for all of them, a
killed worker is replaced, and each worker gets its configuration over its own ADS stream.

Connections are spread by the kernel (SO_REUSEPORT hashes each connection's 4-tuple), so the
tests open many short connections: with 2 workers and 24 connections, the chance that one
worker gets none is 2 * 2**-24. Every wait is a bounded poll of an observable fact.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aeraki.control.cli import RUN_NODE_ID, local_proxy_bootstrap
from aeraki.control.runtime import ControlPlane
from aeraki.control.sources.files import FileSource
from tests.integration.aeraki_proxy import (
    REPO_ROOT,
    AerakiProxy,
    bootstrap,
    meta_listener,
    meta_route,
    new_port,
    start_aeraki_proxy,
    static_cluster,
)
from tests.integration.peers.procs import LOOPBACK, ProcessGroup, free_ports, poll_until
from tests.integration.peers.prometheus import prometheus_binary, start_prometheus
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class
from tests.integration.peers.thrift_peer import ThriftServer, ThriftServerCache
from tests.integration.test_control_e2e import (
    THRIFT,
    apply_manifest,
    dubbo_pair,  # noqa: F401  (fixtures the ADS test uses)
    route,
    thrift_pair,  # noqa: F401
    thrift_router,
    write_services,
)
from tests.proxy.observe.promtext import parse
from tests.test_explain_admin import run_explain

WORKERS = 2
CONNECTIONS = 24
CALLS_PER_CONNECTION = 3
LOCAL_RATE_LIMIT_TYPE = (
    "type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit"
)
FILE_ACCESS_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
TApplicationException = application_exception_class("thriftpy2")


def _thrift_bootstrap(server: ThriftServer, filters: list[dict[str, Any]] | None = None) -> Any:
    listener = meta_listener("thrift", new_port(), "thrift", [meta_route("backend")])
    if filters is not None:
        typed = listener["filter_chains"][0]["filters"][0]["typed_config"]
        typed["meta_protocol_filters"] = [*filters, {"name": "aeraki.meta_protocol.filters.router"}]
    return bootstrap([listener], [static_cluster("backend", [server.port])], new_port())


def _start(peers: ProcessGroup, config: Any, tmp_path: Path, workers: int = WORKERS) -> AerakiProxy:
    return start_aeraki_proxy(
        peers, config, tmp_path, extra_args=["--workers", str(workers)], name="supervisor"
    )


def _workers(proxy: AerakiProxy) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(proxy.admin("/workers"))["workers"]
    return listed


def _worker_stats(worker: dict[str, Any]) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{worker['admin']}/stats?format=json", timeout=5) as r:
        stats: dict[str, int] = json.loads(r.read())
    return stats


def _echo_over_many_connections(port: int, connections: int = CONNECTIONS) -> int:
    calls = 0
    for c in range(connections):
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
            for i in range(CALLS_PER_CONNECTION):
                assert client.echo(f"c{c}-{i}") == f"c{c}-{i}"
                calls += 1
    return calls


@pytest.fixture
def echo_server(thrift_servers: ThriftServerCache) -> ThriftServer:
    return thrift_servers.get("thriftpy2", "framed", "binary")


def test_workers_share_the_listener_and_the_admin_sums_them(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    proxy = _start(peers, _thrift_bootstrap(echo_server), tmp_path)
    workers = _workers(proxy)
    assert len({w["pid"] for w in workers}) == WORKERS
    assert proxy.process.pid not in {w["pid"] for w in workers}

    calls = _echo_over_many_connections(proxy.ports["thrift"])

    per_worker = [_worker_stats(w)["meta_protocol.thrift.thrift.request"] for w in workers]
    assert all(n > 0 for n in per_worker), per_worker  # the kernel spread the connections
    assert sum(per_worker) == calls
    stats = proxy.stats()
    assert stats["meta_protocol.thrift.thrift.request"] == calls
    assert stats["meta_protocol.thrift.thrift.cx_total"] == CONNECTIONS
    assert stats["cluster.backend.upstream_rq_total"] == calls
    assert stats["server.workers"] == WORKERS

    families = parse(proxy.admin("/stats/prometheus"))
    requests = families["aeraki_meta_protocol_requests_total"]
    assert requests.value(listener="thrift", method="echo", response_code="OK") == calls
    duration = families["aeraki_meta_protocol_request_duration_milliseconds"]
    assert duration.value("_count", listener="thrift", response_code="OK") == calls
    assert duration.value("_bucket", listener="thrift", le="+Inf") == calls
    assert families["aeraki_server_workers"].value() == WORKERS

    clusters = json.loads(proxy.admin("/clusters?format=json"))["cluster_statuses"]
    (backend,) = [c for c in clusters if c["name"] == "backend"]
    assert backend["stats"]["upstream_rq_total"] == calls
    (host,) = backend["host_statuses"]
    assert host["address"] == f"{LOOPBACK}:{echo_server.port}"
    assert host["rq_active"] == 0
    assert f"backend::{LOOPBACK}:{echo_server.port}::rq_active::0" in proxy.admin("/clusters")

    dump = json.loads(proxy.admin("/config_dump"))
    assert [listener["name"] for listener in dump["listeners"]] == ["thrift"]
    assert len(dump["workers"]) == WORKERS
    assert dump["bootstrap"]["admin"]["address"]["port"] == proxy.admin_port


def test_explain_reads_a_multi_worker_proxy_like_its_bootstrap(
    peers: ProcessGroup,
    tmp_path: Path,
    echo_server: ThriftServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = _start(peers, _thrift_bootstrap(echo_server), tmp_path)
    live = run_explain(capsys, "--admin", f"{LOOPBACK}:{proxy.admin_port}", "method=echo")
    offline = run_explain(capsys, "-c", str(proxy.config_path), "method=echo")
    assert live == offline
    assert live[0]["route"] is not None


def test_prometheus_scraping_the_supervisor_sees_every_worker(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    if prometheus_binary() is None:
        pytest.fail("prometheus not installed; run `make setup`")
    proxy = _start(peers, _thrift_bootstrap(echo_server), tmp_path)
    prom = start_prometheus(
        peers, tmp_path / "prometheus", {"workers": f"{LOOPBACK}:{proxy.admin_port}"}
    )
    prom.wait_for('up{job="workers"}', 1)
    calls = _echo_over_many_connections(proxy.ports["thrift"])
    prom.wait_for(
        'aeraki_meta_protocol_requests_total{job="workers",listener="thrift",method="echo"}', calls
    )
    prom.wait_for('aeraki_meta_protocol_request_duration_milliseconds_count{job="workers"}', calls)
    prom.wait_for('aeraki_server_workers{job="workers"}', WORKERS)


def test_local_rate_limit_is_one_limit_across_workers(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    tokens = 10
    limit = {
        "name": "aeraki.meta_protocol.filters.local_ratelimit",
        "config": {
            "@type": LOCAL_RATE_LIMIT_TYPE,
            "stat_prefix": "echo",
            "token_bucket": {"max_tokens": tokens, "tokens_per_fill": 1, "fill_interval": "3600s"},
        },
    }
    proxy = _start(peers, _thrift_bootstrap(echo_server, [limit]), tmp_path)
    outcomes: Counter[str] = Counter()
    for c in range(CONNECTIONS):
        with make_thrift_client(
            "thriftpy2", "framed", "binary", LOOPBACK, proxy.ports["thrift"]
        ) as client:
            try:
                client.echo(f"c{c}")
                outcomes["ok"] += 1
            except TApplicationException as exc:
                outcomes["limited" if "rate limited" in str(exc) else str(exc)] += 1
    # one bucket for both workers: exactly its tokens got through (each alone would allow 10)
    assert outcomes == {"ok": tokens, "limited": CONNECTIONS - tokens}
    stats = proxy.stats()
    assert stats["meta_protocol.echo.local_rate_limit.ok"] == tokens
    assert stats["meta_protocol.echo.local_rate_limit.rate_limited"] == (CONNECTIONS - tokens)
    limited = [
        _worker_stats(w)["meta_protocol.echo.local_rate_limit.rate_limited"]
        for w in _workers(proxy)
    ]
    assert all(n > 0 for n in limited), limited  # both workers refused from the one bucket


def test_every_worker_appends_whole_lines_to_one_access_log(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    log = tmp_path / "access.log"
    config = _thrift_bootstrap(echo_server)
    typed = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    typed["typed_config"]["access_log"] = [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": FILE_ACCESS_LOG_TYPE,
                "path": str(log),
                "log_format": {
                    "json_format": {"method": "%REQ(method)%", "code": "%RESPONSE_CODE%"}
                },
            },
        }
    ]
    proxy = _start(peers, config, tmp_path)
    calls = _echo_over_many_connections(proxy.ports["thrift"])
    workers = _workers(proxy)
    assert proxy.process.stop(grace=30) == 0  # the workers flush as they drain
    lines = log.read_text().splitlines()
    assert len(lines) == calls
    assert all(json.loads(line) == {"method": "echo", "code": 0} for line in lines), lines
    assert all(_gone(w["pid"]) for w in workers)


def test_a_killed_worker_is_replaced_and_serving_goes_on(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    proxy = _start(peers, _thrift_bootstrap(echo_server), tmp_path)
    victim = _workers(proxy)[0]
    os.kill(victim["pid"], signal.SIGKILL)  # a crash of a process this test's proxy started

    def replaced() -> bool:
        listed = {w["index"]: w for w in _workers(proxy)}
        fresh = listed.get(victim["index"])
        return fresh is not None and fresh["pid"] != victim["pid"]

    poll_until(replaced, timeout=30, what="worker 0 replaced", alive=proxy.process.alive)
    poll_until(
        lambda: _ready(proxy), timeout=30, what="supervisor ready", alive=proxy.process.alive
    )
    assert proxy.stats()["server.worker_restarts"] == 1
    calls = _echo_over_many_connections(proxy.ports["thrift"])
    per_worker = [_worker_stats(w)["meta_protocol.thrift.thrift.request"] for w in _workers(proxy)]
    assert sum(per_worker) == calls
    assert all(n > 0 for n in per_worker), per_worker  # the replacement serves too


def _ready(proxy: AerakiProxy) -> bool:
    try:
        return proxy.admin("/ready") == "LIVE\n"
    except urllib.error.HTTPError:
        return False


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for a reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def test_sigterm_drains_and_stops_every_worker(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    proxy = _start(peers, _thrift_bootstrap(echo_server), tmp_path)
    pids = [w["pid"] for w in _workers(proxy)]
    assert proxy.process.stop(grace=30) == 0
    assert all(_gone(pid) for pid in pids)
    log = proxy.process.log_tail()
    assert "Traceback" not in log, log


def test_workers_leave_when_their_supervisor_is_killed(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    proxy = _start(peers, _thrift_bootstrap(echo_server), tmp_path)
    pids = [w["pid"] for w in _workers(proxy)]
    proxy.process.popen.kill()
    proxy.process.popen.wait(timeout=10)
    poll_until(lambda: all(_gone(pid) for pid in pids), timeout=30, what="orphaned workers exit")


def test_a_worker_that_cannot_start_fails_the_start_in_one_line(
    peers: ProcessGroup, tmp_path: Path, echo_server: ThriftServer
) -> None:
    config = _thrift_bootstrap(echo_server)
    port = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    with socket.socket() as holder:  # an unrelated listener, without SO_REUSEPORT
        holder.bind((LOOPBACK, port))
        holder.listen()
        path = tmp_path / "busy.yaml"
        path.write_text(json.dumps(config))
        argv = [sys.executable, "-m", "aeraki.cli", "proxy", "-c", str(path), "--workers", "2"]
        proc = peers.spawn("busy", argv, cwd=REPO_ROOT)
        assert proc.popen.wait(timeout=60) == 1
    log = proc.log_tail()
    assert f"cannot listen on {LOOPBACK}:{port}: address already in use" in log, log
    assert "exited with status 1 before it started" in log, log
    assert "Traceback" not in log, log


async def test_each_worker_follows_the_control_plane(
    peers: ProcessGroup,
    tmp_path: Path,
    thrift_pair: tuple[ThriftServer, ThriftServer],
    dubbo_pair: Any,
) -> None:
    root = tmp_path / "mesh"
    thrift_port, dubbo_port = free_ports(2)
    write_services(root, thrift_pair, dubbo_pair, thrift_port, dubbo_port)
    source = FileSource(root, interval=0.1)
    plane = ControlPlane(source, xds_port=0, quiet=0.05, max_delay=0.5)
    xds_port = await plane.start()
    try:
        config = local_proxy_bootstrap(xds_port, admin_port=new_port())
        # in a thread: the control plane serves on this loop while the workers come up
        proxy = await asyncio.to_thread(_start, peers, config, tmp_path)

        def streams() -> int:
            return sum(1 for p in plane.server.proxies() if p.node_id == RUN_NODE_ID)

        await plane.wait_until(lambda: streams() == WORKERS and plane.in_sync(RUN_NODE_ID), 30)
        for version in ("v1", "v2"):
            manifest = thrift_router(route(version, (THRIFT, version, None)))
            await apply_manifest(plane, root / "route.yaml", manifest)
            labels = await asyncio.to_thread(_whoami_over_many_connections, thrift_port)
            assert set(labels) == {version}, labels
        per_worker = [_worker_stats(w) for w in _workers(proxy)]
        requests = [
            sum(v for k, v in s.items() if k.endswith(".request") and "thrift" in k)
            for s in per_worker
        ]
        assert all(n > 0 for n in requests), requests  # both workers had the new routes
    finally:
        await plane.stop()
    assert plane.metrics.snapshots_rejected_total == 0


def _whoami_over_many_connections(port: int) -> Counter[str]:
    labels: Counter[str] = Counter()
    for _ in range(CONNECTIONS):
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
            labels[client.whoami()] += 1
    return labels
