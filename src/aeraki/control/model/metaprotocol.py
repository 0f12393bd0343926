"""MetaRouter and ApplicationProtocol (``metaprotocol.aeraki.io/v1alpha1``), reference §2.1–§2.2.

Only types and their conversion from YAML live here; Aeraki's webhook rules (§13.9) are in
:mod:`aeraki.control.model.rules`, so a resource can be built from the API server's JSON and
checked the same way.

A MetaRoute also takes this project's **extension** (issue 4, items 5–6; docs/traffic-policy.md):
``timeout``, ``retries``, ``fault`` and ``idempotent``, spelt as Istio spells the HTTPRoute
fields they mirror. Aeraki's CRD schema does not have them; ours (deploy/) does.
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
    "ABORT_ERROR_TYPES",
    "RETRY_ON",
    "ApplicationProtocolSpec",
    "FaultAbort",
    "FaultDelay",
    "GlobalRateLimit",
    "KeyValue",
    "LocalRateLimit",
    "LocalRateLimitCondition",
    "MetaRoute",
    "MetaFault",
    "MetaRetries",
    "MetaRouteDestination",
    "MetaRouteMatch",
    "MetaRouterSpec",
    "RateLimitDescriptor",
    "RetryBackoff",
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


#: ``retries.retryOn`` conditions (the proxy's ``RETRY_ON_NAMES``; a test keeps them equal).
RETRY_ON: tuple[str, ...] = (
    "connect-failure",
    "reset",
    "timeout",
    "retriable-error",
    "error-response",
    "overflow",
)
#: ``fault.abort.errorType`` values: the codec SDK's ``ErrorType`` names (a test keeps them
#: equal; the control plane does not import the data plane).
ABORT_ERROR_TYPES: tuple[str, ...] = (
    "ROUTE_NOT_FOUND",
    "CLUSTER_NOT_FOUND",
    "NO_HEALTHY_UPSTREAM",
    "BAD_RESPONSE",
    "UNSPECIFIED",
    "OVER_LIMIT",
    "TIMEOUT",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBackoff:
    """``retries.backoff``: exponential with full jitter; ``None`` = the proxy's defaults."""

    base_interval: timedelta | None = None
    max_interval: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaRetries:
    """``retries`` (extension).

    ``retry_on`` holds the comma-separated ``retryOn`` items as written (stripped), so a rule
    can point at a bad one; empty means the proxy's default (connect-failure,reset).
    ``attempts`` is ``None`` when absent (a rule requires it).
    """

    attempts: int | None = None
    per_try_timeout: timedelta | None = None
    retry_on: tuple[str, ...] = ()
    retry_non_idempotent: bool = False
    backoff: RetryBackoff | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultDelay:
    """``fault.delay``: ``percentage`` is ``percentage.value`` (``None``: every request)."""

    fixed_delay: timedelta | None = None
    percentage: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultAbort:
    """``fault.abort``: a local error reply in the protocol's own format (``""``: UNSPECIFIED)."""

    error_type: str = ""
    message: str = ""
    percentage: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaFault:
    """``fault`` (extension): applied after the route matched, before an upstream is chosen."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaRoute:
    """One ordered route; the data plane uses the first that matches (§2.1).

    ``mirror_percentage`` is ``mirrorPercentage.value`` (``None`` when absent: 100 %, §6.8).
    ``timeout``, ``retries``, ``fault`` and ``idempotent`` are the project's extension (module
    docstring); ``idempotent`` is ``None`` when absent (the codec decides).
    """

    name: str = ""
    match: MetaRouteMatch | None = None
    route: tuple[MetaRouteDestination, ...] = ()
    mirror: Destination | None = None
    mirror_percentage: float | None = None
    request_mutation: tuple[KeyValue, ...] = ()
    response_mutation: tuple[KeyValue, ...] = ()
    timeout: timedelta | None = None
    retries: MetaRetries | None = None
    fault: MetaFault | None = None
    idempotent: bool | None = None

    @property
    def has_policy(self) -> bool:
        """Whether the route uses the extension (only our proxy can enforce it)."""
        return (
            self.timeout is not None
            or self.retries is not None
            or self.fault is not None
            or self.idempotent is not None
        )


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


def _backoff(r: Reader, value: Any, path: str) -> RetryBackoff | None:
    data = r.obj(value, path, ("baseInterval", "maxInterval"))
    if data is None:
        return None
    return RetryBackoff(
        base_interval=r.duration(data, "baseInterval", path),
        max_interval=r.duration(data, "maxInterval", path),
    )


def _retry_on(r: Reader, data: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """``retryOn: "connect-failure,reset"`` (Istio's spelling) as its stripped items."""
    text = r.string(data, "retryOn", path)
    return tuple(part.strip() for part in text.split(",")) if text else ()


_RETRY_FIELDS = ("attempts", "perTryTimeout", "retryOn", "retryNonIdempotent", "backoff")


def _retries(r: Reader, value: Any, path: str) -> MetaRetries | None:
    data = r.obj(value, path, _RETRY_FIELDS)
    if data is None:
        return None
    return MetaRetries(
        attempts=r.integer(data, "attempts", path),
        per_try_timeout=r.duration(data, "perTryTimeout", path),
        retry_on=_retry_on(r, data, path),
        retry_non_idempotent=r.boolean(data, "retryNonIdempotent", path),
        backoff=r.child(data, "backoff", path, lambda v, p: _backoff(r, v, p)),
    )


def _delay(r: Reader, value: Any, path: str) -> FaultDelay | None:
    data = r.obj(value, path, ("fixedDelay", "percentage"))
    if data is None:
        return None
    return FaultDelay(
        fixed_delay=r.duration(data, "fixedDelay", path),
        percentage=r.child(data, "percentage", path, lambda v, p: _percentage(r, v, p)),
    )


def _abort(r: Reader, value: Any, path: str) -> FaultAbort | None:
    data = r.obj(value, path, ("errorType", "message", "percentage"))
    if data is None:
        return None
    return FaultAbort(
        error_type=r.enum(data, "errorType", path, ABORT_ERROR_TYPES) or "",
        message=r.string(data, "message", path),
        percentage=r.child(data, "percentage", path, lambda v, p: _percentage(r, v, p)),
    )


def _fault(r: Reader, value: Any, path: str) -> MetaFault | None:
    data = r.obj(value, path, ("delay", "abort"))
    if data is None:
        return None
    return MetaFault(
        delay=r.child(data, "delay", path, lambda v, p: _delay(r, v, p)),
        abort=r.child(data, "abort", path, lambda v, p: _abort(r, v, p)),
    )


def _optional_boolean(r: Reader, data: Mapping[str, Any], key: str, path: str) -> bool | None:
    return None if data.get(key) is None else r.boolean(data, key, path)


_ROUTE_FIELDS = (
    "name",
    "match",
    "route",
    "mirror",
    "mirrorPercentage",
    "requestMutation",
    "responseMutation",
    # the project's extension (module docstring)
    "timeout",
    "retries",
    "fault",
    "idempotent",
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
        timeout=r.duration(data, "timeout", path),
        retries=r.child(data, "retries", path, lambda v, p: _retries(r, v, p)),
        fault=r.child(data, "fault", path, lambda v, p: _fault(r, v, p)),
        idempotent=_optional_boolean(r, data, "idempotent", path),
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
