"""Follow one request through a :class:`ConfigView`: the decisions the proxy would make.

For each listener: the metadata the codec extracted, what each filter of its chain would do
(:mod:`.filters`: rate limits, telemetry, the router; a filter that certainly refuses the
request makes that the outcome), every route in order with every matcher's verdict until the
first match (so "why did my route not take effect" is answered by the line that says
``FAIL``), then for the matched route the mutations, the traffic policy, the cluster (weighted
pick) and the host (the cluster's own load balancer, hash key included).

Everything is computed by the proxy's own code (compiled route tables, ``Route.cluster_for``,
``Route.hash_key``, ``create_load_balancer``), never re-implemented; the one input the proxy
draws at random per request is ``random_value`` (weighted clusters, mirrors), given so a run
can be reproduced.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from aeraki.codec.api import Metadata
from aeraki.errors import AerakiError, CodecError
from aeraki.explain.filters import FilterStep, explain_filters
from aeraki.explain.request import RequestSpec, request_metadata
from aeraki.explain.view import ConfigView
from aeraki.proxy.config import RETRY_ON_NAMES, ListenerConfig
from aeraki.proxy.filters.api import ROUTER_FILTER
from aeraki.proxy.routing import Route
from aeraki.proxy.upstream.lb import create_load_balancer

__all__ = [
    "ClusterPick",
    "Explanation",
    "FilterStep",
    "HostPick",
    "ListenerTrace",
    "MatcherCheck",
    "RouteCheck",
    "explain",
]


@dataclass(frozen=True, slots=True)
class MatcherCheck:
    matcher: str  # e.g. "method exact 'sayHello' [invert]"
    ok: bool
    seen: str | None  # the request's value, None when absent


@dataclass(frozen=True, slots=True)
class RouteCheck:
    index: int
    name: str
    target: str
    matched: bool
    matchers: tuple[MatcherCheck, ...]


@dataclass(frozen=True, slots=True)
class ClusterPick:
    cluster: str
    weights: tuple[tuple[str, int], ...]  # empty for a single cluster
    random_value: int
    mirrors: tuple[tuple[str, float, bool], ...]  # (cluster, percent, mirrored this time)


@dataclass(frozen=True, slots=True)
class HostPick:
    cluster: str
    lb_policy: str
    hosts: int
    healthy: int
    hash_keys: tuple[tuple[str, str], ...]  # (key, value) the hash policy read
    hash_key: int | None
    host: str | None
    note: str


@dataclass(frozen=True, slots=True)
class ListenerTrace:
    listener: str
    address: str
    protocol: str
    codec: str
    route_source: str  # "static" or "RDS <name>"
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: the MetaProtocol filter chain, in order, router included (:mod:`.filters`).
    filters: tuple[FilterStep, ...] = ()
    routes: tuple[RouteCheck, ...] = ()
    route: str | None = None  # the matched route's label
    request_mutation: Mapping[str, str] = field(default_factory=dict)
    response_mutation: Mapping[str, str] = field(default_factory=dict)
    policy: Mapping[str, object] = field(default_factory=dict)
    cluster: ClusterPick | None = None
    host: HostPick | None = None
    outcome: str = ""  # what the proxy does, in one line
    skipped: str = ""  # why this listener could not take the request (frame not its protocol)


@dataclass(frozen=True, slots=True)
class Explanation:
    source: str
    listeners: tuple[ListenerTrace, ...]


def explain(
    view: ConfigView, request: RequestSpec, *, random_value: int | None = None, seed: int = 0
) -> Explanation:
    """Trace ``request`` through every listener of ``view``.

    ``random_value`` is the request's 64-bit draw (weighted clusters, mirrors; random when
    ``None``); ``seed`` seeds the random source of load balancers that draw per pick.
    """
    draw = random.getrandbits(64) if random_value is None else random_value
    traces = tuple(_listener(view, item, request, draw, seed) for item in view.listeners)
    return Explanation(view.source, traces)


def _listener(
    view: ConfigView, listener: ListenerConfig, request: RequestSpec, draw: int, seed: int
) -> ListenerTrace:
    proxy = listener.proxy
    head = ListenerTrace(
        listener=listener.name,
        address=str(listener.address),
        protocol=proxy.application_protocol,
        codec=proxy.codec,
        route_source="static" if proxy.route_table is not None else f"RDS {proxy.rds_name}",
    )
    try:
        md = request_metadata(request, listener)
    except (CodecError, AerakiError) as exc:
        return _with(head, skipped=str(exc))
    strings = md.load_strings()
    head = _with(head, metadata=dict(sorted(strings.items())))
    routed = _routes(view, listener, head, md, draw, seed)
    router = FilterStep(ROUTER_FILTER, routed.outcome, {"route": routed.route})
    steps, refusal = explain_filters(view, listener, strings, router)
    outcome = f"refused before routing: {refusal}" if refusal else routed.outcome
    return _with(routed, filters=steps, outcome=outcome)


def _routes(
    view: ConfigView,
    listener: ListenerConfig,
    head: ListenerTrace,
    md: Metadata,
    draw: int,
    seed: int,
) -> ListenerTrace:
    """The router's part: each route until the first match, then its action."""
    table = view.route_table(listener)
    if table is None:
        return _with(
            head,
            outcome=f"routes {listener.proxy.rds_name!r} arrive over RDS and are not in this "
            "view (explain a running proxy with --admin, or its manifests with --manifests)",
        )
    checks: list[RouteCheck] = []
    strings = md.strings
    for i, route in enumerate(table.routes):
        check = _route_check(i, route, strings)
        checks.append(check)
        if check.matched:
            return _matched(view, _with(head, routes=tuple(checks)), route, md, draw, seed)
    return _with(head, routes=tuple(checks), outcome="no route matched: RouteNotFound")


def _route_check(index: int, route: Route, strings: Mapping[str, str]) -> RouteCheck:
    matchers = tuple(
        MatcherCheck(
            m.explain(strings)[5:].rsplit(": ", 1)[0], m.test(strings), strings.get(m.name)
        )
        for m in route.matchers
    )
    return RouteCheck(
        index, _label(route, index), _target(route), all(m.ok for m in matchers), matchers
    )


def _label(route: Route, index: int) -> str:
    return route.name or f"routes[{index}]"


def _target(route: Route) -> str:
    if route.cluster:
        return route.cluster
    return "weighted " + ", ".join(route.weighted_names)


def _matched(
    view: ConfigView, trace: ListenerTrace, route: Route, md: Metadata, draw: int, seed: int
) -> ListenerTrace:
    index = next(c.index for c in trace.routes if c.matched)
    cluster = _cluster_pick(route, draw)
    host = _host_pick(view, route, cluster.cluster, md, seed)
    outcome = _outcome(route, cluster, host)
    return _with(
        trace,
        route=_label(route, index),
        request_mutation=dict(route.request_mutation),
        response_mutation=dict(route.response_mutation),
        policy=policy_of(route),
        cluster=cluster,
        host=host,
        outcome=outcome,
    )


def policy_of(route: Route) -> dict[str, object]:
    """The route's traffic policy in plain words and numbers (only what is set)."""
    out: dict[str, object] = {}
    if route.timeout is not None:
        out["timeout_s"] = route.timeout
    retry = route.retry_policy
    if retry is not None:
        out["retries"] = {
            "num_retries": retry.num_retries,
            "retry_on": [name for name, flag in RETRY_ON_NAMES.items() if flag in retry.retry_on],
            "per_try_timeout_s": retry.per_try_timeout,
            "retry_non_idempotent": retry.retry_non_idempotent,
        }
    fault = route.fault
    if fault is not None and fault.delay is not None:
        d = fault.delay
        out["fault_delay"] = {"delay_s": d.fixed_delay, "percent": _pct(d.numerator, d.denominator)}
    if fault is not None and fault.abort is not None:
        a = fault.abort
        out["fault_abort"] = {
            "error_type": a.error_type,
            "message": a.message,
            "percent": _pct(a.numerator, a.denominator),
        }
    if not route.idempotent:
        out["idempotent"] = False
    return out


def _pct(numerator: int, denominator: int) -> float:
    return round(100.0 * min(numerator, denominator) / denominator, 4)


def _cluster_pick(route: Route, draw: int) -> ClusterPick:
    weights = tuple(zip(route.weighted_names, _weights(route), strict=True))
    chosen = route.mirror_clusters(draw)
    mirrors = tuple(
        (p.cluster, _pct(p.numerator, p.denominator), p.cluster in chosen)
        for p in route.mirror_policies
    )
    return ClusterPick(route.cluster_for(draw), weights, draw, mirrors)


def _weights(route: Route) -> list[int]:
    return [w.weight for w in route.config.weighted_clusters]


def _host_pick(view: ConfigView, route: Route, name: str, md: Metadata, seed: int) -> HostPick:
    config = view.clusters.get(name)
    keys = tuple((k, md.get_string(k)) for k in route.config.hash_policy)
    hash_key = route.hash_key(md)
    if config is None:
        return HostPick(name, "", 0, 0, keys, hash_key, None, "cluster not configured")
    hosts = view.hosts_of(config)
    balancer = create_load_balancer(config, hosts, rng=random.Random(seed))
    host = balancer.choose(hash_key)
    healthy = sum(h.healthy for h in hosts)
    note = ""
    if balancer.in_panic and hosts:
        note = "panic: fewer than half the hosts are healthy, balancing over all"
    if hash_key is not None and config.lb_policy.value not in ("RING_HASH", "MAGLEV"):
        note = f"the hash key is unused: {config.lb_policy.value} does not hash"
    return HostPick(
        name,
        config.lb_policy.value,
        len(hosts),
        healthy,
        keys,
        hash_key,
        None if host is None else host.key,
        note,
    )


def _outcome(route: Route, cluster: ClusterPick, host: HostPick) -> str:
    abort = route.fault.abort if route.fault is not None else None
    if abort is not None and abort.numerator >= abort.denominator:
        return f"fault abort: the proxy answers {abort.error_type} ({abort.message})"
    if host.note == "cluster not configured":
        return f"cluster {cluster.cluster!r} is not configured: ClusterNotFound"
    if host.host is None:
        return f"no healthy host in {cluster.cluster!r}: NoHealthyUpstream"
    return f"forwarded to {host.host} in {cluster.cluster}"


def _with(trace: ListenerTrace, **changes: object) -> ListenerTrace:
    return replace(trace, **changes)  # type: ignore[arg-type]
