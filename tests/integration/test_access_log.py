# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""Access logs with real Thrift peers, in text and JSON: success, one-way, route not found,
circuit-breaker overflow and route timeout each leave their line —

- from a bootstrap's ``access_log`` (Envoy's ``FileAccessLog``), our proxy in this process;
- from Envoy's stdout logger of an ``aeraki proxy`` process (lines reach its stdout);
- from the control plane's mesh setting (``--access-log`` / ``--access-log-encoding`` /
  ``--access-log-format``, Istio's ``accessLog*``): manifests → control plane → our proxy as
  its ADS client (the e2e harness of ``test_control_e2e``).

Every wait is for a fact (a stat, an ACK, a line in the file), with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from thriftpy2.thrift import TApplicationException

from aeraki.control.cli import local_proxy_bootstrap
from aeraki.control.runtime import ControlPlane, translate_options
from aeraki.control.sources.files import FileSource
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.observe.access_log import flush_all
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.upstream.cluster import Cluster
from tests.control.test_runtime import service_yaml
from tests.integration.aeraki_proxy import (
    bootstrap,
    meta_listener,
    meta_route,
    start_aeraki_proxy,
    static_cluster,
)
from tests.integration.peers.procs import LOOPBACK, ProcessGroup, free_ports, poll_until
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_peer import ThriftServer
from tests.integration.test_control_e2e import (
    THRIFT,
    THRIFT_PORT_NAME,
    WAIT,
    Mesh,
    route,
    thrift_pair,  # noqa: F401  (a fixture used here)
    thrift_router,
)
from tests.integration.test_resilience_upstream import _with_policy

FILE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
TEXT_FORMAT = "%METHOD% %RESPONSE_FLAGS% %RESPONSE_CODE% %UPSTREAM_CLUSTER%\n"
JSON_FORMAT = {
    "method": "%METHOD%",
    "flags": "%RESPONSE_FLAGS%",
    "code": "%RESPONSE_CODE%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "bytes_received": "%BYTES_RECEIVED%",
    "duration": "%DURATION%",
}
#: (method, response flags) of the scenario's six requests.
EXPECTED = Counter(
    {("whoami", None): 1, ("fire", None): 1, ("echo", "NR"): 1, ("whoami", "UO"): 1}
) + Counter({("slow", "UT"): 2})


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` (a stat, a file) until true; fail after ``WAIT`` seconds."""
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _call(port: int, method: str, *args: Any) -> str:
    with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
        try:
            return str(getattr(client, method)(*args))
        except TApplicationException as exc:
            return f"error: {exc.message}"


async def scenario(port: int, cluster: Cluster) -> dict[str, Any]:
    """Six calls: success, one-way, no route, two timed-out calls holding the cluster's one
    connection and one pending slot, and the overflow that third concurrent call gets."""
    results: dict[str, Any] = {"whoami": await asyncio.to_thread(_call, port, "whoami")}
    results["fire"] = await asyncio.to_thread(_call, port, "fire", "x")
    results["echo"] = await asyncio.to_thread(_call, port, "echo", "x")
    stats = cluster.stats
    first = asyncio.create_task(asyncio.to_thread(_call, port, "slow", 8000))
    await until(lambda: stats.upstream_rq_active == 1, "the first slow call upstream")
    second = asyncio.create_task(asyncio.to_thread(_call, port, "slow", 8000))
    await until(lambda: stats.upstream_rq_pending_active == 1, "the second slow call pending")
    results["overflow"] = await asyncio.to_thread(_call, port, "whoami")
    results["slow"] = await asyncio.gather(first, second)
    return results


def check_results(results: dict[str, Any]) -> None:
    assert results["whoami"] == "v1"
    assert results["echo"].startswith("error: meta protocol router: no matched route")
    assert results["overflow"] == "error: meta protocol upstream request: too many pending requests"
    assert all("timed out after 2.0s" in r for r in results["slow"]), results["slow"]


async def log_lines(path: Path, count: int) -> list[str]:
    found: list[str] = []

    def enough() -> bool:
        flush_all()
        found[:] = path.read_text().splitlines() if path.exists() else []
        return len(found) >= count

    await until(enough, f"{count} lines in {path}")
    return found


def parse(lines: list[str], encoding: str) -> list[dict[str, Any]]:
    if encoding == "JSON":
        return [json.loads(line) for line in lines]
    out = []
    for line in lines:
        method, flags, code, cluster = line.split(" ")
        out.append(
            {
                "method": method,
                "flags": None if flags == "-" else flags,
                "code": int(code),
                "cluster": None if cluster == "-" else cluster,
            }
        )
    return out


def check_records(records: list[dict[str, Any]], cluster: str) -> None:
    assert Counter((r["method"], r["flags"]) for r in records) == EXPECTED
    for record in records:
        answered_ok = record["flags"] is None
        assert record["code"] == (0 if answered_ok else 1), record
        assert record["cluster"] == (None if record["flags"] == "NR" else cluster), record


# --------------------------------------------------------------------------- bootstrap


def _bootstrap(port: int, server: ThriftServer, log: Path, encoding: str) -> dict[str, Any]:
    slow = meta_route("c", name="slow", match={"method": "slow"})
    slow["timeout"] = "2s"
    routes = [
        meta_route("c", name="whoami", match={"method": "whoami"}),
        meta_route("c", name="fire", match={"method": "fire"}),
        slow,
    ]
    listener = meta_listener("thrift", port, "thrift", routes)
    log_format: dict[str, Any] = (
        {"json_format": JSON_FORMAT} if encoding == "JSON" else {"text_format": TEXT_FORMAT}
    )
    typed = listener["filter_chains"][0]["filters"][0]["typed_config"]
    typed["access_log"] = [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {"@type": FILE, "path": str(log), "log_format": log_format},
        }
    ]
    cluster = static_cluster("c", [server.port])
    cluster["circuit_breakers"] = {
        "thresholds": [{"max_connections": 1, "max_pending_requests": 1}]
    }
    return bootstrap([listener], [cluster], admin_port=free_ports(1)[0])


@pytest.mark.parametrize("encoding", ["TEXT", "JSON"])
async def test_bootstrap_access_log_records_every_outcome(
    tmp_path: Path, thrift_pair: tuple[ThriftServer, ThriftServer], encoding: str
) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "access.log"
    config = bootstrap_from_dict(_bootstrap(port, thrift_pair[0], log, encoding))
    proxy = ProxyServer(config, drain_timeout=1.0)
    await proxy.start()
    try:
        cluster = proxy.clusters.get("c")
        assert cluster is not None
        check_results(await scenario(port, cluster))
        lines = await log_lines(log, 6)
    finally:
        await proxy.shutdown()
    records = parse(lines, encoding)
    check_records(records, "c")
    if encoding == "JSON":
        assert all(r["bytes_received"] > 0 for r in records)
        slow = [r for r in records if r["method"] == "slow"]
        assert all(r["duration"] >= 2000 for r in slow), slow


def test_stdout_logger_of_an_aeraki_proxy_process(
    tmp_path: Path, peers: ProcessGroup, thrift_pair: tuple[ThriftServer, ThriftServer]
) -> None:
    """Envoy's ``envoy.access_loggers.stdout``: a real process writes JSON lines to fd 1."""
    (port,) = free_ports(1)
    config = _bootstrap(port, thrift_pair[0], tmp_path / "unused.log", "JSON")
    typed = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    typed["typed_config"]["access_log"] = [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {"@type": STDOUT, "log_format": {"json_format": JSON_FORMAT}},
        }
    ]
    proxy = start_aeraki_proxy(peers, config, tmp_path)
    assert _call(port, "whoami") == "v1"
    assert _call(port, "echo", "x").startswith("error: meta protocol router: no matched route")
    log = proxy.process.log_path
    records: list[dict[str, Any]] = []

    def two_records() -> bool:
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
        records[:] = [json.loads(ln) for ln in lines]
        return len(records) >= 2

    poll_until(two_records, timeout=WAIT, what=f"two access log lines in {log}")
    assert [(r["method"], r["flags"], r["code"]) for r in records] == [
        ("whoami", None, 0),
        ("echo", "NR", 1),
    ]
    assert not (tmp_path / "unused.log").exists()


# --------------------------------------------------------------------------- control plane


@pytest.fixture
async def logged_mesh(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    thrift_pair: tuple[ThriftServer, ThriftServer],
) -> AsyncIterator[tuple[Mesh, Path]]:
    """The e2e mesh (Thrift only) with the control plane's access-log setting on."""
    encoding, fmt = request.param
    (thrift_port,) = free_ports(1)
    root = tmp_path / "mesh"
    root.mkdir()
    log = tmp_path / "mesh-access.log"
    t1, t2 = thrift_pair
    text = service_yaml(
        "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, thrift_port, t1.port, t2.port
    )
    pool = "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}"
    (root / "thrift.yaml").write_text(_with_policy(text, "v1", pool))
    source = FileSource(root, interval=0.1)
    options = translate_options(
        access_log_file=str(log), access_log_encoding=encoding, access_log_format=fmt
    )
    plane = ControlPlane(source, xds_port=0, quiet=0.05, max_delay=0.5, options=options)
    source.on_problem = plane.on_source_problem
    port = await plane.start()
    proxy = ProxyServer(bootstrap_from_dict(local_proxy_bootstrap(port)), drain_timeout=1.0)
    await proxy.start()
    mesh = Mesh(root, plane, proxy, thrift_port, 0)
    try:
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
        await mesh.synced()
        yield mesh, log
    finally:
        await proxy.shutdown()
        await plane.stop()
    assert plane.metrics.snapshots_rejected_total == 0


TEXT_MESH = ("TEXT", TEXT_FORMAT.strip())  # Istio's accessLogFormat has no newline
JSON_MESH = ("JSON", json.dumps(JSON_FORMAT))
DEFAULT_MESH = ("TEXT", "")


async def _mesh_scenario(mesh: Mesh) -> dict[str, Any]:
    routes = (
        route("whoami", (THRIFT, "v1", None), match="{method: {exact: whoami}}")
        + route("fire", (THRIFT, "v1", None), match="{method: {exact: fire}}")
        + route(
            "slow",
            (THRIFT, "v1", None),
            match="{method: {exact: slow}}",
            extra="      timeout: 2s\n",
        )
    )
    await mesh.apply("thrift-route.yaml", thrift_router(routes))
    cluster = mesh.proxy.clusters.get(f"outbound|{mesh.thrift_port}|v1|{THRIFT}")
    assert cluster is not None
    return await scenario(mesh.thrift_port, cluster)


@pytest.mark.parametrize("logged_mesh", [TEXT_MESH, JSON_MESH], indirect=True, ids=["text", "json"])
async def test_mesh_access_log_setting_reaches_the_proxy(logged_mesh: tuple[Mesh, Path]) -> None:
    mesh, log = logged_mesh
    check_results(await _mesh_scenario(mesh))
    lines = await log_lines(log, 6)
    encoding = "JSON" if lines[0].startswith("{") else "TEXT"
    check_records(parse(lines, encoding), f"outbound|{mesh.thrift_port}|v1|{THRIFT}")


#: Aeraki's default text line (§6.6): ``[time] protocol code details termination
#: "failure" received sent duration  "xff" "request id" cluster ...``.
_DEFAULT_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] thrift (?P<code>[01]) (?P<details>\S+) - "
    r'"-" \d+ \d+ \d+  "-" "-" (?P<cluster>\S+) \S+ '
    r"127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ (?P<route>\S+)$"
)


@pytest.mark.parametrize("logged_mesh", [DEFAULT_MESH], indirect=True, ids=["default"])
async def test_mesh_default_format_is_aerakis(logged_mesh: tuple[Mesh, Path]) -> None:
    mesh, log = logged_mesh
    check_results(await _mesh_scenario(mesh))
    lines = await log_lines(log, 6)
    matches = [_DEFAULT_LINE.match(line) for line in lines]
    assert all(matches), lines
    details = Counter(m["details"].split(":")[0] for m in matches if m is not None)
    assert details == {
        "via_upstream": 1,
        "-": 1,
        "meta_protocol_router": 3,
        "meta_protocol_upstream_request": 1,
    }, lines
