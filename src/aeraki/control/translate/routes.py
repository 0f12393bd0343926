"""MetaProtocol routes: from a MetaRouter (reference §6.8), a VirtualService (tcp-dubbo /
tcp-thrift ports, §3.3) or the default route, into the HTTP ``RouteConfiguration`` carrier
Aeraki's MetaRDS serves (§6.9) and our proxy reads back (meta-protocol-proxy §15).

Routes are first planned in a neutral form (:class:`RoutePlan`) so the native Envoy Dubbo and
Thrift filters (§8–§9) reuse the same decisions. Quirks fixed (§16): attribute matchers sorted
by name (§16.7, the model already sorts), one hash-policy entry per distinct key, and a subset
without its own load balancer inherits the DestinationRule's top-level consistent-hash key —
the same merge Istio applies to the subset's cluster, so cluster and route agree (§16.16).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from aeraki.control.model.base import Resource, Severity
from aeraki.control.model.common import Destination, MatchKind, StringMatch
from aeraki.control.model.istio import DestinationRuleSpec, LoadBalancer
from aeraki.control.model.metaprotocol import MetaRouterSpec
from aeraki.control.model.services import Protocol
from aeraki.control.model.virtualservice import VirtualServiceSpec
from aeraki.control.translate.catalog import Catalog, PortRef, cluster_name, fqdn, problem

__all__ = [
    "RoutePlan",
    "Target",
    "header_matchers",
    "http_route_configuration",
    "load_balancer_of",
    "plan_routes",
]

_MILLION = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    cluster: str
    weight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePlan:
    """One route, data-plane neutral. ``mirror_millionths`` is the mirrored share of 10⁶."""

    name: str
    match: tuple[tuple[str, StringMatch], ...] = ()
    targets: tuple[Target, ...] = ()
    hash_keys: tuple[str, ...] = ()
    mirror: str = ""
    mirror_millionths: int = _MILLION
    request_mutation: tuple[tuple[str, str], ...] = ()
    response_mutation: tuple[tuple[str, str], ...] = ()

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(t.cluster for t in self.targets) + ((self.mirror,) if self.mirror else ())


def load_balancer_of(rule: DestinationRuleSpec | None, subset: str) -> LoadBalancer | None:
    """The effective load balancer of a subset: its own, else the rule's top level (Istio)."""
    if rule is None:
        return None
    for s in rule.subsets:
        if s.name == subset and s.traffic_policy and s.traffic_policy.load_balancer:
            return s.traffic_policy.load_balancer
    return rule.traffic_policy.load_balancer if rule.traffic_policy else None


def _hash_key(catalog: Catalog, host: str, subset: str) -> str:
    rule = catalog.destination_rule(host)
    lb = load_balancer_of(rule.spec if rule else None, subset)
    return lb.consistent_hash.http_header_name if lb and lb.consistent_hash else ""


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def default_route(catalog: Catalog, ref: PortRef) -> RoutePlan:
    """All to ``outbound|<port>||<host>`` (§6.8 "Without MR")."""
    return RoutePlan(
        name="default",
        targets=(Target(cluster=ref.cluster()),),
        hash_keys=_unique([_hash_key(catalog, ref.host, "")]),
    )


def _subset_missing(catalog: Catalog, dest: Destination, namespace: str) -> str | None:
    """Why ``dest.subset`` is dangling, or ``None`` when it is fine."""
    if not dest.subset:
        return None
    rule = catalog.destination_rule(fqdn(dest.host, namespace))
    if rule is None:
        return f'subset "{dest.subset}" is not defined: no DestinationRule for host "{dest.host}"'
    names = [s.name for s in rule.spec.subsets]
    if dest.subset in names:
        return None
    return (
        f'subset "{dest.subset}" is not defined in DestinationRule '
        f"{rule.meta.namespace}/{rule.meta.name} (subsets: {', '.join(names) or 'none'})"
    )


def _weights(weights: list[int]) -> list[int]:
    """Weights as written, or an even split when none is set (the proxy refuses a 0 total)."""
    return weights if sum(weights) > 0 else [1] * len(weights)


def _from_meta_router(
    catalog: Catalog, ref: PortRef, mr: Resource[MetaRouterSpec]
) -> list[RoutePlan] | None:
    plans: list[RoutePlan] = []
    dangling = False
    for i, route in enumerate(mr.spec.routes):
        path = f"spec.routes[{i}]"
        dests = [
            (f"{path}.route[{j}].destination", d.destination) for j, d in enumerate(route.route)
        ]
        if route.mirror is not None:
            dests.append((f"{path}.mirror", route.mirror))
        for where, dest in dests:
            why = _subset_missing(catalog, dest, mr.meta.namespace)
            if why:
                catalog.problems.append(problem(mr, f"{where}.subset", why))
                dangling = True
        if not route.route:
            catalog.problems.append(
                problem(mr, f"{path}.route", "route has no destination; skipped")
            )
            continue
        targets = [
            Target(
                cluster=cluster_name(
                    "outbound",
                    d.destination.port or ref.number,
                    d.destination.subset,
                    d.destination.host,
                ),
                weight=d.weight,
            )
            for d in route.route
        ]
        if len(targets) > 1:
            weights = _weights([t.weight for t in targets])
            targets = [
                Target(cluster=t.cluster, weight=w) for t, w in zip(targets, weights, strict=True)
            ]
        else:
            targets = [Target(cluster=targets[0].cluster)]
        mirror, millionths = "", _MILLION
        if route.mirror is not None:
            m = route.mirror
            mirror = cluster_name("outbound", m.port or ref.number, m.subset, m.host)
            pct = route.mirror_percentage or 100.0
            millionths = max(0, min(_MILLION, round(pct * 10_000)))
        plans.append(
            RoutePlan(
                name=route.name,
                match=tuple(route.match.attributes.items()) if route.match else (),
                targets=tuple(targets),
                hash_keys=_unique(
                    _hash_key(catalog, d.destination.host, d.destination.subset)
                    for d in route.route
                ),
                mirror=mirror,
                mirror_millionths=millionths,
                request_mutation=tuple((kv.key, kv.value) for kv in route.request_mutation),
                response_mutation=tuple((kv.key, kv.value) for kv in route.response_mutation),
            )
        )
    return None if dangling else plans


def _from_virtual_service(
    catalog: Catalog, ref: PortRef, vs: Resource[VirtualServiceSpec]
) -> list[RoutePlan] | None:
    """§3.3: ``match[0]`` method/headers (Dubbo; Thrift keeps only ``method``), destinations
    by subset of the service's own host and port (destination host/port are ignored)."""
    plans: list[RoutePlan] = []
    dangling = False
    for i, route in enumerate(vs.spec.http):
        for j, d in enumerate(route.route):
            why = _subset_missing(catalog, d.destination, vs.meta.namespace)
            if why:
                catalog.problems.append(
                    problem(vs, f"spec.http[{i}].route[{j}].destination.subset", why)
                )
                dangling = True
        if not route.route:
            continue
        match: dict[str, StringMatch] = {}
        if route.match:
            first = route.match[0]
            if ref.protocol is Protocol.DUBBO:
                match.update(first.headers)
            if first.method is not None:
                match["method"] = first.method
        subsets = [d.destination.subset for d in route.route]
        weights = _weights([d.weight for d in route.route]) if len(subsets) > 1 else [0]
        plans.append(
            RoutePlan(
                name=route.name,
                match=tuple(sorted(match.items())),
                targets=tuple(
                    Target(cluster=ref.cluster(s), weight=w)
                    for s, w in zip(subsets, weights, strict=False)
                ),
                hash_keys=_unique(_hash_key(catalog, ref.host, s) for s in subsets),
            )
        )
    return None if dangling else plans


def plan_routes(catalog: Catalog, ref: PortRef) -> tuple[RoutePlan, ...]:
    """The routes of one service port; the default route when nothing (usable) routes it.

    A MetaRouter (or VirtualService) naming a subset its DestinationRule lacks is reported and
    ignored as a whole, exactly as validation leaves it out of the snapshot.
    """
    plans: list[RoutePlan] | None = None
    if ref.protocol is Protocol.METAPROTOCOL:
        mr = catalog.meta_router(ref.host)
        if mr is not None and mr.spec.routes:  # rate-limit-only MR: default route (§6.8)
            plans = _from_meta_router(catalog, ref, mr)
            if plans is None:
                catalog.problems.append(
                    problem(
                        mr,
                        "spec.routes",
                        f"MetaRouter ignored for {ref.route_name}: default route used",
                        Severity.WARNING,
                    )
                )
    else:
        vs = catalog.virtual_service(ref.host)
        if vs is not None:
            plans = _from_virtual_service(catalog, ref, vs)
    return tuple(plans) if plans else (default_route(catalog, ref),)


# --- HTTP RouteConfiguration carrier (§6.9) ----------------------------------------------------


def header_matchers(
    match: Iterable[tuple[str, StringMatch]],
) -> list[route_components_pb2.HeaderMatcher]:
    """Attribute matches → Envoy ``HeaderMatcher`` (§6.8 table): exact (``""`` = present at
    the data plane), prefix, RE2 full-match regex, presence."""
    out = []
    for name, m in match:
        hm = route_components_pb2.HeaderMatcher(name=name)
        if m.kind is MatchKind.EXACT:
            hm.exact_match = m.value
        elif m.kind is MatchKind.PREFIX:
            hm.prefix_match = m.value
        elif m.kind is MatchKind.REGEX:
            hm.safe_regex_match.CopyFrom(
                regex_pb2.RegexMatcher(regex=m.value, google_re2=regex_pb2.RegexMatcher.GoogleRE2())
            )
        else:
            hm.present_match = True
        out.append(hm)
    return out


def _header_options(pairs: Iterable[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v)) for k, v in pairs
    ]


def _http_route(plan: RoutePlan) -> route_components_pb2.Route:
    action = route_components_pb2.RouteAction()
    if len(plan.targets) == 1:
        action.cluster = plan.targets[0].cluster
    else:
        for t in plan.targets:
            action.weighted_clusters.clusters.add(
                name=t.cluster, weight=wrappers_pb2.UInt32Value(value=t.weight)
            )
    for key in plan.hash_keys:
        action.hash_policy.add().header.header_name = key
    if plan.mirror:
        mirror = action.request_mirror_policies.add(cluster=plan.mirror)
        mirror.runtime_fraction.default_value.CopyFrom(
            percent_pb2.FractionalPercent(
                numerator=plan.mirror_millionths,
                denominator=percent_pb2.FractionalPercent.MILLION,
            )
        )
    return route_components_pb2.Route(
        name=plan.name,
        match=route_components_pb2.RouteMatch(prefix="/", headers=header_matchers(plan.match)),
        route=action,
        request_headers_to_add=_header_options(plan.request_mutation),
        response_headers_to_add=_header_options(plan.response_mutation),
    )


def http_route_configuration(name: str, plans: Iterable[RoutePlan]) -> route_pb2.RouteConfiguration:
    """``RouteConfiguration{name, virtual_hosts: [{name: "dummy", domains: ["*"], routes}]}``."""
    vhost = route_components_pb2.VirtualHost(
        name="dummy", domains=["*"], routes=[_http_route(p) for p in plans]
    )
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])


def attributes_of(match: Mapping[str, StringMatch] | None) -> tuple[tuple[str, StringMatch], ...]:
    return tuple(sorted(match.items())) if match else ()
