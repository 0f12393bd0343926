"""``aeraki control --admin-address``: readiness, Prometheus metrics and status over HTTP,
from a real control-plane process watching a manifest directory."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
    status, text = _get(control_plane, "/nope")
    assert status == 404
    assert "/metrics" in text
