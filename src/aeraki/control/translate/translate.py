"""``translate()``: one node's listeners, clusters, endpoints and routes from a config snapshot.

Pure and deterministic: the same snapshot and node give the same resources in the same order
(clusters, endpoints, listeners, routes, each sorted by name), so the content-hash versions of
:mod:`aeraki.control.xds.snapshot` only change when the configuration does.

Scoping ("each proxy receives only what its node needs", issue 3 item 5):

- Outbound: every service port visible to the node's namespace (``exportTo``), narrowed to the
  hosts in ``SERVICES`` when the node sends it. Clusters follow: ``outbound|<port>||<host>``
  and one per DestinationRule subset for each of those ports, plus every cluster a route,
  mirror or rate-limit service names (even on a host outside ``SERVICES``), so no route of the
  node dangles.
- Inbound: the ports of every ServiceEntry whose workload selector (or ``workloadSelector``
  annotation, §3.2) matches the node's ``LABELS``: the node is that service's server sidecar.
- Two listeners on one address and port: the first (load order) is kept, the second reported
  naming both and skipped; the rest of the configuration is still translated.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from aeraki.control.model.base import Problem, Resource, Severity
from aeraki.control.model.config import ConfigSnapshot
from aeraki.control.model.istio import ServiceEntrySpec
from aeraki.control.model.metaprotocol import MetaRouterSpec
from aeraki.control.model.services import Protocol
from aeraki.control.translate.api import (
    DATA_PLANE_ENVOY,
    DATA_PLANE_PYTHON,
    RATELIMIT_FILTER,
    NodeInfo,
    TranslateOptions,
    Translation,
)
from aeraki.control.translate.catalog import Catalog, PortRef, parse_cluster_name, problem
from aeraki.control.translate.clusters import build_cluster, static_cluster
from aeraki.control.translate.listeners import (
    MPP_FILTER,
    access_logs,
    inbound_cluster_name,
    listener,
    meta_protocol_filters,
    meta_protocol_proxy,
)
from aeraki.control.translate.memo import TranslationMemo
from aeraki.control.translate.native import native_inbound, native_outbound
from aeraki.control.translate.routes import plan_routes, route_configuration
from aeraki.control.translate.telemetry import direction, instrument, otlp_cluster, trace
from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2 as mpp_pb2

__all__ = ["translate"]


@functools.lru_cache(maxsize=4096)  # per translation, every port asks again; it is pure
def _loopback(addresses: tuple[str, ...]) -> str | None:
    for text in addresses:
        try:
            if ipaddress.ip_address(text).is_loopback:
                return text
        except ValueError:
            continue  # a CIDR range: not a bind address
    return None


def workload_selector(se: Resource[ServiceEntrySpec]) -> Mapping[str, str]:
    """``spec.workloadSelector.labels``, else the ``workloadSelector`` annotation (§3.2:
    ``"v"`` ⇒ ``{app: v}``, ``"k: v"`` ⇒ ``{k: v}``); empty means "no server side" (§16.5)."""
    if se.spec.workload_selector:
        return se.spec.workload_selector
    text = se.meta.annotations.get("workloadSelector", "").replace(" ", "")
    if not text:
        return {}
    key, sep, value = text.partition(":")
    return {key: value} if sep else {"app": text}


class _Builder:
    def __init__(
        self,
        config: ConfigSnapshot,
        node: NodeInfo,
        options: TranslateOptions,
        memo: TranslationMemo | None = None,
    ) -> None:
        self.catalog = Catalog(config, node.namespace)
        self.node = node
        self.options = options
        self.memo = memo if memo is not None else TranslationMemo()
        self.memo.begin(config)
        self.listeners: dict[str, Message] = {}
        self.routes: dict[str, Message] = {}
        self.clusters: dict[str, Message] = {}
        self.assignments: dict[str, Message] = {}
        self.bound: dict[tuple[str, int], PortRef] = {}
        #: cluster name -> (resource, field path) that asked for it, for problems.
        self.wanted: dict[str, tuple[Resource[Any], str]] = {}

    @property
    def problems(self) -> list[Problem]:
        return self.catalog.problems

    def _bind(self, address: str, port: int, ref: PortRef, direction: str) -> bool:
        other = self.bound.setdefault((address, port), ref)
        if other is ref:
            return True
        o = other.entry.meta
        self.problems.append(
            problem(
                ref.entry,
                ref.path,
                f"{direction} listener {address}:{port} for {ref.host}:{ref.number} collides "
                f"with {other.host}:{other.number} (ServiceEntry {o.namespace}/{o.name}); "
                "this one is skipped",
            )
        )
        return False

    def _want(self, name: str, res: Resource[Any], path: str) -> None:
        self.wanted.setdefault(name, (res, path))

    def _want_rate_limit_service(
        self, mr: Resource[MetaRouterSpec] | None, filters: list[mpp_pb2.MetaProtocolFilter]
    ) -> None:
        """The RLS cluster of a global rate limit filter in ``filters`` (from a ServiceEntry
        of the service, as Istio would build it for Aeraki's sidecars, reference §6.5)."""
        limit = mr.spec.global_rate_limit if mr is not None else None
        if limit is not None and any(f.name == RATELIMIT_FILTER for f in filters):
            assert mr is not None
            self._want(limit.rate_limit_service, mr, "spec.globalRateLimit.rateLimitService")

    def outbound(self) -> None:
        services = self.node.services
        plane = self.node.data_plane
        for ref in self.catalog.ports.values():
            if services is not None and ref.host not in services:
                continue
            native = ref.protocol is not Protocol.METAPROTOCOL and plane != DATA_PLANE_PYTHON
            if ref.protocol is Protocol.METAPROTOCOL and plane == DATA_PLANE_ENVOY:
                continue  # stock Envoy has no MetaProtocol filter
            address = _loopback(ref.entry.spec.addresses) or self.node.bind_address(
                self.options.bind_address
            )
            if not self._bind(address, ref.number, ref, "outbound"):
                continue
            name = f"{address}_{ref.number}"
            mr = self.catalog.meta_router(ref.host)
            # Pieces are reused from the view's last translation when built from the same
            # resources (translate/memo.py); the guards name what each one reads.
            guards = (ref.entry, ref.index, mr, self.catalog.virtual_service(ref.host))
            plans = self._memo(("plans", ref.host, ref.number), guards, plan_routes, ref)
            if native:
                built = self._memo(
                    ("native", name), (*guards, plans), native_outbound, ref, name, address, plans
                )
                if built is None:
                    continue
                self.listeners[name] = built
            else:
                filters, self.listeners[name] = self._memo(
                    ("listener", name), (*guards, address), self._outbound_listener, ref, name
                )
                self.routes[ref.route_name] = self._memo(
                    ("routes", ref.route_name),
                    (plans,),
                    route_configuration,
                    ref,
                    plans,
                    extensions=plane == DATA_PLANE_PYTHON,
                )
                self._want_rate_limit_service(mr, filters)
            self._want(ref.cluster(), ref.entry, ref.path)
            rule = self.catalog.destination_rule(ref.host)
            for i, subset in enumerate(rule.spec.subsets if rule else ()):
                assert rule is not None
                self._want(ref.cluster(subset.name), rule, f"spec.subsets[{i}]")
            origin: Resource[Any] = mr or self.catalog.virtual_service(ref.host) or ref.entry
            for plan in plans:
                for cluster in plan.clusters:
                    self._want(cluster, origin, "spec")

    def _memo(
        self, key: tuple[object, ...], guards: tuple[Any, ...], build: Any, *args: Any, **kw: Any
    ) -> Any:
        """``build(catalog, *args, **kw)``, or its result from the last translation."""
        return self.memo.get(key, guards, self.problems, lambda: build(self.catalog, *args, **kw))

    def _outbound_listener(
        self, catalog: Catalog, ref: PortRef, name: str
    ) -> tuple[list[mpp_pb2.MetaProtocolFilter], Message]:
        address = name.rsplit("_", 1)[0]
        filters = meta_protocol_filters(
            catalog,
            catalog.meta_router(ref.host),
            self.options,
            with_rate_limits=self.options.rate_limit_side == "outbound",
        )
        instrument(filters, ref.host, self.options)
        proxy = meta_protocol_proxy(
            ref,
            f"outbound|{ref.number}||{ref.host}",
            filters,
            route_config_name=ref.route_name,
            access_log=access_logs(self.options),
        )
        trace(proxy, self.options)
        out = direction(self.options, inbound=False)
        return filters, listener(name, address, ref.number, MPP_FILTER, proxy, out)

    def inbound(self) -> None:
        labels = self.node.labels
        if not labels:
            return
        plane = self.node.data_plane
        ips = self.node.instance_ips
        ip = ips[0] if ips else self.node.bind_address(self.options.bind_address)
        app_ports = self.node.metadata.get("APP_PORTS")
        for se in self.catalog.all_entries:
            selector = workload_selector(se)
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for ref in self.catalog.port_refs(se):
                if ref.protocol is Protocol.METAPROTOCOL and plane == DATA_PLANE_ENVOY:
                    continue
                port = (
                    next(
                        (
                            ep.ports.get(ref.port.name)
                            for ep in se.spec.endpoints
                            if ep.address == ip
                        ),
                        None,
                    )
                    or ref.port.target_port
                    or ref.number
                )
                app_port = port
                if isinstance(app_ports, Mapping):
                    app_port = int(app_ports.get(str(ref.number), port))
                if (self.options.app_address, app_port) == (ip, port):
                    self.problems.append(
                        problem(
                            se,
                            ref.path,
                            f"inbound listener {ip}:{port} would forward to itself: give the "
                            "node an INSTANCE_IPS other than the app address, or APP_PORTS",
                        )
                    )
                    continue
                if not self._bind(ip, port, ref, "inbound"):
                    continue
                name = f"inbound_{ip}_{port}"
                cluster = inbound_cluster_name(ref.number)
                if ref.protocol is not Protocol.METAPROTOCOL and plane != DATA_PLANE_PYTHON:
                    self.listeners[name] = native_inbound(ref, name, ip, port, cluster)
                else:
                    mr = self.catalog.meta_router(ref.host)
                    filters = meta_protocol_filters(
                        self.catalog,
                        mr,
                        self.options,
                        with_rate_limits=self.options.rate_limit_side == "inbound",
                    )
                    self._want_rate_limit_service(mr, filters)
                    instrument(filters, ref.host, self.options)
                    proxy = meta_protocol_proxy(
                        ref,
                        cluster,
                        filters,
                        inline_cluster=cluster,
                        access_log=access_logs(self.options),
                    )
                    trace(proxy, self.options)
                    into = direction(self.options, inbound=True)
                    self.listeners[name] = listener(name, ip, port, MPP_FILTER, proxy, into)
                self.clusters[cluster] = static_cluster(
                    cluster, self.options.app_address, app_port, self.options
                )

    def build_clusters(self) -> None:
        collector = otlp_cluster(self.options)
        if collector is not None:
            self.clusters[collector.name] = collector
        for name, (res, path) in self.wanted.items():
            if name in self.clusters:
                continue
            parsed = parse_cluster_name(name)
            key = (parsed[2], parsed[0]) if parsed else None
            ref = self.catalog.ports.get(key) or self.catalog.any_ports.get(key) if key else None
            if parsed is None or ref is None:
                self.problems.append(
                    problem(
                        res,
                        path,
                        f"cluster {name!r}: no visible ServiceEntry defines this host and port; "
                        "requests sent there fail",
                        Severity.WARNING,
                    )
                )
                continue
            cluster, assignment = self._memo(
                ("cluster", name),
                (ref.entry, ref.index),
                build_cluster,
                ref,
                parsed[1],
                self.options,
                self.node,  # endpoint priorities are relative to its locality
            )
            self.clusters[name] = cluster
            if assignment is not None:
                self.assignments[name] = assignment

    def result(self) -> Translation:
        resources: list[Message] = []
        for table in (self.clusters, self.assignments, self.listeners, self.routes):
            resources.extend(table[k] for k in sorted(table))
        return Translation(resources=tuple(resources), problems=tuple(dict.fromkeys(self.problems)))


_DEFAULT_OPTIONS = TranslateOptions()


def translate(
    config: ConfigSnapshot,
    node: NodeInfo,
    options: TranslateOptions = _DEFAULT_OPTIONS,
    memo: TranslationMemo | None = None,
) -> Translation:
    """The xDS resources ``node`` needs from ``config`` (see the module docstring for scope).

    Never raises on bad configuration: what cannot be translated is reported in
    :attr:`Translation.problems` and left out, and everything else is still translated.
    ``memo`` (one per node view, with the same ``options`` every time) makes it incremental:
    pieces built from unchanged resources are reused, not rebuilt (``translate/memo.py``).
    """
    builder = _Builder(config, node, options, memo)
    builder.outbound()
    builder.inbound()
    builder.build_clusters()
    builder.memo.end()
    return builder.result()
