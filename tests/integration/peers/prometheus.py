"""A real Prometheus server (Debian's ``prometheus`` package) scraping our admin ports.

:func:`start_prometheus` writes a config with one job per target (``scrape_interval: 1s``),
runs ``prometheus`` on 127.0.0.1 with its TSDB in the test's directory, and waits for
``/-/ready``. :meth:`Prometheus.wait_for` polls the HTTP query API (bounded) until a PromQL
query returns the expected value — what a dashboard would show, read back from the scraper.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.integration.peers.procs import LOOPBACK, PeerProcess, ProcessGroup

__all__ = ["Prometheus", "prometheus_binary", "start_prometheus"]

SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> str | None:
    """The ``prometheus`` executable (``scripts/setup.sh`` installs Debian's package)."""
    return shutil.which("prometheus")


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a bad query: Prometheus says why in the body
        raise AssertionError(f"{url}: {exc.code} {exc.read().decode()[:500]}") from exc


@dataclass
class Prometheus:
    """A running Prometheus and its query API."""

    process: PeerProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert data["status"] == "success", data
        assert data["data"]["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of ``promql`` (``None`` while it has no series yet)."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, f"{promql}: expected one series, got {result}"
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, *, timeout: float = 30.0) -> None:
        """Poll until ``promql`` has the value ``expected`` (bounded; the last value seen and
        the targets' health are in the failure message)."""
        deadline = time.monotonic() + timeout
        seen: float | None = None
        while time.monotonic() < deadline:
            seen = self.value(promql)
            if seen == expected:
                return
            assert self.process.alive(), self.process.log_tail()
            time.sleep(0.2)  # the scraper is polled: its next scrape is at most 1 s away
        raise AssertionError(
            f"{promql}: wanted {expected}, last saw {seen}; targets: {self.targets()}"
        )

    def targets(self) -> list[dict[str, Any]]:
        """The active targets with their health and last error."""
        data = _get_json(f"{self.url}/api/v1/targets")
        return [
            {k: t.get(k) for k in ("scrapeUrl", "health", "lastError")}
            for t in data["data"]["activeTargets"]
        ]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_prometheus(
    group: ProcessGroup,
    workdir: Path,
    targets: Mapping[str, str],
    *,
    metrics_path: str = "/stats/prometheus",
) -> Prometheus:
    """Run Prometheus scraping ``targets`` (job name -> ``host:port``) every second."""
    binary = prometheus_binary()
    assert binary is not None, "prometheus not installed; run `make setup`"
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": metrics_path,
                "static_configs": [{"targets": [address]}],
            }
            for job, address in targets.items()
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn",
        ]

    proc = group.spawn_listening(
        "prometheus", argv, ready=lambda p: lambda: _ready(p.port), ready_timeout=30.0
    )
    return Prometheus(proc, proc.port)
