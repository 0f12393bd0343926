"""What the demo manifests say: ports, backends and the three routing phases, read from YAML.

``examples/demo/manifests/`` is the single source of truth: the launcher starts each backend on
the endpoint port its ServiceEntry names, ``aeraki run`` makes the proxy listen on the service
ports, and the client calls those. ``examples/demo/phases/`` holds the MetaRouters the demo
writes over ``routes.yaml`` mid-run (phase 1 is ``manifests/routes.yaml`` itself). With
``DEMO_PORTS=auto`` every port is replaced by a free one in the demo's copy of the manifests.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MANIFESTS",
    "PHASE_FILES",
    "ROUTES_FILE",
    "BackendSpec",
    "DemoLayout",
    "LayoutError",
    "Phase",
    "PortInUseError",
    "Service",
    "check_ports_free",
    "copy_manifests",
    "load_layout",
    "load_phases",
    "pick_free_ports",
]

LOOPBACK = "127.0.0.1"
HERE = Path(__file__).resolve().parent
MANIFESTS = HERE / "manifests"
#: The MetaRouter file of the manifest directory that the phases replace.
ROUTES_FILE = "routes.yaml"
#: Phase 1, 2, 3, in order.
PHASE_FILES = (
    MANIFESTS / ROUTES_FILE,
    HERE / "phases" / "2-split-20-80.yaml",
    HERE / "phases" / "3-all-v2.yaml",
)
#: The proxy's admin port (``aeraki run --admin-port``) unless DEMO_PORTS=auto.
ADMIN_PORT = 19000
#: Service kinds, in display order; a ServiceEntry port name ``tcp-metaprotocol-<kind>…``.
KINDS = ("thrift", "dubbo")


class LayoutError(RuntimeError):
    """The manifests do not have what the demo needs."""


class PortInUseError(RuntimeError):
    """A port the demo needs is taken; the message names it and what it was for."""


@dataclass(frozen=True)
class BackendSpec:
    """One backend server to start: kind ("thrift" | "dubbo"), version label, port."""

    kind: str
    label: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.label}"


@dataclass(frozen=True)
class Service:
    """One ServiceEntry: its host, the port the proxy listens on, and its versions."""

    kind: str
    host: str
    port: int
    backends: tuple[BackendSpec, ...]


@dataclass(frozen=True)
class DemoLayout:
    """Ports of everything in the demo, as the manifests state them."""

    services: tuple[Service, ...]
    admin_port: int

    def service(self, kind: str) -> Service:
        for s in self.services:
            if s.kind == kind:
                return s
        raise LayoutError(f"no {kind} service")

    @property
    def backends(self) -> tuple[BackendSpec, ...]:
        return tuple(b for s in self.services for b in s.backends)

    def ports(self) -> dict[int, str]:
        """Every port the demo binds -> what binds it (for the free-port check)."""
        out = {self.admin_port: "proxy admin (aeraki run --admin-port)"}
        for s in self.services:
            out[s.port] = f"proxy listener of the {s.kind} service {s.host}"
            for b in s.backends:
                out[b.port] = f"{b.kind} server {b.label}"
        return out


@dataclass(frozen=True)
class Phase:
    """One routing phase: the MetaRouters of ``path``, all with one route named ``name``."""

    number: int
    name: str
    path: Path
    #: kind -> version -> weight (percent)
    weights: dict[str, dict[str, int]]

    def versions(self, kind: str) -> frozenset[str]:
        return frozenset(v for v, w in self.weights[kind].items() if w > 0)

    def describe(self) -> str:
        """``v1 20 % / v2 80 %`` when every service has the same weights (the demo's case)."""
        texts = {" / ".join(f"{v} {w} %" for v, w in ws.items()) for ws in self.weights.values()}
        if len(texts) == 1:
            return texts.pop()
        return "; ".join(
            f"{k} " + " / ".join(f"{v} {w} %" for v, w in ws.items())
            for k, ws in self.weights.items()
        )


def _documents(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")):
        yield from _documents_of(path)


def _documents_of(path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise LayoutError(f"cannot read {path}: {exc}") from exc
    for doc in docs:
        if isinstance(doc, dict):
            yield path, doc


def _kind_of(port_name: str) -> str | None:
    for kind in KINDS:
        if port_name.startswith(f"tcp-metaprotocol-{kind}"):
            return kind
    return None


def _service(path: Path, doc: dict[str, Any]) -> Service | None:
    """The demo service of one ServiceEntry (None if it has no MetaProtocol port)."""
    spec = doc.get("spec") or {}
    where = f"{path.name}: ServiceEntry {doc.get('metadata', {}).get('name', '?')}"
    for port in spec.get("ports") or []:
        kind = _kind_of(str(port.get("name", "")))
        if kind is None:
            continue
        backends = []
        for ep in spec.get("endpoints") or []:
            if ep.get("address") != LOOPBACK:
                raise LayoutError(
                    f"{where}: the demo only uses {LOOPBACK}, not {ep.get('address')}"
                )
            label = (ep.get("labels") or {}).get("version")
            target = (ep.get("ports") or {}).get(port["name"])
            if label is None or target is None:
                raise LayoutError(f"{where}: every endpoint needs a version label and a port")
            backends.append(BackendSpec(kind, str(label), int(target)))
        hosts = spec.get("hosts") or ["?"]
        return Service(kind, str(hosts[0]), int(port["number"]), tuple(backends))
    return None


def load_layout(directory: Path = MANIFESTS, admin_port: int = ADMIN_PORT) -> DemoLayout:
    """Read the demo's ServiceEntries in ``directory``; :class:`LayoutError` if incomplete."""
    found: dict[str, Service] = {}
    for path, doc in _documents(directory):
        if doc.get("kind") == "ServiceEntry" and (service := _service(path, doc)) is not None:
            if service.kind in found:
                raise LayoutError(f"{path.name}: a second {service.kind} service")
            found[service.kind] = service
    for kind in KINDS:
        if kind not in found:
            raise LayoutError(f"{directory}: no ServiceEntry with a tcp-metaprotocol-{kind} port")
        if {b.label for b in found[kind].backends} != {"v1", "v2"}:
            raise LayoutError(f"{directory}: the {kind} service needs endpoints v1 and v2")
    layout = DemoLayout(tuple(found[k] for k in KINDS), admin_port)
    if len(layout.ports()) != 1 + sum(1 + len(s.backends) for s in layout.services):
        raise LayoutError(f"{directory}: the same port is used twice")
    return layout


def _phase(number: int, path: Path, layout: DemoLayout) -> Phase:
    kinds = {s.host: s.kind for s in layout.services}
    weights: dict[str, dict[str, int]] = {}
    names = set()
    for _, doc in _documents_of(path):
        if doc.get("kind") != "MetaRouter":
            continue
        spec = doc.get("spec") or {}
        hosts = spec.get("hosts") or []
        routes = spec.get("routes") or []
        if len(hosts) != 1 or hosts[0] not in kinds or len(routes) != 1:
            raise LayoutError(f"{path}: each MetaRouter needs one demo host and one route")
        route = routes[0]
        names.add(str(route.get("name", "")))
        dests = route.get("route") or []
        weights[kinds[hosts[0]]] = {
            str(d["destination"]["subset"]): int(d.get("weight", 100)) for d in dests
        }
    if set(weights) != set(kinds.values()) or len(names) != 1:
        raise LayoutError(f"{path}: needs one MetaRouter per demo service, routes named alike")
    return Phase(number, names.pop(), path, {k: weights[k] for k in KINDS})


def load_phases(layout: DemoLayout, files: tuple[Path, ...] = PHASE_FILES) -> list[Phase]:
    """The routing phases, in order (see :data:`PHASE_FILES`)."""
    return [_phase(i, path, layout) for i, path in enumerate(files, start=1)]


def _remap(doc: dict[str, Any], mapping: dict[int, int]) -> dict[str, Any]:
    if doc.get("kind") != "ServiceEntry":
        return doc
    spec = doc.get("spec") or {}
    for port in spec.get("ports") or []:
        port["number"] = mapping.get(int(port["number"]), port["number"])
    for ep in spec.get("endpoints") or []:
        ports = ep.get("ports") or {}
        for name, value in ports.items():
            ports[name] = mapping.get(int(value), value)
    return doc


def copy_manifests(dst: Path, mapping: dict[int, int] | None = None) -> None:
    """Copy :data:`MANIFESTS` into ``dst``: verbatim, or with the ports in ``mapping`` moved."""
    dst.mkdir(parents=True, exist_ok=True)
    for src in sorted(MANIFESTS.glob("*.yaml")):
        if not mapping:
            shutil.copyfile(src, dst / src.name)
            continue
        docs = [_remap(d, mapping) for d in yaml.safe_load_all(src.read_text()) if d]
        header = f"# {src} with free ports (DEMO_PORTS=auto)\n"
        (dst / src.name).write_text(header + yaml.safe_dump_all(docs, sort_keys=False))


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
