"""MetaRouter and ApplicationProtocol (``metaprotocol.aeraki.io/v1alpha1``), reference §2.1–§2.2.

Only types and their conversion from YAML live here; Aeraki's webhook rules (§13.9) are in
:mod:`aeraki.control.model.rules`, so a resource can be built from the API server's JSON and
checked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aeraki.control.model.common import (
    Destination,
    StringMatch,
    parse_destination,
    parse_string_match_map,
)
from aeraki.control.model.reader import Reader

__all__ = [
    "ApplicationProtocolSpec",
    "GlobalRateLimit",
    "KeyValue",
    "LocalRateLimit",
    "LocalRateLimitCondition",
    "MetaRoute",
    "MetaRouteDestination",
    "MetaRouteMatch",
    "MetaRouterSpec",
    "RateLimitDescriptor",
    "TokenBucket",
    "parse_application_protocol",
    "parse_meta_router",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaRouteMatch:
    """AND of attribute matches, sorted by name (§16.7); empty matches everything."""

    attributes: Mapping[str, StringMatch] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaRouteDestination:
    """``route[]`` entry; ``weight`` only matters with ≥2 destinations (§2.1)."""

    destination: Destination
    weight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValue:
    """``requestMutation``/``responseMutation`` entry, written into the message by the codec."""

    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaRoute:
    """One ordered route; the data plane uses the first that matches (§2.1).

    ``mirror_percentage`` is ``mirrorPercentage.value`` (``None`` when absent: 100 %, §6.8).
    """

    name: str = ""
    match: MetaRouteMatch | None = None
    route: tuple[MetaRouteDestination, ...] = ()
    mirror: Destination | None = None
    mirror_percentage: float | None = None
    request_mutation: tuple[KeyValue, ...] = ()
    response_mutation: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenBucket:
    """``tokensPerFill``/``fillInterval`` stay ``None`` when absent so the webhook rules can say
    so (§13.9.7); translation defaults ``tokens_per_fill`` to 1 (quirk §16.9)."""

    max_tokens: int = 0
    tokens_per_fill: int | None = None
    fill_interval: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRateLimitCondition:
    match: MetaRouteMatch | None = None
    token_bucket: TokenBucket | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRateLimit:
    """Inbound local rate limit (§2.1, mapping §6.4); enforcement is a later issue."""

    token_bucket: TokenBucket | None = None
    conditions: tuple[LocalRateLimitCondition, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitDescriptor:
    """Request metadata ``property`` sent to the RLS under ``descriptor_key`` (§2.1)."""

    property: str
    descriptor_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalRateLimit:
    """Inbound global rate limit via an Envoy RLS (§2.1, mapping §6.5).

    ``request_timeout`` is ``None`` when absent; translation uses 20 ms (quirk §16.9).
    ``rate_limit_service`` is an Envoy cluster name,
    e.g. ``outbound|8081||rls.ns.svc.cluster.local``.
    """

    match: MetaRouteMatch | None = None
    domain: str = ""
    request_timeout: timedelta | None = None
    deny_on_fail: bool = False
    rate_limit_service: str = ""
    descriptors: tuple[RateLimitDescriptor, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaRouterSpec:
    """``MetaRouter.spec`` (§2.1). ``hosts`` must hold exactly one FQDN (webhook rule 1)."""

    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    routes: tuple[MetaRoute, ...] = ()
    local_rate_limit: LocalRateLimit | None = None
    global_rate_limit: GlobalRateLimit | None = None
    export_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationProtocolSpec:
    """``ApplicationProtocol.spec`` (§2.2): port-name token ``protocol`` → ``codec`` name."""

    protocol: str = ""
    codec: str = ""


# --- conversion -------------------------------------------------------------------------------

_NULL_ATTRIBUTE = "attribute match {name} cannot be null"  # §13.9.3, exact text


def _match(r: Reader, value: Any, path: str) -> MetaRouteMatch | None:
    data = r.obj(value, path, ("attributes",))
    if data is None:
        return None
    attributes = parse_string_match_map(r, data, "attributes", path, null_message=_NULL_ATTRIBUTE)
    return MetaRouteMatch(attributes=attributes)


def _route_destination(r: Reader, value: Any, path: str) -> MetaRouteDestination | None:
    data = r.obj(value, path, ("destination", "weight"))
    if data is None:
        return None
    weight = r.integer(data, "weight", path)
    dest = r.child(
        data,
        "destination",
        path,
        lambda v, p: parse_destination(r, v, p),
        required="destination is required",
    )
    if dest is None:
        return None
    return MetaRouteDestination(destination=dest, weight=weight or 0)


def _key_value(r: Reader, value: Any, path: str) -> KeyValue | None:
    data = r.obj(value, path, ("key", "value"))
    if data is None:
        return None
    # Empty key/value are webhook errors with their own texts (§13.9.3), checked in rules.py.
    return KeyValue(key=r.string(data, "key", path), value=r.string(data, "value", path))


def _percentage(r: Reader, value: Any, path: str) -> float | None:
    data = r.obj(value, path, ("value",))
    if data is None:
        return None
    number = r.number(data, "value", path)
    return 0.0 if number is None else number


_NIL = "weight may not be nil"  # §13.9.3: a null `route[]` entry, exact text


_ROUTE_FIELDS = (
    "name",
    "match",
    "route",
    "mirror",
    "mirrorPercentage",
    "requestMutation",
    "responseMutation",
)


def _route(r: Reader, value: Any, path: str) -> MetaRoute | None:
    data = r.obj(value, path, _ROUTE_FIELDS)
    if data is None:
        return None
    return MetaRoute(
        name=r.string(data, "name", path),
        match=r.child(data, "match", path, lambda v, p: _match(r, v, p)),
        route=r.items(
            data, "route", path, lambda v, p: _route_destination(r, v, p), null_message=_NIL
        ),
        mirror=r.child(data, "mirror", path, lambda v, p: parse_destination(r, v, p)),
        mirror_percentage=r.child(
            data, "mirrorPercentage", path, lambda v, p: _percentage(r, v, p)
        ),
        request_mutation=r.items(data, "requestMutation", path, lambda v, p: _key_value(r, v, p)),
        response_mutation=r.items(data, "responseMutation", path, lambda v, p: _key_value(r, v, p)),
    )


def _bucket(r: Reader, value: Any, path: str) -> TokenBucket | None:
    data = r.obj(value, path, ("maxTokens", "tokensPerFill", "fillInterval"))
    if data is None:
        return None
    return TokenBucket(
        max_tokens=r.integer(data, "maxTokens", path) or 0,
        tokens_per_fill=r.integer(data, "tokensPerFill", path),
        fill_interval=r.duration(data, "fillInterval", path),
    )


def _condition(r: Reader, value: Any, path: str) -> LocalRateLimitCondition | None:
    data = r.obj(value, path, ("match", "tokenBucket"))
    if data is None:
        return None
    return LocalRateLimitCondition(
        match=r.child(data, "match", path, lambda v, p: _match(r, v, p)),
        token_bucket=r.child(data, "tokenBucket", path, lambda v, p: _bucket(r, v, p)),
    )


def _local(r: Reader, value: Any, path: str) -> LocalRateLimit | None:
    data = r.obj(value, path, ("tokenBucket", "conditions"))
    if data is None:
        return None
    return LocalRateLimit(
        token_bucket=r.child(data, "tokenBucket", path, lambda v, p: _bucket(r, v, p)),
        conditions=r.items(data, "conditions", path, lambda v, p: _condition(r, v, p)),
    )


def _descriptor(r: Reader, value: Any, path: str) -> RateLimitDescriptor | None:
    data = r.obj(value, path, ("property", "descriptorKey"))
    if data is None:
        return None
    return RateLimitDescriptor(
        property=r.string(data, "property", path),
        descriptor_key=r.string(data, "descriptorKey", path),
    )


_GLOBAL_FIELDS = (
    "match",
    "domain",
    "requestTimeout",
    "denyOnFail",
    "rateLimitService",
    "descriptors",
)


def _global(r: Reader, value: Any, path: str) -> GlobalRateLimit | None:
    data = r.obj(value, path, _GLOBAL_FIELDS)
    if data is None:
        return None
    return GlobalRateLimit(
        match=r.child(data, "match", path, lambda v, p: _match(r, v, p)),
        domain=r.string(data, "domain", path),
        request_timeout=r.duration(data, "requestTimeout", path),
        deny_on_fail=r.boolean(data, "denyOnFail", path),
        rate_limit_service=r.string(data, "rateLimitService", path),
        descriptors=r.items(data, "descriptors", path, lambda v, p: _descriptor(r, v, p)),
    )


_MR_FIELDS = ("hosts", "gateways", "routes", "localRateLimit", "globalRateLimit", "exportTo")


def parse_meta_router(r: Reader, value: Any, path: str) -> MetaRouterSpec | None:
    """``MetaRouter.spec`` from YAML; ``None`` only when ``spec`` is not a mapping."""
    data = r.obj(value, path, _MR_FIELDS)
    if data is None:
        return None
    return MetaRouterSpec(
        hosts=r.strings(data, "hosts", path),
        gateways=r.strings(data, "gateways", path),
        routes=r.items(
            data,
            "routes",
            path,
            lambda v, p: _route(r, v, p),
            null_message="meta route may not be null",  # §13.9.3, exact text
        ),
        local_rate_limit=r.child(data, "localRateLimit", path, lambda v, p: _local(r, v, p)),
        global_rate_limit=r.child(data, "globalRateLimit", path, lambda v, p: _global(r, v, p)),
        export_to=r.strings(data, "exportTo", path),
    )


def parse_application_protocol(r: Reader, value: Any, path: str) -> ApplicationProtocolSpec | None:
    data = r.obj(value, path, ("protocol", "codec"))
    if data is None:
        return None
    return ApplicationProtocolSpec(
        protocol=r.string(data, "protocol", path),
        codec=r.string(data, "codec", path),
    )
