"""``render_envoyfilters``: the EnvoyFilters Aeraki would apply to Istio sidecars (reference §5).

Pure (no I/O): a :class:`~aeraki.control.model.ConfigSnapshot` and the mesh config in, Kubernetes
objects out, sorted by namespace and name, plus the problems found. An Istio + Aeraki user can
render them from the same manifests, diff them against what Aeraki wrote, and switch control
planes (:mod:`.reconcile` writes them).

Per service port (§4: ``tcp-metaprotocol-<proto>…``, ``tcp-dubbo…``, ``tcp-thrift…``,
``tcp-kafka…``, ``tcp-zookeeper…``):

- one outbound EF per ServiceEntry address, ``aeraki-outbound-<host0>-<address>-<port>``,
  patching the tcp_proxy of listener ``<address>_<port>`` (§5.2);
- one inbound EF ``aeraki-inbound-<host0>-<port>`` with the service's workload selector,
  patching the tcp_proxy of ``virtualInbound`` on ``destinationPort: <port>`` (§5.3);
- label ``manager: Aeraki``; namespace: the MetaRouter's ``exportTo`` namespaces, else the
  root namespace (or the ServiceEntry's with ``namespace_scope``) (§5.5).

Resources are matched as Aeraki does (§3): ``exportTo`` of ServiceEntries, DestinationRules and
VirtualServices is not read (the EFs live in the root namespace and apply mesh-wide); a
MetaRouter's ``exportTo`` only places the EFs. Quirks fixed (§16): an SE with a bad port or no
host is skipped alone (§16.1, §16.4); no inbound EF without a selector (§16.5); native
generators use the detected port, not ``ports[0]`` (§16.6), and every Aeraki port of an SE is
rendered, not only the first protocol's (§4.3); Dubbo without ``interface`` gets no outbound EF
(§16.12); an EF name Kubernetes would reject is reported instead of failing the whole apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aeraki.control.envoyfilter.mesh import MeshConfig
from aeraki.control.envoyfilter.payload import (
    Filter,
    mpp_inbound,
    mpp_outbound,
    native_inbound,
    native_outbound,
    stats_only,
)
from aeraki.control.model.base import Problem, Resource, Severity
from aeraki.control.model.config import ConfigSnapshot
from aeraki.control.model.istio import ServiceEntrySpec
from aeraki.control.model.names import is_dns1123_subdomain
from aeraki.control.model.services import Protocol, protocol_of
from aeraki.control.translate.catalog import Catalog, PortRef, problem
from aeraki.control.translate.translate import workload_selector

__all__ = [
    "API_VERSION",
    "KIND",
    "MANAGER_LABEL",
    "RenderResult",
    "allocate_vip",
    "render_envoyfilters",
]

API_VERSION = "networking.istio.io/v1alpha3"
KIND = "EnvoyFilter"
MANAGER_LABEL = ("manager", "Aeraki")
TCP_PROXY = "envoy.filters.network.tcp_proxy"
VIRTUAL_INBOUND = "virtualInbound"
_VIP_PREFIX = "240.240."

#: §11: protocol → (filter name, proto type name) of the stats-only filters.
_STATS_ONLY = {
    Protocol.KAFKA: (
        "envoy.filters.network.kafka_broker",
        "envoy.extensions.filters.network.kafka_broker.v3.KafkaBroker",
    ),
    Protocol.ZOOKEEPER: (
        "envoy.filters.network.zookeeper_proxy",
        "envoy.extensions.filters.network.zookeeper_proxy.v3.ZooKeeperProxy",
    ),
}

EnvoyFilter = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RenderResult:
    """EnvoyFilter objects sorted by (namespace, name), and every problem found."""

    envoyfilters: list[EnvoyFilter]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)


def allocate_vip(counter: int) -> tuple[str, int]:
    """§13.6 VIP sequence: ``(ip, next counter)``; values ≡ 0 mod 255 are skipped, wraps at
    255². Counter 0 → ``240.240.0.1``; 255 and 256 → ``240.240.1.1``."""
    counter %= 255 * 255
    if counter % 255 == 0:
        counter += 1
    return f"{_VIP_PREFIX}{counter // 255}.{counter % 255}", counter + 1


def _unscoped(config: ConfigSnapshot) -> ConfigSnapshot:
    """The snapshot with every ``exportTo`` cleared: Aeraki ignores visibility (§3.2, §5.5)."""

    def clear(items: tuple[Resource[Any], ...]) -> tuple[Resource[Any], ...]:
        return tuple(
            dataclasses.replace(r, spec=dataclasses.replace(r.spec, export_to=())) for r in items
        )

    return dataclasses.replace(
        config,
        meta_routers=clear(config.meta_routers),
        service_entries=clear(config.service_entries),
        destination_rules=clear(config.destination_rules),
        virtual_services=clear(config.virtual_services),
    )


def _patch(listener: Mapping[str, Any], value: Filter, operation: str) -> dict[str, Any]:
    return {
        "applyTo": "NETWORK_FILTER",
        "match": {"listener": dict(listener)},
        "patch": {"operation": operation, "value": value},
    }


class _Renderer:
    def __init__(
        self, config: ConfigSnapshot, mesh: MeshConfig, namespace_scope: bool, vips: bool
    ) -> None:
        self.mesh = mesh
        self.namespace_scope = namespace_scope
        self.catalog = Catalog(_unscoped(config), mesh.root_namespace)
        self.export_to = {mr.meta.key: mr.spec.export_to for mr in config.meta_routers}
        self.addresses = self._addresses(config, vips)
        self.out: dict[tuple[str, str], EnvoyFilter] = {}

    @property
    def problems(self) -> list[Problem]:
        return self.catalog.problems

    def _addresses(
        self, config: ConfigSnapshot, vips: bool
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """SE key → addresses; with ``vips``, what Aeraki's allocator would assign (§13.6)."""
        used = {a for se in config.service_entries for a in se.spec.addresses}
        counter = 0
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        for se in config.service_entries:
            key = (se.meta.namespace, se.meta.name)
            out[key] = se.spec.addresses
            if se.spec.addresses or not self._has_aeraki_port(se):
                continue
            if not vips or se.spec.resolution == "NONE":
                self.problems.append(
                    problem(
                        se,
                        "spec.addresses",
                        "no address: Istio names outbound listeners <address>_<port>, so no "
                        "outbound EnvoyFilter (Aeraki's VIP allocator would assign one, §13.6; "
                        "add spec.addresses or render with --allocate-vips)",
                        Severity.WARNING,
                    )
                )
                continue
            vip, counter = allocate_vip(counter)
            while vip in used:
                vip, counter = allocate_vip(counter)
            used.add(vip)
            out[key] = (vip,)
            self.problems.append(
                problem(
                    se,
                    "spec.addresses",
                    f"no address: assumed VIP {vip} as Aeraki's allocator assigns (§13.6); "
                    "Istio's listener has this name only once the ServiceEntry carries it",
                    Severity.WARNING,
                )
            )
        return out

    @staticmethod
    def _has_aeraki_port(se: Resource[ServiceEntrySpec]) -> bool:
        return any(protocol_of(p.name).has_generator for p in se.spec.ports)

    def _namespaces(self, se: Resource[ServiceEntrySpec]) -> list[str]:
        """§5.5 placement."""
        mr = self.catalog.meta_router(se.spec.hosts[0])
        export = self.export_to.get(mr.meta.key, ()) if mr is not None else ()
        if mr is not None and export:
            named = [
                mr.meta.namespace if e == "." else self.mesh.root_namespace if e == "*" else e
                for e in export
            ]
            return list(dict.fromkeys(named))
        return [se.meta.namespace if self.namespace_scope else self.mesh.root_namespace]

    def _emit(
        self,
        se: Resource[ServiceEntrySpec],
        path: str,
        name: str,
        spec: dict[str, Any],
    ) -> None:
        if not is_dns1123_subdomain(name):
            self.problems.append(
                problem(
                    se,
                    path,
                    f"EnvoyFilter name {name!r} is not a valid Kubernetes name "
                    "(lower-case DNS-1123 subdomain, at most 253 characters); not rendered",
                )
            )
            return
        for namespace in self._namespaces(se):
            meta = {"name": name, "namespace": namespace, "labels": dict([MANAGER_LABEL])}
            obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
            self.out.setdefault((namespace, name), obj)

    def service(
        self,
        se: Resource[ServiceEntrySpec],
        index: int,
        number: int,
        outbound: Callable[[], Filter | None],
        inbound: Callable[[], Filter],
        operation: str = "REPLACE",
    ) -> None:
        """The outbound EFs (one per address) and the inbound EF of one service port."""
        host, path = se.spec.hosts[0], f"spec.ports[{index}]"
        addresses = self.addresses.get((se.meta.namespace, se.meta.name), ())
        value = outbound() if addresses else None
        for address in addresses if value is not None else ():
            assert value is not None
            listener = {
                "name": f"{address}_{number}",
                "filterChain": {"filter": {"name": TCP_PROXY}},
            }
            spec: dict[str, Any] = {"configPatches": [_patch(listener, value, operation)]}
            self._emit(se, path, f"aeraki-outbound-{host}-{address}-{number}", spec)
        selector = workload_selector(se)
        if selector:
            listener = {
                "name": VIRTUAL_INBOUND,
                "filterChain": {"destinationPort": number, "filter": {"name": TCP_PROXY}},
            }
            spec = {
                "workloadSelector": {"labels": dict(selector)},
                "configPatches": [_patch(listener, inbound(), operation)],
            }
            self._emit(se, path, f"aeraki-inbound-{host}-{number}", spec)

    def port(self, ref: PortRef) -> None:
        catalog, mesh = self.catalog, self.mesh
        if ref.protocol is Protocol.METAPROTOCOL:
            self.service(
                ref.entry,
                ref.index,
                ref.number,
                lambda: mpp_outbound(catalog, ref, mesh),
                lambda: mpp_inbound(catalog, ref, mesh),
            )
        else:
            self.service(
                ref.entry,
                ref.index,
                ref.number,
                lambda: native_outbound(catalog, ref),
                lambda: native_inbound(ref),
            )

    def stats_only_ports(self) -> Iterator[tuple[Resource[ServiceEntrySpec], int, int, Protocol]]:
        seen: set[tuple[str, int]] = set()
        for se in self.catalog.entries:
            for i, port in enumerate(se.spec.ports):
                protocol = protocol_of(port.name)
                key = (se.spec.hosts[0], port.number)
                if protocol in _STATS_ONLY and key not in seen:
                    seen.add(key)
                    yield se, i, port.number, protocol

    def run(self) -> RenderResult:
        for ref in self.catalog.ports.values():
            self.port(ref)
        for se, index, number, protocol in self.stats_only_ports():
            name, type_name = _STATS_ONLY[protocol]
            host = se.spec.hosts[0]
            self.service(
                se,
                index,
                number,
                partial(stats_only, name, type_name, f"outbound|{number}||{host}"),
                partial(stats_only, name, type_name, f"inbound|{number}||"),
                operation="INSERT_BEFORE",
            )
        filters = [self.out[k] for k in sorted(self.out)]
        return RenderResult(envoyfilters=filters, problems=tuple(dict.fromkeys(self.problems)))


_DEFAULT_MESH = MeshConfig()


def render_envoyfilters(
    config: ConfigSnapshot,
    mesh: MeshConfig = _DEFAULT_MESH,
    *,
    namespace_scope: bool = False,
    allocate_vips: bool = False,
) -> RenderResult:
    """The EnvoyFilters Aeraki would write for ``config`` (see the module docstring).

    Args:
        config: valid resources (``load_config``); problems already in it are not repeated.
        mesh: mesh config (access log, tracing, root namespace), §13.8.
        namespace_scope: Aeraki's ``--enable-envoy-filter-namespace-scope``: EFs of a service
            without MetaRouter ``exportTo`` go to the ServiceEntry's namespace (§5.5).
        allocate_vips: give ServiceEntries without addresses the VIPs Aeraki's allocator would
            (``240.240.0.1``, … in load order, §13.6) instead of skipping their outbound EFs.

    Never raises on bad configuration: what cannot be rendered is a problem.
    """
    return _Renderer(config, mesh, namespace_scope, allocate_vips).run()
