"""What the demo bootstrap says: ports, backends and routes, read from the YAML itself.

``examples/demo/bootstrap.yaml`` is the single source of truth: the launcher starts each
backend on the port its cluster names, and the client calls the listener ports. With
``DEMO_PORTS=auto`` every port is replaced by a free one in a copy of the bootstrap.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BOOTSTRAP",
    "BackendSpec",
    "DemoLayout",
    "LayoutError",
    "PortInUseError",
    "check_ports_free",
    "describe_routes",
    "expected_behaviour",
    "load_layout",
    "pick_free_ports",
    "remap_ports",
]

LOOPBACK = "127.0.0.1"
BOOTSTRAP = Path(__file__).resolve().parent / "bootstrap.yaml"
#: Listener names the demo client drives, by protocol.
THRIFT_LISTENER = "demo-thrift"
DUBBO_LISTENER = "demo-dubbo"
#: Backend clusters: name -> (kind, version label the server answers with).
BACKENDS: dict[str, tuple[str, str]] = {
    "thrift-v1": ("thrift", "v1"),
    "thrift-v2": ("thrift", "v2"),
    "dubbo-v1": ("dubbo", "v1"),
    "dubbo-v2": ("dubbo", "v2"),
}


class LayoutError(RuntimeError):
    """The bootstrap does not have what the demo needs."""


class PortInUseError(RuntimeError):
    """A port the demo needs is taken; the message names it and what it was for."""


@dataclass(frozen=True)
class BackendSpec:
    """One backend server to start: kind ("thrift" | "dubbo"), version label, port."""

    cluster: str
    kind: str
    label: str
    port: int


@dataclass(frozen=True)
class DemoLayout:
    """Ports of everything in the demo, as the bootstrap ``config`` states them."""

    config: dict[str, Any]
    admin_port: int
    thrift_port: int
    dubbo_port: int
    backends: tuple[BackendSpec, ...]

    def ports(self) -> dict[int, str]:
        """Every port the demo binds -> what binds it (for the free-port check)."""
        out = {
            self.admin_port: "proxy admin",
            self.thrift_port: f"proxy listener {THRIFT_LISTENER}",
            self.dubbo_port: f"proxy listener {DUBBO_LISTENER}",
        }
        for b in self.backends:
            out[b.port] = f"{b.kind} server {b.label} (cluster {b.cluster})"
        return out


def _port_of(address: Any, where: str) -> int:
    try:
        sa = address["socket_address"]
        host, port = sa["address"], sa["port_value"]
    except (KeyError, TypeError) as exc:
        raise LayoutError(f"{where}: no socket_address") from exc
    if host != LOOPBACK:
        raise LayoutError(f"{where}: the demo only uses {LOOPBACK}, not {host}")
    return int(port)


def _cluster_port(cluster: dict[str, Any]) -> int:
    name = cluster.get("name", "?")
    try:
        (group,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = group["lb_endpoints"]
        address = endpoint["endpoint"]["address"]
    except (KeyError, TypeError, ValueError) as exc:
        raise LayoutError(f"cluster {name}: expected exactly one endpoint") from exc
    return _port_of(address, f"cluster {name}")


def layout_of(config: dict[str, Any]) -> DemoLayout:
    """The demo layout of a parsed bootstrap; :class:`LayoutError` if something is missing."""
    try:
        admin_port = _port_of(config["admin"]["address"], "admin")
        resources = config["static_resources"]
        listeners = {ln["name"]: ln for ln in resources["listeners"]}
        clusters = {c["name"]: c for c in resources["clusters"]}
    except (KeyError, TypeError) as exc:
        raise LayoutError(f"bootstrap lacks admin or static_resources: {exc}") from exc
    for needed in (THRIFT_LISTENER, DUBBO_LISTENER):
        if needed not in listeners:
            raise LayoutError(f"bootstrap has no listener named {needed!r}")
    backends = []
    for name, (kind, label) in BACKENDS.items():
        if name not in clusters:
            raise LayoutError(f"bootstrap has no cluster named {name!r}")
        backends.append(BackendSpec(name, kind, label, _cluster_port(clusters[name])))
    layout = DemoLayout(
        config=config,
        admin_port=admin_port,
        thrift_port=_port_of(listeners[THRIFT_LISTENER]["address"], THRIFT_LISTENER),
        dubbo_port=_port_of(listeners[DUBBO_LISTENER]["address"], DUBBO_LISTENER),
        backends=tuple(backends),
    )
    if len(layout.ports()) != 3 + len(backends):
        raise LayoutError("bootstrap uses the same port twice")
    return layout


def load_layout(path: Path = BOOTSTRAP) -> DemoLayout:
    """Read and check the demo bootstrap at ``path``."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LayoutError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise LayoutError(f"{path}: not a YAML mapping")
    return layout_of(config)


def _socket_addresses(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``socket_address`` mapping anywhere in ``node`` (depth-first, bounded by input)."""
    if isinstance(node, dict):
        sa = node.get("socket_address")
        if isinstance(sa, dict):
            yield sa
        for value in node.values():
            yield from _socket_addresses(value)
    elif isinstance(node, list):
        for item in node:
            yield from _socket_addresses(item)


def remap_ports(config: dict[str, Any], mapping: dict[int, int]) -> dict[str, Any]:
    """A deep copy of ``config`` with each ``port_value`` in ``mapping`` replaced."""
    out = copy.deepcopy(config)
    for sa in _socket_addresses(out):
        port = int(sa.get("port_value", 0))
        if port in mapping:
            sa["port_value"] = mapping[port]
    return out


def pick_free_ports(n: int) -> list[int]:
    """``n`` distinct ports the kernel says are free on 127.0.0.1 now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def check_ports_free(ports: dict[int, str]) -> None:
    """Raise :class:`PortInUseError` naming the first port of ``ports`` that cannot be bound.

    SO_REUSEADDR is set as the servers set it, so TIME_WAIT leftovers of an earlier run do not
    count as "in use"; a listening socket still does.
    """
    for port, what in sorted(ports.items()):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
                s.listen(1)
            except OSError as exc:
                raise PortInUseError(
                    f"port {port} on {LOOPBACK} (for the {what}) is already in use "
                    f"({exc.strerror}). Stop whatever listens there (e.g. `ss -ltnp 'sport = :"
                    f"{port}'`), or run with DEMO_PORTS=auto to use free ports instead."
                ) from exc


def _route_targets(route: dict[str, Any]) -> str:
    action = route.get("route", {})
    weighted = action.get("weighted_clusters")
    if weighted:
        clusters = weighted.get("clusters", [])
        total = sum(int(c.get("weight", 0)) for c in clusters) or 1
        return ", ".join(f"{c['name']} {100 * int(c['weight']) / total:.0f} %" for c in clusters)
    return str(action.get("cluster", "?"))


def _route_match(route: dict[str, Any]) -> str:
    items = route.get("match", {}).get("metadata", [])
    parts = [f"{m['name']}={m.get('exact_match', '*')}" for m in items if m["name"] != "interface"]
    return " & ".join(parts) if parts else "any request"


def describe_routes(layout: DemoLayout) -> list[str]:
    """One readable line per route of the demo listeners (for the start-up banner)."""
    lines = []
    for listener in layout.config["static_resources"]["listeners"]:
        typed = listener["filter_chains"][0]["filters"][0]["typed_config"]
        port = listener["address"]["socket_address"]["port_value"]
        routes: Iterable[dict[str, Any]] = typed["route_config"]["routes"]
        for route in routes:
            where = f"{listener['name']:<12} :{port}"
            lines.append(f"{where:<19} {_route_match(route):<16} -> {_route_targets(route)}")
    return lines


def _routes_of(layout: DemoLayout, listener_name: str) -> list[dict[str, Any]]:
    for listener in layout.config["static_resources"]["listeners"]:
        if listener["name"] == listener_name:
            typed = listener["filter_chains"][0]["filters"][0]["typed_config"]
            routes: list[dict[str, Any]] = typed["route_config"]["routes"]
            return routes
    raise LayoutError(f"no listener {listener_name!r}")


def expected_behaviour(layout: DemoLayout) -> tuple[dict[str, int], dict[str, str]]:
    """What the routes promise: Thrift version -> weight, and Dubbo method -> version.

    Versions are the labels of the backends behind the clusters (``thrift-v1`` -> ``v1``).
    """
    labels = {name: label for name, (_, label) in BACKENDS.items()}
    weights: dict[str, int] = {}
    for route in _routes_of(layout, THRIFT_LISTENER):
        action = route.get("route", {})
        for c in action.get("weighted_clusters", {}).get("clusters", []):
            weights[labels.get(c["name"], c["name"])] = int(c["weight"])
        if not weights and "cluster" in action:
            weights[labels.get(action["cluster"], action["cluster"])] = 100
        if weights:
            break
    methods: dict[str, str] = {}
    for route in _routes_of(layout, DUBBO_LISTENER):
        cluster = route.get("route", {}).get("cluster", "")
        for m in route.get("match", {}).get("metadata", []):
            if m.get("name") == "method" and "exact_match" in m:
                methods.setdefault(m["exact_match"], labels.get(cluster, cluster))
    for method in ("sayHello", "whoami"):
        if method not in methods:
            raise LayoutError(f"{DUBBO_LISTENER} has no route for method {method!r}")
    if not weights:
        raise LayoutError(f"{THRIFT_LISTENER} has no route to a cluster")
    return weights, methods
