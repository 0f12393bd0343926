"""MetaProtocol route tables from protos: static ``route_config``, MetaRDS, and the HTTP
``RouteConfiguration`` carrier that Aeraki's RDS uses (reference §15).

Both route forms convert into the same :class:`~aeraki.proxy.config.RouteTableConfig`, and
every value that could fail per request (a regex, a zero total weight) is checked here, once,
when the config arrives.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

from aeraki.proxy.bootstrap_policy import (
    FRACTION_DENOMINATORS,
    convert_fault,
    convert_retry_policy,
    convert_timeout,
)
from aeraki.proxy.bootstrap_problems import Problems, join
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import (
    HeaderMatch,
    MatchKind,
    MirrorPolicy,
    RouteConfig,
    RouteTableConfig,
    WeightedCluster,
)

__all__ = [
    "ClusterRef",
    "check_cluster_refs",
    "convert_header_matcher",
    "convert_meta_route_table",
    "route_table_from_http_rds",
    "route_table_from_meta",
]

#: (path, cluster name) of every cluster a route table names.
ClusterRef = tuple[str, str]

_DENOMINATORS = FRACTION_DENOMINATORS


def route_table_from_meta(
    route_config: Any,
    *,
    path: str = "route_config",
    clusters: Collection[str] | None = None,
    source: str = "<route_config>",
) -> RouteTableConfig:
    """Convert an ``aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration``.

    Used for a listener's static ``route_config`` and for routes from xDS. ``clusters``, when
    given, is the set of known cluster names; routes naming others are errors (static
    configs). Raises :class:`~aeraki.proxy.bootstrap_problems.ConfigErrors` listing every
    problem, each with its path under ``path``.
    """
    problems = Problems(source)
    check_supported(route_config, path, problems)
    refs: list[ClusterRef] = []
    table = convert_meta_route_table(route_config, path, problems, refs)
    if clusters is not None:
        check_cluster_refs(refs, clusters, problems)
    problems.raise_if_any()
    return table


def route_table_from_http_rds(
    route_config: Any,
    *,
    path: str = "",
    clusters: Collection[str] | None = None,
    source: str = "<rds>",
) -> RouteTableConfig:
    """Convert an ``envoy.config.route.v3.RouteConfiguration`` used as the MetaRDS carrier.

    Follows reference §15 with its defects fixed: a mirror policy without
    ``runtime_fraction`` mirrors 100% (the reference made it 0%); more than one virtual host
    is an error (the reference silently used the first; zero virtual hosts give an empty
    table instead of a crash); non-header hash policies are rejected (the reference hashed
    them as ``""``). Path/prefix matching is ignored, as in the reference: only
    ``match.headers`` route.
    """
    problems = Problems(source)
    check_supported(route_config, path, problems)
    refs: list[ClusterRef] = []
    routes: list[RouteConfig] = []
    vhosts = route_config.virtual_hosts
    if len(vhosts) > 1:
        problems.add(
            join(path, "virtual_hosts"),
            f"exactly one virtual host is supported, got {len(vhosts)}",
        )
    elif vhosts:
        vh_path = join(path, "virtual_hosts[0]")
        for i, route in enumerate(vhosts[0].routes):
            r_path = join(vh_path, f"routes[{i}]")
            action_path = join(r_path, "route")
            if not route.HasField("route"):
                problems.add(
                    action_path, "a route action (cluster or weighted_clusters) is required"
                )
                continue
            action = route.route
            for j, policy in enumerate(action.hash_policy):
                if policy.WhichOneof("policy_specifier") != "header":
                    problems.add(
                        join(action_path, f"hash_policy[{j}]"),
                        "only header hash policies are supported (the header names a metadata key)",
                    )
            mirrors = tuple(
                _mirror(m, join(action_path, f"request_mirror_policies[{k}]"), problems, refs)
                for k, m in enumerate(action.request_mirror_policies)
            )
            cluster, weighted = _destination(action, action_path, problems, refs)
            routes.append(
                RouteConfig(
                    name=route.name,
                    match=tuple(
                        convert_header_matcher(h, join(r_path, f"match.headers[{k}]"), problems)
                        for k, h in enumerate(route.match.headers)
                    ),
                    cluster=cluster,
                    weighted_clusters=weighted,
                    hash_policy=tuple(
                        p.header.header_name for p in action.hash_policy if p.HasField("header")
                    ),
                    mirror_policies=mirrors,
                    request_mutation=_header_pairs(
                        route.request_headers_to_add,
                        join(r_path, "request_headers_to_add"),
                        problems,
                    ),
                    response_mutation=_header_pairs(
                        route.response_headers_to_add,
                        join(r_path, "response_headers_to_add"),
                        problems,
                    ),
                )
            )
    if clusters is not None:
        check_cluster_refs(refs, clusters, problems)
    problems.raise_if_any()
    return RouteTableConfig(name=route_config.name, routes=tuple(routes))


def convert_meta_route_table(
    route_config: Any, path: str, problems: Problems, refs: list[ClusterRef]
) -> RouteTableConfig:
    """Convert without the whitelist walk (the caller walked the enclosing message)."""
    routes: list[RouteConfig] = []
    for i, route in enumerate(route_config.routes):
        r_path = join(path, f"routes[{i}]")
        action_path = join(r_path, "route")
        if not route.HasField("route"):
            problems.add(action_path, "required (cluster or weighted_clusters)")
            continue
        action = route.route
        cluster, weighted = _destination(action, action_path, problems, refs)
        for j, key in enumerate(action.hash_policy):
            if not key:
                problems.add(join(action_path, f"hash_policy[{j}]"), "must not be empty")
        routes.append(
            RouteConfig(
                name=route.name,
                match=tuple(
                    convert_header_matcher(h, join(r_path, f"match.metadata[{k}]"), problems)
                    for k, h in enumerate(route.match.metadata)
                ),
                cluster=cluster,
                weighted_clusters=weighted,
                hash_policy=tuple(action.hash_policy),
                mirror_policies=tuple(
                    _mirror(m, join(action_path, f"request_mirror_policies[{k}]"), problems, refs)
                    for k, m in enumerate(action.request_mirror_policies)
                ),
                request_mutation=_key_values(
                    route.request_mutation, join(r_path, "request_mutation"), problems
                ),
                response_mutation=_key_values(
                    route.response_mutation, join(r_path, "response_mutation"), problems
                ),
                timeout=convert_timeout(route, r_path, problems),
                retry_policy=convert_retry_policy(route, r_path, problems),
                fault=convert_fault(route, r_path, problems),
                idempotent=route.idempotent.value if route.HasField("idempotent") else None,
            )
        )
    return RouteTableConfig(name=route_config.name, routes=tuple(routes))


def check_cluster_refs(
    refs: Iterable[ClusterRef], clusters: Collection[str], problems: Problems
) -> None:
    for path, name in refs:
        if name and name not in clusters:
            problems.add(path, f"unknown cluster {name!r}")


def _destination(
    action: Any, path: str, problems: Problems, refs: list[ClusterRef]
) -> tuple[str, tuple[WeightedCluster, ...]]:
    which = action.WhichOneof("cluster_specifier")
    if which == "cluster":
        if not action.cluster:
            problems.add(join(path, "cluster"), "must not be empty")
        refs.append((join(path, "cluster"), action.cluster))
        return action.cluster, ()
    if which == "weighted_clusters":
        wc_path = join(path, "weighted_clusters")
        out: list[WeightedCluster] = []
        for i, entry in enumerate(action.weighted_clusters.clusters):
            e_path = join(wc_path, f"clusters[{i}]")
            if not entry.name:
                problems.add(join(e_path, "name"), "must not be empty")
            refs.append((join(e_path, "name"), entry.name))
            out.append(WeightedCluster(entry.name, entry.weight.value))
        if not out:
            problems.add(join(wc_path, "clusters"), "at least one cluster is required")
        elif sum(w.weight for w in out) <= 0:
            problems.add(join(wc_path, "clusters"), "total weight must be greater than 0")
        return "", tuple(out)
    problems.add(path, "one of cluster or weighted_clusters is required")
    return "", ()


def _mirror(policy: Any, path: str, problems: Problems, refs: list[ClusterRef]) -> MirrorPolicy:
    if not policy.cluster:
        problems.add(join(path, "cluster"), "must not be empty")
    refs.append((join(path, "cluster"), policy.cluster))
    if not policy.HasField("runtime_fraction"):
        return MirrorPolicy(policy.cluster)  # absent => 100%
    fraction = policy.runtime_fraction.default_value
    denominator = _DENOMINATORS.get(fraction.denominator)
    if denominator is None:
        problems.add(join(path, "runtime_fraction.default_value.denominator"), "unknown value")
        denominator = 100
    if fraction.numerator > denominator:
        problems.add(
            join(path, "runtime_fraction.default_value.numerator"),
            f"{fraction.numerator} exceeds the denominator {denominator}",
        )
    return MirrorPolicy(policy.cluster, fraction.numerator, denominator)


def _key_values(items: Iterable[Any], path: str, problems: Problems) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for i, kv in enumerate(items):
        if not kv.key:
            problems.add(join(path, f"[{i}].key"), "must not be empty")
        out.append((kv.key, kv.value))
    return tuple(out)


def _header_pairs(
    items: Iterable[Any], path: str, problems: Problems
) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for i, option in enumerate(items):
        if not option.header.key:
            problems.add(join(path, f"[{i}].header.key"), "must not be empty")
        out.append((option.header.key, option.header.value))
    return tuple(out)


def _regex(pattern: str, path: str, problems: Problems) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        problems.add(path, f"invalid regex {pattern!r}: {exc}")
    return pattern


def convert_header_matcher(matcher: Any, path: str, problems: Problems) -> HeaderMatch:
    """An Envoy ``HeaderMatcher`` as a :class:`HeaderMatch` (semantics: reference §20.1)."""
    if not matcher.name:
        problems.add(join(path, "name"), "must not be empty")
    common: dict[str, Any] = {
        "name": matcher.name,
        "invert": matcher.invert_match,
        "treat_missing_as_empty": matcher.treat_missing_header_as_empty,
    }
    which = matcher.WhichOneof("header_match_specifier")
    if which is None:  # no specifier: "present with any value"
        return HeaderMatch(kind=MatchKind.PRESENT, **common)
    if which == "present_match":
        return HeaderMatch(kind=MatchKind.PRESENT, present=matcher.present_match, **common)
    if which == "exact_match":
        return HeaderMatch(kind=MatchKind.EXACT, value=matcher.exact_match, **common)
    simple = {
        "prefix_match": MatchKind.PREFIX,
        "suffix_match": MatchKind.SUFFIX,
        "contains_match": MatchKind.CONTAINS,
    }
    if which in simple:
        value = getattr(matcher, which)
        if not value:
            problems.add(join(path, which), "must not be empty")
        return HeaderMatch(kind=simple[which], value=value, **common)
    if which == "safe_regex_match":
        pattern = _regex(
            matcher.safe_regex_match.regex, join(path, "safe_regex_match.regex"), problems
        )
        return HeaderMatch(kind=MatchKind.REGEX, value=pattern, **common)
    if which == "range_match":
        start, end = matcher.range_match.start, matcher.range_match.end
        if start >= end:
            problems.add(
                join(path, "range_match"), f"start ({start}) must be less than end ({end})"
            )
        return HeaderMatch(kind=MatchKind.RANGE, range_start=start, range_end=end, **common)
    # string_match
    return _string_matcher(matcher.string_match, join(path, "string_match"), problems, common)


def _string_matcher(sm: Any, path: str, problems: Problems, common: dict[str, Any]) -> HeaderMatch:
    which = sm.WhichOneof("match_pattern")
    kinds = {
        "exact": MatchKind.EXACT,
        "prefix": MatchKind.PREFIX,
        "suffix": MatchKind.SUFFIX,
        "contains": MatchKind.CONTAINS,
    }
    if which in kinds:
        value = getattr(sm, which)
        if which != "exact" and not value:
            problems.add(join(path, which), "must not be empty")
        return HeaderMatch(kind=kinds[which], value=value, ignore_case=sm.ignore_case, **common)
    if which == "safe_regex":
        if sm.ignore_case:
            problems.add(join(path, "ignore_case"), "has no effect on safe_regex (use (?i))")
        pattern = _regex(sm.safe_regex.regex, join(path, "safe_regex.regex"), problems)
        return HeaderMatch(kind=MatchKind.REGEX, value=pattern, **common)
    problems.add(path, "one of exact, prefix, suffix, contains or safe_regex is required")
    return HeaderMatch(kind=MatchKind.PRESENT, **common)
