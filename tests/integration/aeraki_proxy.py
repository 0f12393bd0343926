"""Run our proxy as a real process (``aeraki proxy -c bootstrap.yaml``) for integration tests,
and build Envoy-format bootstraps for it in a few lines."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.peers.procs import LOOPBACK, PeerProcess, ProcessGroup, free_port, poll_until

__all__ = [
    "AerakiProxy",
    "bootstrap",
    "header_matcher",
    "meta_listener",
    "meta_route",
    "start_aeraki_proxy",
    "static_cluster",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
MPP_TYPE = "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy"
CODECS = {
    "thrift": "aeraki.meta_protocol.codec.thrift",
    "dubbo": "aeraki.meta_protocol.codec.dubbo",
}


def meta_route(
    cluster: str | None = None,
    *,
    name: str = "",
    match: Mapping[str, str] | None = None,
    weighted: Sequence[tuple[str, int]] = (),
    request_mutation: Mapping[str, str] | None = None,
    response_mutation: Mapping[str, str] | None = None,
    hash_policy: Sequence[str] = (),
    mirror: str | None = None,
    matchers: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A MetaProtocol route; ``match`` is key -> exact value (AND), ``matchers`` more
    :func:`header_matcher` entries ANDed with them."""
    action: dict[str, Any] = {}
    if weighted:
        action["weighted_clusters"] = {"clusters": [{"name": n, "weight": w} for n, w in weighted]}
    else:
        action["cluster"] = cluster
    if hash_policy:
        action["hash_policy"] = list(hash_policy)
    if mirror:
        action["request_mirror_policies"] = [{"cluster": mirror}]
    out: dict[str, Any] = {"name": name or f"to-{cluster or 'weighted'}", "route": action}
    metadata = [{"name": k, "exact_match": v} for k, v in (match or {}).items()]
    metadata += list(matchers)
    if metadata:
        out["match"] = {"metadata": metadata}
    if request_mutation:
        out["request_mutation"] = [{"key": k, "value": v} for k, v in request_mutation.items()]
    if response_mutation:
        out["response_mutation"] = [{"key": k, "value": v} for k, v in response_mutation.items()]
    return out


def header_matcher(
    name: str,
    *,
    exact: str | None = None,
    prefix: str | None = None,
    regex: str | None = None,
    present: bool | None = None,
    invert: bool = False,
) -> dict[str, Any]:
    """One Envoy ``HeaderMatcher`` on metadata key ``name`` (give exactly one of exact, prefix,
    regex, present)."""
    given = {
        "exact_match": exact,
        "prefix_match": prefix,
        "safe_regex_match": None if regex is None else {"regex": regex},
        "present_match": present,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if len(chosen) != 1:
        raise ValueError("header_matcher: give exactly one of exact, prefix, regex, present")
    out: dict[str, Any] = {"name": name, **chosen}
    if invert:
        out["invert_match"] = True
    return out


def meta_listener(
    name: str,
    port: int,
    protocol: str,
    routes: Iterable[dict[str, Any]],
    *,
    multiplexing: bool = False,
    idle_timeout: str | None = None,
) -> dict[str, Any]:
    """A listener on 127.0.0.1:``port`` with the MetaProtocol filter for ``protocol``."""
    typed: dict[str, Any] = {
        "@type": MPP_TYPE,
        "stat_prefix": name,
        "protocol": {
            "name": protocol,
            "codec": {"name": CODECS.get(protocol, protocol)},
            "multiplexing": multiplexing,
        },
        "route_config": {"name": name, "routes": list(routes)},
    }
    if idle_timeout:
        typed["idle_timeout"] = idle_timeout
    return {
        "name": name,
        "address": {"socket_address": {"address": LOOPBACK, "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "aeraki.meta_protocol_proxy", "typed_config": typed}]}
        ],
    }


def static_cluster(name: str, ports: Iterable[int], *, lb: str = "ROUND_ROBIN") -> dict[str, Any]:
    """A STATIC cluster of 127.0.0.1 endpoints."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "lb_policy": lb,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": LOOPBACK, "port_value": p}
                                }
                            }
                        }
                        for p in ports
                    ]
                }
            ],
        },
    }


def bootstrap(
    listeners: Iterable[dict[str, Any]], clusters: Iterable[dict[str, Any]], admin_port: int
) -> dict[str, Any]:
    """A whole Envoy bootstrap with admin on 127.0.0.1:``admin_port``."""
    return {
        "admin": {"address": {"socket_address": {"address": LOOPBACK, "port_value": admin_port}}},
        "static_resources": {"listeners": list(listeners), "clusters": list(clusters)},
    }


@dataclass
class AerakiProxy:
    """A running ``aeraki proxy`` process."""

    process: PeerProcess
    admin_port: int
    config_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def admin(self, path: str) -> str:
        """GET an admin page."""
        url = f"http://{LOOPBACK}:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
        return body.decode()

    def stats(self) -> dict[str, int]:
        """Every stat by full name."""
        data: dict[str, int] = json.loads(self.admin("/stats?format=json"))
        return data

    def stat(self, listener: str, name: str, protocol: str) -> int:
        """One listener stat (``meta_protocol.<protocol>.<listener>.<name>``)."""
        return self.stats()[f"meta_protocol.{protocol}.{listener}.{name}"]


def _ready(admin_port: int) -> bool:
    try:
        url = f"http://{LOOPBACK}:{admin_port}/ready"
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_aeraki_proxy(
    group: ProcessGroup,
    config: dict[str, Any],
    workdir: Path,
    *,
    name: str = "aeraki",
    ready_timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> AerakiProxy:
    """Write ``config`` as YAML and run ``aeraki proxy`` on it (with ``extra_args``, e.g.
    ``--workers 2``) until /ready answers 200."""
    admin_port = int(config["admin"]["address"]["socket_address"]["port_value"])
    path = workdir / f"{name}-bootstrap.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [sys.executable, "-m", "aeraki.cli", "--log-level", "warning", "proxy", "-c", str(path)]
    argv += extra_args
    proc = group.spawn(name, argv, cwd=REPO_ROOT)
    poll_until(
        lambda: _ready(admin_port),
        timeout=ready_timeout,
        what=f"{name} admin /ready on {LOOPBACK}:{admin_port}",
        alive=proc.alive,
    )
    ports = {
        listener["name"]: int(listener["address"]["socket_address"]["port_value"])
        for listener in config["static_resources"].get("listeners", [])
    }
    return AerakiProxy(proc, admin_port, path, ports)


def new_port() -> int:
    """A free loopback port for a proxy listener or admin."""
    return free_port()
