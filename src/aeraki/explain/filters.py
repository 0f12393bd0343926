"""What each filter of a listener's MetaProtocol chain would do with the request.

Answers "why was my request refused, or not routed?" before the routes are even looked at:
for each ``meta_protocol_filters`` entry, in order, one :class:`FilterStep` — the filter's
name, its effect in one line, and the details as plain data (JSON-ready).

Nothing here has side effects: the local rate limit's bucket is *chosen* by the filter's own
compiled conditions (:func:`~aeraki.proxy.filters.local_ratelimit.bucket_for`) but no token is
taken, and the global rate limit's request is *built* by the filter's own code
(:func:`~aeraki.proxy.filters.ratelimit.rls_request`) but never sent: its verdict is the
service's, and only the outcome of a call that cannot be made (no cluster, no host) is
certain. A running proxy's live bucket tokens are not in its admin API, so they are not shown.

A filter that certainly answers the request itself (the global rate limit with no reachable
service and ``failure_mode_deny``) stops the chain: the steps after it, router included, say
they are not reached.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aeraki.explain.view import ConfigView
from aeraki.proxy.bootstrap_problems import Problems
from aeraki.proxy.bootstrap_routes import convert_header_matcher
from aeraki.proxy.config import FilterConfig, ListenerConfig
from aeraki.proxy.filters.api import ROUTER_FILTER
from aeraki.proxy.filters.common import Match
from aeraki.proxy.routing import compile_matcher
from aeraki.proxy.upstream.lb import create_load_balancer

__all__ = ["FilterStep", "explain_filters"]

LOCAL_RATELIMIT = "aeraki.meta_protocol.filters.local_ratelimit"
RATELIMIT = "aeraki.meta_protocol.filters.ratelimit"
METADATA_EXCHANGE = "aeraki.meta_protocol.filters.metadata_exchange"
ISTIO_STATS = "aeraki.meta_protocol.filters.istio_stats"

UNKNOWN_EFFECT = "no explanation available"
LIVE_TOKENS = "live tokens not shown (the proxy's admin API does not expose them)"
FRESH_TOKENS = "a freshly started proxy's buckets are full"


@dataclass(frozen=True, slots=True)
class FilterStep:
    """One filter of the chain: ``effect`` in one line, ``details`` as plain data."""

    name: str
    effect: str
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Verdict:
    step: FilterStep
    #: set when the filter certainly answers the request itself: why, in a few words.
    refusal: str = ""


_Explainer = Callable[[ConfigView, ListenerConfig, Any, dict[str, str]], _Verdict]


def explain_filters(
    view: ConfigView, listener: ListenerConfig, strings: dict[str, str], router: FilterStep
) -> tuple[tuple[FilterStep, ...], str]:
    """The chain's steps for a request with metadata ``strings`` (every property loaded),
    and why the request is refused before the router ("" when it reaches it).

    ``router`` is the router's step (the route explanation's outcome); it is placed where the
    chain names the router, or last when the chain does not name it (it is always the
    terminal step, :mod:`aeraki.proxy.filters.api`).
    """
    steps: list[FilterStep] = []
    refusal = ""
    entries = list(listener.proxy.filters)
    if not any(f.name == ROUTER_FILTER for f in entries):
        entries.append(_router_entry())
    for entry in entries:
        explainer = _EXPLAINERS.get(entry.name)
        if entry.name == ROUTER_FILTER:
            verdict = _Verdict(router)
        elif explainer is None:
            verdict = _Verdict(FilterStep(entry.name, UNKNOWN_EFFECT))
        else:
            verdict = explainer(view, listener, entry.config, strings)
        step = verdict.step
        if refusal:
            step = FilterStep(
                step.name, f"not reached: {refusal}", {"would": step.effect, **step.details}
            )
        elif verdict.refusal:
            refusal = f"{step.name} answers OverLimit ({verdict.refusal})"
        steps.append(step)
    return tuple(steps), refusal


def _router_entry() -> FilterConfig:
    return FilterConfig(name=ROUTER_FILTER)


# -- matchers -------------------------------------------------------------------------------
def _match_checks(match_proto: Any, match: Match, strings: dict[str, str]) -> list[dict[str, Any]]:
    """Each matcher of a ``RouteMatch`` with its verdict, as the route explanation shows them.

    The verdict is the filter's own compiled test; the description comes from the same
    conversion the filter compiled it with. The config was checked when it arrived, so every
    matcher compiled and the two line up.
    """
    checks = []
    for header, test in zip(match_proto.metadata, match.tests, strict=True):
        described = compile_matcher(convert_header_matcher(header, "", Problems("explain")))
        checks.append(
            {
                "matcher": described.describe(),
                "ok": test(strings),
                "seen": strings.get(described.name),
            }
        )
    return checks


# -- local rate limit -----------------------------------------------------------------------
def _spec(spec: Any) -> dict[str, Any]:
    return {
        "max_tokens": spec.max_tokens,
        "tokens_per_fill": spec.tokens_per_fill,
        "fill_interval_s": spec.fill_interval,
    }


def _spec_text(spec: Any) -> str:
    return f"max {spec.max_tokens} tokens, +{spec.tokens_per_fill} every {spec.fill_interval:g}s"


def _local_ratelimit(
    view: ConfigView, listener: ListenerConfig, config: Any, strings: dict[str, str]
) -> _Verdict:
    from aeraki.proxy.filters.local_ratelimit import bucket_for, compile_conditions
    from aeraki.proxy.filters.shared_buckets import DEFAULT_INDEX

    del listener
    conditions, default = compile_conditions(config)
    chosen = bucket_for(conditions, default, strings)
    protos = [c for c in config.conditions if c.HasField("token_bucket")]
    rows = [
        {
            "index": i,
            "matched": all(test(strings) for test in match.tests),
            "matchers": _match_checks(proto.match, match, strings),
            "token_bucket": _spec(spec),
        }
        for i, (proto, (match, spec)) in enumerate(zip(protos, conditions, strict=True))
    ]
    if chosen is None:
        bucket, effect = None, "no condition matches and there is no default bucket: always allowed"
    else:
        if chosen == DEFAULT_INDEX:
            assert default is not None  # bucket_for says so
            bucket, spec = "default", default
            head = "no condition matches: takes a token from the default bucket"
        else:
            bucket, spec = f"conditions[{chosen}]", conditions[chosen][1]
            head = f"takes a token from the bucket of conditions[{chosen}]"
        effect = f"{head} ({_spec_text(spec)}); an empty bucket gets an OverLimit reply"
        if view.live:
            effect += "; live tokens not shown"
    details = {
        "stat_prefix": config.stat_prefix,
        "bucket": bucket,
        "conditions": rows,
        "default_bucket": None if default is None else _spec(default),
        "tokens": LIVE_TOKENS if view.live else FRESH_TOKENS,
    }
    return _Verdict(FilterStep(LOCAL_RATELIMIT, effect, details))


# -- global rate limit ----------------------------------------------------------------------
def _ratelimit(
    view: ConfigView, listener: ListenerConfig, config: Any, strings: dict[str, str]
) -> _Verdict:
    from aeraki.proxy.filters.ratelimit import compile_settings, rls_request

    del listener
    settings = compile_settings(config)
    applies = all(test(strings) for test in settings.match.tests)
    request = rls_request(settings, strings)
    descriptors = [
        [{"key": e.key, "value": e.value} for e in d.entries] for d in request.descriptors
    ]
    details: dict[str, Any] = {
        "applies": applies,
        "match": _match_checks(config.match, settings.match, strings),
        "domain": request.domain,
        "descriptors": descriptors,
        "rls_cluster": settings.cluster,
        "rls_host": None,
        "timeout_s": settings.timeout,
        "failure_mode_deny": settings.failure_mode_deny,
        "verdict": "not asked: explain never calls the rate limit service",
    }
    if not applies:
        effect = "its match fails: no rate limit call, the request goes on"
        return _Verdict(FilterStep(RATELIMIT, effect, details))
    failure = _rls_unreachable(view, settings.cluster, details)
    on_failure = (
        "refused with OverLimit (failure_mode_deny)"
        if settings.failure_mode_deny
        else "let through (failure_mode_deny is off)"
    )
    if failure:
        effect = f"{failure}: the call fails, so the request is {on_failure}"
        refusal = (
            "its rate limit service cannot be called and failure_mode_deny is set"
            if settings.failure_mode_deny
            else ""
        )
        return _Verdict(FilterStep(RATELIMIT, effect, details), refusal)
    entries = ", ".join(f"{e['key']}={e['value']!r}" for d in descriptors for e in d)
    effect = (
        f"asks the rate limit service ({settings.cluster}, timeout {settings.timeout:g}s): "
        f"domain {request.domain!r}, descriptors {entries}; OVER_LIMIT gets an OverLimit "
        f"reply; a failed call: {on_failure}"
    )
    return _Verdict(FilterStep(RATELIMIT, effect, details))


def _rls_unreachable(view: ConfigView, name: str, details: dict[str, Any]) -> str:
    """Why a call to the service's cluster cannot be made ("" when it can), as the filter
    finds out: the cluster, then a host from its load balancer; the host goes in ``details``."""
    cluster = view.clusters.get(name)
    if cluster is None:
        return f"the rate limit service's cluster {name!r} is not configured"
    hosts = view.hosts_of(cluster)
    host = create_load_balancer(cluster, hosts, rng=random.Random(0)).choose(None)
    if host is None:
        return f"the rate limit service's cluster {name!r} has no host"
    details["rls_host"] = host.key
    return ""


# -- Istio telemetry ------------------------------------------------------------------------
def _metadata_exchange(
    view: ConfigView, listener: ListenerConfig, config: Any, strings: dict[str, str]
) -> _Verdict:
    from aeraki.proxy.filters.metadata_exchange import (
        FLAT_NODE_KEYS,
        PEER_METADATA,
        PEER_METADATA_ID,
        local_properties,
    )

    del config, strings
    direction = listener.traffic_direction
    properties = local_properties(view.node_id, view.node_metadata)
    side = {"OUTBOUND": "request", "INBOUND": "forwarded response"}.get(direction)
    keys = [k for k in FLAT_NODE_KEYS if k in view.node_metadata]
    details: dict[str, Any] = {
        "traffic_direction": direction,
        "adds_to": side if properties else None,
        "properties": properties,
        "node_keys": keys,
    }
    if not properties:
        effect = "nothing: this proxy has no node id or metadata to send"
    elif side is None:
        effect = f"nothing: the listener's traffic direction is {direction}, not INBOUND/OUTBOUND"
    else:
        effect = (
            f"adds {PEER_METADATA} (node metadata {', '.join(keys) or 'none'}) and "
            f"{PEER_METADATA_ID}={view.node_id!r} to the {side}"
        )
    return _Verdict(FilterStep(METADATA_EXCHANGE, effect, details))


def _istio_stats(
    view: ConfigView, listener: ListenerConfig, config: Any, strings: dict[str, str]
) -> _Verdict:
    from aeraki.proxy.filters.istio_stats import ISTIO_METRICS, node_labels
    from aeraki.proxy.filters.metadata_exchange import PEER_METADATA, decode_peer_metadata

    del view
    inbound = listener.traffic_direction == "INBOUND"
    reporter = "destination" if inbound else "source"
    peer_from = "request" if inbound else "response"
    details: dict[str, Any] = {
        "reporter": reporter,
        "destination_service": config.destination_service,
        "metrics": [m.name for m in ISTIO_METRICS],
        "peer_from": f"the {peer_from}'s {PEER_METADATA}",
    }
    if inbound:
        workload, namespace, *_ = node_labels(decode_peer_metadata(strings.get(PEER_METADATA, "")))
        details["peer_workload"] = f"{workload}.{namespace}"
    effect = (
        f"records istio_requests_total and the duration/size histograms (reporter={reporter}, "
        f"peer from the {peer_from}) when the upstream response is forwarded"
    )
    return _Verdict(FilterStep(ISTIO_STATS, effect, details))


_EXPLAINERS: dict[str, _Explainer] = {
    LOCAL_RATELIMIT: _local_ratelimit,
    RATELIMIT: _ratelimit,
    METADATA_EXCHANGE: _metadata_exchange,
    ISTIO_STATS: _istio_stats,
}
