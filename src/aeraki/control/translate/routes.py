"""MetaProtocol routes: from a MetaRouter (reference §6.8), a VirtualService (tcp-dubbo /
tcp-thrift ports, §3.3) or the default route, into the HTTP ``RouteConfiguration`` carrier
Aeraki's MetaRDS serves (§6.9) and our proxy reads back (meta-protocol-proxy §15).

Routes are first planned in a neutral form (:class:`RoutePlan`) so the native Envoy Dubbo and
Thrift filters (§8–§9) reuse the same decisions. A MetaRoute's extension (timeout, retries,
fault, idempotent; docs/traffic-policy.md) rides in :attr:`RoutePlan.policy`; only our proxy
receives it (:func:`route_configuration`). Quirks fixed (§16): attribute matchers sorted
by name (§16.7, the model already sorts), one hash-policy entry per distinct key, and a subset
without its own load balancer inherits the DestinationRule's top-level consistent-hash key —
the same merge Istio applies to the subset's cluster, so cluster and route agree (§16.16).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from aeraki.control.model.base import Resource, Severity
from aeraki.control.model.common import Destination, MatchKind, StringMatch
from aeraki.control.model.istio import DestinationRuleSpec, LoadBalancer
from aeraki.control.model.metaprotocol import MetaFault, MetaRetries, MetaRoute, MetaRouterSpec
from aeraki.control.model.services import Protocol
from aeraki.control.model.virtualservice import VirtualServiceSpec
from aeraki.control.translate.catalog import Catalog, PortRef, cluster_name, fqdn, problem
from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as meta_route_pb2

__all__ = [
    "RoutePlan",
    "RoutePolicy",
    "Target",
    "header_matchers",
    "http_route_configuration",
    "load_balancer_of",
    "meta_route_configuration",
    "plan_routes",
    "route_configuration",
]

_MILLION = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    cluster: str
    weight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePolicy:
    """A MetaRoute's extension, as written (validated) in the model."""

    timeout: timedelta | None = None
    retries: MetaRetries | None = None
    fault: MetaFault | None = None
    idempotent: bool | None = None

    @classmethod
    def of(cls, route: MetaRoute) -> RoutePolicy | None:
        if not route.has_policy:
            return None
        return cls(
            timeout=route.timeout,
            retries=route.retries,
            fault=route.fault,
            idempotent=route.idempotent,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePlan:
    """One route, data-plane neutral. ``mirror_millionths`` is the mirrored share of 10⁶;
    ``policy`` is the MetaRoute extension (``None`` when the route does not use it)."""

    name: str
    match: tuple[tuple[str, StringMatch], ...] = ()
    targets: tuple[Target, ...] = ()
    hash_keys: tuple[str, ...] = ()
    mirror: str = ""
    mirror_millionths: int = _MILLION
    request_mutation: tuple[tuple[str, str], ...] = ()
    response_mutation: tuple[tuple[str, str], ...] = ()
    policy: RoutePolicy | None = None

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
                policy=RoutePolicy.of(route),
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


# --- Aeraki's MetaProtocol RouteConfiguration, with the project's extension ----------------


def _duration(value: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out


def _fraction(percent: float) -> percent_pb2.FractionalPercent:
    """A percentage (0–100) as millionths, the precision MetaRouter's floats can carry."""
    return percent_pb2.FractionalPercent(
        numerator=max(0, min(_MILLION, round(percent * 10_000))),
        denominator=percent_pb2.FractionalPercent.MILLION,
    )


def _retry_policy(retries: MetaRetries) -> meta_route_pb2.RetryPolicy:
    policy = meta_route_pb2.RetryPolicy(
        num_retries=retries.attempts or 0,
        retry_on=list(retries.retry_on),
        retry_non_idempotent=retries.retry_non_idempotent,
    )
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(_duration(retries.per_try_timeout))
    backoff = retries.backoff
    if backoff is not None and backoff.base_interval is not None:
        policy.base_interval.CopyFrom(_duration(backoff.base_interval))
    if backoff is not None and backoff.max_interval is not None:
        policy.max_interval.CopyFrom(_duration(backoff.max_interval))
    return policy


def _fault(fault: MetaFault) -> meta_route_pb2.FaultInjection:
    out = meta_route_pb2.FaultInjection()
    if fault.delay is not None:
        if fault.delay.fixed_delay is not None:
            out.delay.fixed_delay.CopyFrom(_duration(fault.delay.fixed_delay))
        if fault.delay.percentage is not None:
            out.delay.percentage.CopyFrom(_fraction(fault.delay.percentage))
    if fault.abort is not None:
        out.abort.error_type = fault.abort.error_type or "UNSPECIFIED"
        out.abort.message = fault.abort.message
        if fault.abort.percentage is not None:
            out.abort.percentage.CopyFrom(_fraction(fault.abort.percentage))
    return out


def _meta_action(plan: RoutePlan) -> meta_route_pb2.RouteAction:
    action = meta_route_pb2.RouteAction(hash_policy=list(plan.hash_keys))
    if len(plan.targets) == 1:
        action.cluster = plan.targets[0].cluster
    else:
        for t in plan.targets:
            action.weighted_clusters.clusters.add(
                name=t.cluster, weight=wrappers_pb2.UInt32Value(value=t.weight)
            )
    if plan.mirror:
        mirror = action.request_mirror_policies.add(cluster=plan.mirror)
        mirror.runtime_fraction.default_value.CopyFrom(
            percent_pb2.FractionalPercent(
                numerator=plan.mirror_millionths,
                denominator=percent_pb2.FractionalPercent.MILLION,
            )
        )
    return action


def _key_values(pairs: Iterable[tuple[str, str]]) -> list[meta_route_pb2.KeyValue]:
    return [meta_route_pb2.KeyValue(key=k, value=v) for k, v in pairs]


def _meta_route(plan: RoutePlan) -> meta_route_pb2.Route:
    route = meta_route_pb2.Route(
        name=plan.name,
        match=meta_route_pb2.RouteMatch(metadata=header_matchers(plan.match)),
        route=_meta_action(plan),
        request_mutation=_key_values(plan.request_mutation),
        response_mutation=_key_values(plan.response_mutation),
    )
    policy = plan.policy
    if policy is None:
        return route
    if policy.timeout is not None:
        route.timeout.CopyFrom(_duration(policy.timeout))
    if policy.retries is not None:
        route.retry_policy.CopyFrom(_retry_policy(policy.retries))
    if policy.fault is not None:
        route.fault.CopyFrom(_fault(policy.fault))
    if policy.idempotent is not None:
        route.idempotent.value = policy.idempotent
    return route


def meta_route_configuration(
    name: str, plans: Iterable[RoutePlan]
) -> meta_route_pb2.RouteConfiguration:
    """Aeraki's own ``RouteConfiguration`` (our proxy reads it natively), extension included."""
    return meta_route_pb2.RouteConfiguration(name=name, routes=[_meta_route(p) for p in plans])


def route_configuration(
    catalog: Catalog, ref: PortRef, plans: tuple[RoutePlan, ...], *, extensions: bool
) -> Message:
    """The route configuration of one MetaProtocol port, in the form its data plane reads.

    The HTTP carrier (§6.9) has no place for the project's extension (timeout, retries, fault,
    idempotent). When ``extensions`` (the node is our proxy) and a route uses them, Aeraki's
    MetaProtocol ``RouteConfiguration`` is sent instead, under the same RDS type URL (our
    proxy reads both, ``proxy/xds_apply.route_table_from_resource``). Otherwise (Aeraki's
    C++ MetaProtocol Proxy) they are left out, with a warning: that proxy would ignore them.
    """
    with_policy = [p for p in plans if p.policy is not None]
    if with_policy and extensions:
        meta: Message = meta_route_configuration(ref.route_name, plans)
        return meta
    if with_policy:
        owner: Resource[Any] = catalog.meta_router(ref.host) or ref.entry
        names = ", ".join(repr(p.name) for p in with_policy)
        catalog.problems.append(
            problem(
                owner,
                "spec.routes",
                f"route(s) {names}: timeout, retries, fault and idempotent are this project's "
                "MetaRouter extension; Aeraki's MetaProtocol Proxy cannot enforce them, so this "
                f"node's {ref.route_name} is sent without them",
                Severity.WARNING,
            )
        )
    carrier: Message = http_route_configuration(ref.route_name, plans)
    return carrier


def attributes_of(match: Mapping[str, StringMatch] | None) -> tuple[tuple[str, StringMatch], ...]:
    return tuple(sorted(match.items())) if match else ()
