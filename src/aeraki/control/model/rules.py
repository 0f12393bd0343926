"""Per-resource semantic rules: Aeraki's MetaRouter webhook (§13.9) and Istio-style checks.

These run on the typed model (from YAML or from the API server alike), after conversion has
reported type and schema problems. Texts are the reference's exact words where it has them, so
users recognise them; deliberate changes: ``tokensPerFill`` (Aeraki prints ``tokensPerfFill``,
which names no field) and field paths instead of one multi-error blob.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from aeraki.control.model.base import child_path
from aeraki.control.model.common import Destination, MatchKind, StringMatch
from aeraki.control.model.istio import DestinationRuleSpec, ServiceEntrySpec
from aeraki.control.model.metaprotocol import (
    RETRY_ON,
    ApplicationProtocolSpec,
    GlobalRateLimit,
    KeyValue,
    LocalRateLimit,
    MetaFault,
    MetaRetries,
    MetaRoute,
    MetaRouteMatch,
    MetaRouterSpec,
    RetryBackoff,
    TokenBucket,
)
from aeraki.control.model.names import (
    MESSAGE_RE2_HINT,
    export_to_errors,
    fqdn_error,
    is_dns1123_label,
    regex_error,
)
from aeraki.control.model.reader import Reader
from aeraki.control.model.services import check_service_entry_ports
from aeraki.control.model.virtualservice import VirtualServiceSpec

__all__ = [
    "check_application_protocol",
    "check_destination_rule",
    "check_meta_router",
    "check_service_entry",
    "check_virtual_service",
]

PORT_MAX = 65535


def check_matches(r: Reader, matches: Mapping[str, StringMatch], path: str) -> None:
    """Regex checks of §13.9 rule 3 for a map of string matches (attributes or headers)."""
    for name, match in matches.items():
        if match.kind is not MatchKind.REGEX:
            continue
        where = child_path(child_path(path, name), "regex")
        if match.value == "":
            r.error(where, '"attributes": regex string match should not be empty')
            continue
        problem = regex_error(match.value)
        if problem:
            r.error(where, f'"attributes": {problem}; {MESSAGE_RE2_HINT}')


def _check_match(r: Reader, match: MetaRouteMatch | None, path: str) -> None:
    if match is not None:
        check_matches(r, match.attributes, child_path(path, "attributes"))


def check_destination(r: Reader, dest: Destination, path: str) -> None:
    """Destination rule of §13.9.3: FQDN host, DNS-1123 subset, port 1..65535."""
    problem = fqdn_error(dest.host)
    if problem:
        r.error(child_path(path, "host"), problem)
    if dest.subset and not is_dns1123_label(dest.subset):
        r.error(child_path(path, "subset"), f"subset name is invalid: {dest.subset}")
    if dest.port is not None and not 1 <= dest.port <= PORT_MAX:
        r.error(
            child_path(child_path(path, "port"), "number"),
            f"port number {dest.port} must be in the range 1..65535",
        )


def _check_mutation(r: Reader, items: tuple[KeyValue, ...], path: str) -> None:
    for i, item in enumerate(items):
        if not item.key:
            r.error(child_path(r.item(path, i), "key"), "mutation key cannot be empty")
        if not item.value:
            r.error(child_path(r.item(path, i), "value"), "mutation value cannot be empty")


def _check_positive(r: Reader, value: timedelta | None, path: str) -> None:
    if value is not None and value <= timedelta(0):
        r.error(path, "must be greater than 0")


def _check_fault_percentage(r: Reader, value: float | None, path: str) -> None:
    if value is not None and not 0 <= value <= 100:
        message = f"percentage must be in the range 0..100 (it has {value:g})"
        r.error(child_path(path, "value"), message)


def _check_retries(r: Reader, retries: MetaRetries, timeout: timedelta | None, path: str) -> None:
    attempts = child_path(path, "attempts")
    if retries.attempts is None and not r.has_error_under(attempts):
        r.error(attempts, "retries.attempts is required (0 disables retries)")
    per_try = child_path(path, "perTryTimeout")
    _check_positive(r, retries.per_try_timeout, per_try)
    per_try_value = retries.per_try_timeout
    if (
        per_try_value is not None
        and timeout is not None
        and timedelta(0) < timeout <= per_try_value
    ):
        r.warning(
            per_try,
            f"perTryTimeout {per_try_value.total_seconds():g}s is not shorter than the route "
            f"timeout {timeout.total_seconds():g}s: the request times out before a retry "
            "can start",
        )
    for condition in retries.retry_on:
        if condition not in RETRY_ON:
            shown = f'"{condition}"' if condition else "an empty condition"
            r.error(
                child_path(path, "retryOn"),
                f"{shown} is not a retry condition (known: {', '.join(RETRY_ON)})",
            )
    if retries.backoff is not None:
        _check_backoff(r, retries.backoff, child_path(path, "backoff"))


def _check_backoff(r: Reader, backoff: RetryBackoff, path: str) -> None:
    base, most = backoff.base_interval, backoff.max_interval
    _check_positive(r, base, child_path(path, "baseInterval"))
    _check_positive(r, most, child_path(path, "maxInterval"))
    if base is not None and most is not None and timedelta(0) < most < base:
        r.error(child_path(path, "maxInterval"), "must not be less than baseInterval")


def _check_fault(r: Reader, fault: MetaFault, path: str) -> None:
    if fault.delay is None and fault.abort is None:
        r.error(path, "fault must have a delay or an abort")
    if fault.delay is not None:
        d_path = child_path(path, "delay")
        fixed = child_path(d_path, "fixedDelay")
        if fault.delay.fixed_delay is None and not r.has_error_under(fixed):
            r.error(fixed, "fault delay fixedDelay is required")
        _check_positive(r, fault.delay.fixed_delay, fixed)
        _check_fault_percentage(r, fault.delay.percentage, child_path(d_path, "percentage"))
    if fault.abort is not None:
        a_path = child_path(path, "abort")
        _check_fault_percentage(r, fault.abort.percentage, child_path(a_path, "percentage"))


def _check_policy(r: Reader, route: MetaRoute, path: str) -> None:
    """The project's MetaRoute extension: timeout, retries, fault (docs/traffic-policy.md)."""
    _check_positive(r, route.timeout, child_path(path, "timeout"))
    if route.retries is not None:
        _check_retries(r, route.retries, route.timeout, child_path(path, "retries"))
    if route.fault is not None:
        _check_fault(r, route.fault, child_path(path, "fault"))


def _check_route(r: Reader, route: MetaRoute, path: str) -> None:
    _check_match(r, route.match, child_path(path, "match"))
    _check_mutation(r, route.request_mutation, child_path(path, "requestMutation"))
    _check_mutation(r, route.response_mutation, child_path(path, "responseMutation"))
    pct_path = child_path(child_path(path, "mirrorPercentage"), "value")
    if route.mirror_percentage is not None:
        pct = route.mirror_percentage
        if route.mirror is None:
            r.error(pct_path, "mirrorPercentage and mirror must be set together")
        if pct > 100:
            r.error(pct_path, f"mirrorPercentage must not be greater than 100 (it has {pct:f})")
        elif pct <= 0:
            r.error(
                pct_path,
                f"mirrorPercentage must not be less than or equal to 0 (it has {pct:f})",
            )
    if route.mirror is not None:
        check_destination(r, route.mirror, child_path(path, "mirror"))
    dests_path = child_path(path, "route")
    bad_input = r.has_error_under(dests_path)  # a weight that failed conversion reads as 0
    if not route.route:
        r.error(dests_path, "a route must has at least one destination")
    for i, dest in enumerate(route.route):
        item = r.item(dests_path, i)
        check_destination(r, dest.destination, child_path(item, "destination"))
        if dest.weight > 100:
            r.error(child_path(item, "weight"), f"percentage {dest.weight} is not in range 0..100")
    total = sum(d.weight for d in route.route)
    if len(route.route) > 1 and total != 100 and not bad_input:
        r.error(dests_path, f"total destination weight {total} != 100")
    _check_policy(r, route, path)


def _check_bucket(r: Reader, bucket: TokenBucket, path: str) -> None:
    if bucket.fill_interval is None:
        r.error(
            child_path(path, "fillInterval"),
            "localRateLimit tokenBucket fillInterval cannot be null",
        )
    if bucket.tokens_per_fill is None:
        r.error(
            child_path(path, "tokensPerFill"),
            "localRateLimit tokenBucket tokensPerFill cannot be null",
        )
    elif bucket.tokens_per_fill < 1:
        r.error(
            child_path(path, "tokensPerFill"),
            "localRateLimit tokenBucket tokensPerFill must be greater than 0",
        )
    if bucket.max_tokens < 1:
        r.error(
            child_path(path, "maxTokens"),
            "localRateLimit tokenBucket maxTokens must be greater than 0",
        )


def _check_local(r: Reader, limit: LocalRateLimit, path: str) -> None:
    if limit.token_bucket is None and not limit.conditions:
        r.error(path, "localRateLimit must have at least one of tokenBucket or conditions")
    if limit.token_bucket is not None:
        _check_bucket(r, limit.token_bucket, child_path(path, "tokenBucket"))
    for i, cond in enumerate(limit.conditions):
        item = r.item(child_path(path, "conditions"), i)
        if cond.match is None:
            r.error(child_path(item, "match"), "localRateLimit condition match cannot be null")
        _check_match(r, cond.match, child_path(item, "match"))
        if cond.token_bucket is None:
            r.error(
                child_path(item, "tokenBucket"),
                "localRateLimit condition tokenBucket cannot be null",
            )
        else:
            _check_bucket(r, cond.token_bucket, child_path(item, "tokenBucket"))


def _check_global(r: Reader, limit: GlobalRateLimit, path: str) -> None:
    if not limit.domain:
        r.error(child_path(path, "domain"), "globalRateLimit domain cannot be empty")
    if not limit.rate_limit_service:
        r.error(child_path(path, "rateLimitService"), "globalRateLimit cluster cannot be empty")
    _check_match(r, limit.match, child_path(path, "match"))
    descriptors = child_path(path, "descriptors")
    if not limit.descriptors:
        r.error(descriptors, "globalRateLimit must have descriptors")
    for i, desc in enumerate(limit.descriptors):
        item = r.item(descriptors, i)
        if not desc.descriptor_key:
            r.error(
                child_path(item, "descriptorKey"), "globalRateLimit descriptor key cannot be empty"
            )
        if not desc.property:
            r.error(
                child_path(item, "property"), "globalRateLimit descriptor property cannot be empty"
            )


def _last(path: str) -> str:
    """``ports[0]`` out of ``spec.ports[0]``: how a message names a sibling item."""
    return path.rsplit(".", 1)[-1]


def check_export_to(r: Reader, entries: tuple[str, ...], namespace: str, path: str) -> None:
    for index, message in export_to_errors(entries, namespace):
        r.error(r.item(path, index) if index >= 0 else path, message)


def check_meta_router(r: Reader, spec: MetaRouterSpec, namespace: str, path: str) -> None:
    """Every MetaRouter webhook rule of §13.9 (1–7); all run, every problem is reported."""
    hosts = child_path(path, "hosts")
    if not spec.hosts:
        r.error(hosts, "meta router must have one host")
    elif len(spec.hosts) > 1:
        r.error(hosts, "meta router can only have one host")
    else:
        problem = fqdn_error(spec.hosts[0])
        if problem:
            r.error(r.item(hosts, 0), problem)
    if not spec.routes and spec.global_rate_limit is None and spec.local_rate_limit is None:
        r.error(
            path, "meta router must at least have one of routes, globalRateLimit, or LocalRateLimit"
        )
    catch_all_seen = False
    for i, route in enumerate(spec.routes):
        item = r.item(child_path(path, "routes"), i)
        _check_route(r, route, item)
        if catch_all_seen:
            r.warning(item, f"MetaRouter rule #{i} not used (only the last rule can have no match)")
        if route.match is None or not route.match.attributes:
            catch_all_seen = True
    check_export_to(r, spec.export_to, namespace, child_path(path, "exportTo"))
    if spec.global_rate_limit is not None:
        _check_global(r, spec.global_rate_limit, child_path(path, "globalRateLimit"))
    if spec.local_rate_limit is not None:
        _check_local(r, spec.local_rate_limit, child_path(path, "localRateLimit"))


def check_application_protocol(r: Reader, spec: ApplicationProtocolSpec, path: str) -> None:
    """The ApplicationProtocol rules Aeraki implements but never registers (§13.9, §16.21)."""
    if not spec.protocol:
        r.error(child_path(path, "protocol"), "application protocol must have protocol")
    if not spec.codec:
        r.error(child_path(path, "codec"), "application protocol must have codec")


def check_service_entry(r: Reader, spec: ServiceEntrySpec, namespace: str, path: str) -> None:
    """Istio-style ServiceEntry checks that matter to Aeraki (§3.2, §4)."""
    hosts = child_path(path, "hosts")
    if not spec.hosts:
        r.error(hosts, "service entry must have at least one host")
    elif len(spec.hosts) > 1:
        r.warning(
            hosts,
            f'only the first host "{spec.hosts[0]}" is used by Aeraki; the others are ignored',
        )
    check_service_entry_ports(r, spec, path)
    check_export_to(r, spec.export_to, namespace, child_path(path, "exportTo"))


def check_destination_rule(r: Reader, spec: DestinationRuleSpec, namespace: str, path: str) -> None:
    seen: dict[str, int] = {}
    for i, subset in enumerate(spec.subsets):
        subsets = child_path(path, "subsets")
        name_path = child_path(r.item(subsets, i), "name")
        if not is_dns1123_label(subset.name):
            r.error(name_path, f"subset name is invalid: {subset.name}")
        if subset.name in seen:
            first = _last(r.item(subsets, seen[subset.name]))
            r.error(name_path, f"duplicate subset name {subset.name} (also {first})")
        seen.setdefault(subset.name, i)
    check_export_to(r, spec.export_to, namespace, child_path(path, "exportTo"))


def check_virtual_service(r: Reader, spec: VirtualServiceSpec, namespace: str, path: str) -> None:
    """Checks for what Aeraki's native Dubbo/Thrift generators read (§3.3)."""
    if not spec.hosts:
        r.error(child_path(path, "hosts"), "virtual service must have at least one host")
    for i, route in enumerate(spec.http):
        item = r.item(child_path(path, "http"), i)
        for j, match in enumerate(route.match):
            match_path = r.item(child_path(item, "match"), j)
            if match.method is not None:
                check_matches(r, {"method": match.method}, match_path)
            check_matches(r, match.headers, child_path(match_path, "headers"))
        dests = child_path(item, "route")
        if not route.route:
            r.error(dests, "a route must has at least one destination")
        for j, dest in enumerate(route.route):
            check_destination(r, dest.destination, child_path(r.item(dests, j), "destination"))
        total = sum(d.weight for d in route.route)
        if len(route.route) > 1 and total != 100 and not r.has_error_under(dests):
            r.warning(dests, f"total destination weight {total} != 100 (weights are relative)")
    check_export_to(r, spec.export_to, namespace, child_path(path, "exportTo"))
