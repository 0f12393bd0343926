"""What one node can see: service ports by ``(host, port)``, and the MetaRouter,
DestinationRule and VirtualService that apply to each host.

Visibility follows Istio's ``exportTo`` (empty or ``*``: every namespace; ``.``: the owner's
namespace; a name: that namespace) for ServiceEntries, DestinationRules, VirtualServices and
MetaRouters alike (reference §2.1 ``exportTo``, §5.5). Hosts match by exact string (quirk §16.15:
use FQDNs); a DestinationRule's or VirtualService's short host is expanded with its namespace
(§3.4). When several resources claim one host, the first in load order wins — except that a
DestinationRule in the node's own namespace is preferred, as Istio does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aeraki.control.model.base import Problem, Resource, Severity
from aeraki.control.model.config import ConfigSnapshot
from aeraki.control.model.istio import DestinationRuleSpec, ServiceEntrySpec, ServicePort
from aeraki.control.model.metaprotocol import MetaRouterSpec
from aeraki.control.model.services import (
    BUILTIN_CODECS,
    Protocol,
    application_protocol_of,
    protocol_of,
)
from aeraki.control.model.virtualservice import VirtualServiceSpec

__all__ = [
    "CLUSTER_DOMAIN",
    "Catalog",
    "PortRef",
    "cluster_name",
    "fqdn",
    "is_visible",
    "parse_cluster_name",
    "problem",
]

CLUSTER_DOMAIN = "svc.cluster.local"  # Aeraki hard-codes it for short-host expansion (§3.4)

#: Port-name protocols the translation configures, with the MetaProtocol codec our proxy
#: uses for the native ones (issue 3 item 7: the Python proxy speaks MetaProtocol for them).
_NATIVE_APP_PROTOCOL = {Protocol.DUBBO: "dubbo", Protocol.THRIFT: "thrift"}


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name expansion: ``svc`` in ``ns`` → ``svc.ns.svc.cluster.local``."""
    return host if "." in host or host == "*" else f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def is_visible(export_to: tuple[str, ...], owner_namespace: str, namespace: str) -> bool:
    """Istio ``exportTo``: may ``namespace`` see a resource living in ``owner_namespace``?"""
    if not export_to or "*" in export_to:
        return True
    return namespace in export_to or ("." in export_to and owner_namespace == namespace)


def cluster_name(direction: str, port: int, subset: str, host: str) -> str:
    """``outbound|<port>|<subset>|<host>`` (Istio's naming, reference §6.8)."""
    return f"{direction}|{port}|{subset}|{host}"


def parse_cluster_name(name: str) -> tuple[int, str, str] | None:
    """``(port, subset, host)`` of an ``outbound|…`` cluster name, ``None`` for anything else."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit() or not parts[3]:
        return None
    return int(parts[1]), parts[2], parts[3]


def problem(
    res: Resource[Any], path: str, message: str, severity: Severity = Severity.ERROR
) -> Problem:
    """A problem about ``res`` at field ``path``, located in its file when known."""
    meta = res.meta
    return Problem(
        severity=severity,
        message=message,
        field_path=path,
        file=meta.origin.file,
        line=meta.origin.line_of(path),
        kind=meta.kind,
        namespace=meta.namespace,
        name=meta.name,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRef:
    """One configurable service port: ``protocol`` is METAPROTOCOL, DUBBO or THRIFT."""

    entry: Resource[ServiceEntrySpec]
    index: int
    port: ServicePort
    protocol: Protocol
    app_protocol: str
    codec: str

    @property
    def host(self) -> str:
        return self.entry.spec.hosts[0]

    @property
    def number(self) -> int:
        return self.port.number

    @property
    def path(self) -> str:
        return f"spec.ports[{self.index}]"

    @property
    def route_name(self) -> str:
        """``<host>_<port>``: the RDS name Aeraki's MetaRDS serves (reference §6.8, §12)."""
        return f"{self.host}_{self.number}"

    def cluster(self, subset: str = "", port: int | None = None) -> str:
        return cluster_name("outbound", port or self.number, subset, self.host)


class Catalog:
    """Resources visible to one namespace, indexed for the translation; collects problems."""

    def __init__(self, config: ConfigSnapshot, namespace: str) -> None:
        self.namespace = namespace
        self.problems: list[Problem] = []
        self.codecs = dict(BUILTIN_CODECS)
        for ap in config.application_protocols:  # later definitions win (§2.2)
            if ap.spec.protocol and ap.spec.codec:
                self.codecs[ap.spec.protocol] = ap.spec.codec
        self.entries = tuple(
            se
            for se in config.service_entries
            if se.spec.hosts and is_visible(se.spec.export_to, se.meta.namespace, namespace)
        )
        self.all_entries = config.service_entries
        #: every port of a visible ServiceEntry, whatever its protocol: cluster targets (a
        #: rate-limit service speaks gRPC, not MetaProtocol).
        self.any_ports: dict[tuple[str, int], PortRef] = {}
        for se in self.entries:
            for i, port in enumerate(se.spec.ports):
                self.any_ports.setdefault(
                    (se.spec.hosts[0], port.number),
                    PortRef(
                        entry=se,
                        index=i,
                        port=port,
                        protocol=protocol_of(port.name),
                        app_protocol="",
                        codec="",
                    ),
                )
        self.ports: dict[tuple[str, int], PortRef] = {}
        for se in self.entries:
            for ref in self.port_refs(se):
                other = self.ports.setdefault((ref.host, ref.number), ref)
                if other is not ref:
                    self.problems.append(
                        problem(
                            se,
                            ref.path,
                            f"port {ref.number} of host {ref.host!r} is already defined by "
                            f"ServiceEntry {other.entry.meta.namespace}/{other.entry.meta.name}; "
                            "this one is ignored",
                            Severity.WARNING,
                        )
                    )
        self._routers = [
            mr
            for mr in config.meta_routers
            if mr.spec.hosts and is_visible(mr.spec.export_to, mr.meta.namespace, namespace)
        ]
        self._rules = [
            dr
            for dr in config.destination_rules
            if is_visible(dr.spec.export_to, dr.meta.namespace, namespace)
        ]
        self._services = [
            vs
            for vs in config.virtual_services
            if is_visible(vs.spec.export_to, vs.meta.namespace, namespace)
        ]
        # Lookups by host are indexed once: translation asks for every service, and a linear
        # scan per lookup made a 1,000-service mesh quadratic (benchmarks/RESULTS.md).
        self._router_by_host: dict[str, Resource[MetaRouterSpec]] = {}
        for mr in self._routers:
            self._router_by_host.setdefault(mr.spec.hosts[0], mr)
        self._rules_by_host: dict[str, list[Resource[DestinationRuleSpec]]] = {}
        for dr in self._rules:
            self._rules_by_host.setdefault(fqdn(dr.spec.host, dr.meta.namespace), []).append(dr)
        self._service_by_host: dict[str, Resource[VirtualServiceSpec]] = {}
        for vs in self._services:
            for h in vs.spec.hosts:
                self._service_by_host.setdefault(fqdn(h, vs.meta.namespace), vs)

    def port_refs(self, se: Resource[ServiceEntrySpec]) -> Iterator[PortRef]:
        """The ports of ``se`` this translation configures; unusable ones become problems."""
        if not se.spec.hosts:
            return
        for i, port in enumerate(se.spec.ports):
            protocol = protocol_of(port.name)
            app: str | None
            if protocol is Protocol.METAPROTOCOL:
                app = application_protocol_of(port.name)
            else:
                app = _NATIVE_APP_PROTOCOL.get(protocol)
                if app is None:
                    continue  # not ours: other protocols are other issues' business
            codec = self.codecs.get(app) if app else None
            if app is None or codec is None:
                self.problems.append(
                    problem(
                        se,
                        f"spec.ports[{i}].name",
                        f"can't find codec for protocol: {app or '<none>'} (port {port.name!r} "
                        "skipped; define an ApplicationProtocol or name the port "
                        "tcp-metaprotocol-<protocol>-…)",
                    )
                )
                continue
            yield PortRef(
                entry=se, index=i, port=port, protocol=protocol, app_protocol=app, codec=codec
            )

    def meta_router(self, host: str) -> Resource[MetaRouterSpec] | None:
        """The first visible MetaRouter whose ``hosts[0]`` is ``host`` (§6.8 "related MR")."""
        return self._router_by_host.get(host)

    def meta_routers(self) -> list[Resource[MetaRouterSpec]]:
        return list(self._routers)

    def destination_rule(self, host: str) -> Resource[DestinationRuleSpec] | None:
        """The DestinationRule for ``host``: the node's namespace first, then load order."""
        found = self._rules_by_host.get(host, [])
        local = [dr for dr in found if dr.meta.namespace == self.namespace]
        chosen = local or found
        return chosen[0] if chosen else None

    def virtual_service(self, host: str) -> Resource[VirtualServiceSpec] | None:
        """The first visible VirtualService listing ``host`` (§3.3, FQDN comparison)."""
        return self._service_by_host.get(host)
