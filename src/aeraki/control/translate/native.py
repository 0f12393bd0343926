"""Stock Envoy's own Dubbo and Thrift filters for ``tcp-dubbo…`` / ``tcp-thrift…`` ports
(reference §8–§9; issue 3 item 7), for nodes with ``AERAKI_DATA_PLANE`` ``envoy`` or
``meta-protocol-proxy``. Routes come from the same :class:`~.routes.RoutePlan` as the
MetaProtocol form (VirtualService ``http[]``; the default route without one), inline in the
filter: stock Envoy has no RDS for these filters that Aeraki uses.

Fixed quirks: the detected port is used, not ``ports[0]`` (§16.6); a Dubbo service without the
``interface`` annotation gets no outbound listener and a problem instead of an empty
DubboProxy (§16.12); a Thrift VirtualService ``method`` exact match becomes ``method_name``
(Aeraki ignored Thrift matches; prefix and regex cannot be expressed and match everything).
Hash policies and mirrors have no place in these filters and are not carried.

Neither do timeouts, retries or fault injection: Envoy's ``dubbo_proxy`` and ``thrift_proxy``
routes have no such fields (their ``RouteAction`` holds only the destination, metadata match,
rate limits and mirrors), so a plan carrying the MetaRoute extension (:attr:`RoutePlan.policy`)
is translated without it and a warning says so. Today these ports are routed by VirtualService,
which has no such extension; the check keeps the rule if that ever changes.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.dubbo_proxy.v3 import dubbo_proxy_pb2
from envoy.extensions.filters.network.dubbo_proxy.v3 import route_pb2 as dubbo_route
from envoy.extensions.filters.network.thrift_proxy.router.v3.router_pb2 import Router
from envoy.extensions.filters.network.thrift_proxy.v3 import route_pb2 as thrift_route
from envoy.extensions.filters.network.thrift_proxy.v3 import thrift_proxy_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from aeraki.control.model.base import Severity
from aeraki.control.model.common import MatchKind, StringMatch
from aeraki.control.model.services import Protocol
from aeraki.control.translate.catalog import Catalog, PortRef, problem
from aeraki.control.translate.listeners import listener
from aeraki.control.translate.routes import RoutePlan

__all__ = [
    "DUBBO_FILTER",
    "THRIFT_FILTER",
    "native_inbound",
    "native_inbound_config",
    "native_outbound",
    "native_outbound_config",
]

DUBBO_FILTER = "envoy.filters.network.dubbo_proxy"
THRIFT_FILTER = "envoy.filters.network.thrift_proxy"
_MATCH_ALL = StringMatch(kind=MatchKind.REGEX, value=".*")


def _string_matcher(m: StringMatch) -> string_pb2.StringMatcher:
    if m.kind is MatchKind.EXACT:
        return string_pb2.StringMatcher(exact=m.value)
    if m.kind is MatchKind.PREFIX:
        return string_pb2.StringMatcher(prefix=m.value)
    pattern = m.value if m.kind is MatchKind.REGEX else ".+"
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def _header(name: str, m: StringMatch) -> route_components_pb2.HeaderMatcher:
    if m.kind is MatchKind.PRESENT:
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(name=name, string_match=_string_matcher(m))


def _dubbo_route(plan: RoutePlan) -> dubbo_route.Route:
    attrs = dict(plan.match)
    route = dubbo_route.Route()
    route.match.method.name.CopyFrom(_string_matcher(attrs.pop("method", _MATCH_ALL)))
    route.match.headers.extend(_header(k, v) for k, v in sorted(attrs.items()))
    if len(plan.targets) == 1:
        route.route.cluster = plan.targets[0].cluster
    else:
        for t in plan.targets:
            route.route.weighted_clusters.clusters.add(
                name=t.cluster, weight=wrappers_pb2.UInt32Value(value=t.weight)
            )
    return route


def _thrift_route(catalog: Catalog, ref: PortRef, plan: RoutePlan) -> thrift_route.Route:
    route = thrift_route.Route()
    route.match.method_name = ""
    method = dict(plan.match).get("method")
    if method is not None and method.kind is MatchKind.EXACT:
        route.match.method_name = method.value
    elif method is not None:
        catalog.problems.append(
            problem(
                ref.entry,
                ref.path,
                f"route {plan.name!r}: Envoy's thrift_proxy matches method names exactly; "
                f"the {method.kind.value} match is dropped (matches every method)",
                Severity.WARNING,
            )
        )
    if len(plan.targets) == 1:
        route.route.cluster = plan.targets[0].cluster
    else:
        for t in plan.targets:
            route.route.weighted_clusters.clusters.add(
                name=t.cluster, weight=wrappers_pb2.UInt32Value(value=t.weight)
            )
    return route


def _dubbo(stat_prefix: str, interface: str, routes: list[dubbo_route.Route]) -> Message:
    proxy = dubbo_proxy_pb2.DubboProxy(stat_prefix=stat_prefix)
    proxy.route_config.add(name=stat_prefix, interface=interface, routes=routes)
    proxy.dubbo_filters.add(name="envoy.filters.dubbo.router")
    out: Message = proxy
    return out


def _any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _thrift(stat_prefix: str, routes: list[thrift_route.Route]) -> Message:
    proxy = thrift_proxy_pb2.ThriftProxy(stat_prefix=stat_prefix)
    proxy.route_config.name = stat_prefix
    proxy.route_config.routes.extend(routes)
    # Envoy finds thrift filters by the type of their typed_config, not by name: without it
    # the listener is NACKed ("Didn't find a registered implementation … type URL: ''").
    proxy.thrift_filters.add(name="envoy.filters.thrift.router", typed_config=_any(Router()))
    out: Message = proxy
    return out


def _warn_policy_ignored(catalog: Catalog, ref: PortRef, plans: tuple[RoutePlan, ...]) -> None:
    with_policy = [repr(p.name) for p in plans if p.policy is not None]
    if not with_policy:
        return
    catalog.problems.append(
        problem(
            ref.entry,
            ref.path,
            f"route(s) {', '.join(with_policy)}: Envoy's {ref.protocol.value} proxy has no "
            "per-route timeout, retries or fault injection; they are ignored on this node",
            Severity.WARNING,
        )
    )


def native_outbound_config(
    catalog: Catalog, ref: PortRef, plans: tuple[RoutePlan, ...]
) -> tuple[str, Message] | None:
    """§8.1 / §9 outbound filter ``(name, config)``; ``None`` (and a problem) for Dubbo
    without ``interface``. Shared with the Istio EnvoyFilter rendering."""
    _warn_policy_ignored(catalog, ref, plans)
    stat_prefix = f"outbound|{ref.number}||{ref.host}"
    if ref.protocol is Protocol.DUBBO:
        interface = ref.entry.meta.annotations.get("interface", "")
        if not interface:
            catalog.problems.append(
                problem(
                    ref.entry,
                    "metadata.annotations.interface",
                    "no interface annotation: Envoy's dubbo_proxy needs the Dubbo interface "
                    "name; no native outbound listener for this port",
                )
            )
            return None
        return DUBBO_FILTER, _dubbo(stat_prefix, interface, [_dubbo_route(p) for p in plans])
    return THRIFT_FILTER, _thrift(stat_prefix, [_thrift_route(catalog, ref, p) for p in plans])


def native_inbound_config(ref: PortRef, cluster: str) -> tuple[str, Message]:
    """§8.2 / §9 inbound filter ``(name, config)``: every request to ``cluster``."""
    if ref.protocol is Protocol.DUBBO:
        route = dubbo_route.Route()
        route.match.method.name.CopyFrom(_string_matcher(_MATCH_ALL))
        route.route.cluster = cluster
        return DUBBO_FILTER, _dubbo(cluster, "*", [route])
    t_route = thrift_route.Route()
    t_route.match.method_name = ""
    t_route.route.cluster = cluster
    return THRIFT_FILTER, _thrift(cluster, [t_route])


def native_outbound(
    catalog: Catalog, ref: PortRef, name: str, address: str, plans: tuple[RoutePlan, ...]
) -> listener_pb2.Listener | None:
    """§8.1 / §9 outbound; ``None`` (and a problem) for Dubbo without ``interface``."""
    built = native_outbound_config(catalog, ref, plans)
    if built is None:
        return None
    return listener(name, address, ref.number, *built)


def native_inbound(
    ref: PortRef, name: str, address: str, port: int, cluster: str
) -> listener_pb2.Listener:
    """§8.2 / §9 inbound: every request to the local application's cluster."""
    return listener(name, address, port, *native_inbound_config(ref, cluster))
