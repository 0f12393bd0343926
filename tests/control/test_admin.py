# ruff: noqa: F811  (the harness fixture imported from test_runtime is a parameter here)
"""``aeraki control --admin-address``: readiness, Prometheus metrics and status over HTTP,
from a real control-plane process watching a manifest directory; the debug pages
(``/debug/connections``, ``/debug/syncz``) with real ADS streams that ACK and NACK."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from aeraki.control.xds import CLUSTER_TYPE
from tests.control.test_runtime import Harness, harness  # noqa: F401  (fixture)
from tests.control.xds.client import AdsClient

REPO = Path(__file__).resolve().parents[2]
MESH = REPO / "examples" / "mesh"
DEADLINE = 20.0


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _poll(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def control_plane(tmp_path: Path, free_port_factory: Callable[[], int]) -> Iterator[int]:
    manifests = tmp_path / "mesh"
    shutil.copytree(MESH, manifests)
    admin_port = free_port_factory()
    argv = [sys.executable, "-m", "aeraki.cli", "--log-level", "warning", "control",
            str(manifests), "--xds-address", "127.0.0.1:0",
            "--admin-address", f"127.0.0.1:{admin_port}"]  # fmt: skip
    process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        _poll(lambda: _get(admin_port, "/ready")[0] == 200, "control plane /ready")
        yield admin_port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0


def test_ready_metrics_and_status_are_served(control_plane: int) -> None:
    status, body = _get(control_plane, "/ready")
    assert (status, body) == (200, "LIVE\n")
    status, metrics = _get(control_plane, "/metrics")
    assert status == 200
    assert "# TYPE aeraki_control_pushes_total counter" in metrics
    assert "aeraki_control_config_resources " in metrics
    resources = next(
        line for line in metrics.splitlines() if line.startswith("aeraki_control_config_resources ")
    )
    assert int(resources.split()[1]) > 0  # the example mesh was loaded
    status, text = _get(control_plane, "/status")
    assert status == 200
    assert "thrift-sample-server.meta-thrift.svc.cluster.local" in text
    assert _get(control_plane, "/debug/syncz") == (200, "no proxy connected\n")
    status, text = _get(control_plane, "/debug/connections")
    assert (status, json.loads(text)["proxies"]) == (200, [])
    status, text = _get(control_plane, "/nope")
    assert status == 404
    assert "/metrics" in text


# ------------------------------------------------------- debug pages, in process (real gRPC)


async def test_debug_pages_show_acked_versions_and_the_last_nack_reason(
    harness: Harness,
) -> None:
    """One proxy ACKs everything, another rejects its clusters: ``/debug/connections`` and
    ``/debug/syncz`` tell them apart and quote the rejection."""
    from aeraki.control.admin import admin_routes

    pages = admin_routes(harness.plane)
    await harness.wait(lambda: harness.plane.config is not None)
    harness.connect("good-proxy")
    await harness.wait(lambda: harness.plane.in_sync("good-proxy"))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{harness.plane.port}")
    bad = AdsClient(channel, "bad-proxy")
    try:
        bad.subscribe(CLUSTER_TYPE)
        resp = await bad.recv()
        bad.nack(resp, "cluster x: unsupported field lb_subset_config")
        await harness.wait(lambda: _nacked(harness, "bad-proxy"))
        status, content_type, body = pages["/debug/connections"]()
        _, _, syncz = pages["/debug/syncz"]()
    finally:
        await bad.close()
        await channel.close()
    assert (status, content_type) == (200, "application/json")
    proxies = {p["node_id"]: p for p in json.loads(body)["proxies"]}
    good = proxies["good-proxy"]["types"]["Cluster"]
    assert good["status"] == "SYNCED"
    assert good["acked_version"] == good["snapshot_version"] != ""
    assert proxies["good-proxy"]["in_sync"] is True
    rejected = proxies["bad-proxy"]["types"]["Cluster"]
    assert rejected["status"] == "NACKED"
    assert rejected["acked_version"] == ""
    assert rejected["last_nack_version"] == resp.version_info
    assert rejected["last_nack_reason"] == "cluster x: unsupported field lb_subset_config"
    assert proxies["bad-proxy"]["in_sync"] is False
    status = json.loads(pages["/status?format=json"]()[2])
    assert {p["node_id"] for p in status["proxies"]} == {"good-proxy", "bad-proxy"}
    assert status["last_push"]["store_version"] >= 1
    lines = syncz.splitlines()
    assert any(ln.startswith("good-proxy sotw Cluster SYNCED") for ln in lines), syncz
    assert any(
        ln.startswith("bad-proxy sotw Cluster NACKED sent=")
        and ln.endswith("unsupported field lb_subset_config")
        for ln in lines
    ), syncz


def _nacked(harness: Harness, node_id: str) -> bool:
    return any(
        t.nacks > 0
        for p in harness.plane.server.proxies()
        if p.node_id == node_id
        for t in p.types.values()
    )


def test_syncz_without_proxies_says_so(tmp_path: Path) -> None:
    from aeraki.control.admin import admin_routes
    from aeraki.control.runtime import ControlPlane
    from aeraki.control.sources.files import FileSource

    plane = ControlPlane(FileSource(tmp_path), xds_port=0)
    assert admin_routes(plane)["/debug/syncz"]() == (200, "text/plain", "no proxy connected\n")


def test_log_levels_change_at_runtime(control_plane: int) -> None:
    status, listing = _get(control_plane, "/logging")
    assert status == 200
    assert "  aeraki: warning" in listing.splitlines()  # --log-level warning
    request = urllib.request.Request(
        f"http://127.0.0.1:{control_plane}/logging?level=debug", method="POST"
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        body = response.read().decode()
    assert "all loggers: debug" in body
    assert "  aeraki.control.runtime: debug" in _get(control_plane, "/logging")[1].splitlines()
