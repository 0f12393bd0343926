"""VirtualService (``networking.istio.io``), read for native Dubbo/Thrift routing only (§3.3).

Typed: ``hosts``, ``gateways``, ``exportTo`` and of each ``http[]`` entry ``name``,
``match[].method``/``headers`` and ``route[].destination``/``weight``. The rest of Istio's
HTTPRoute schema (retries, timeouts, rewrites, …) is accepted and ignored: Aeraki never reads it,
and valid Istio YAML must still load. ``tcp``/``tls`` routes are accepted and ignored too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aeraki.control.model.common import (
    Destination,
    StringMatch,
    parse_destination,
    parse_string_match,
    parse_string_match_map,
)
from aeraki.control.model.reader import Reader

__all__ = [
    "HTTPMatchRequest",
    "HTTPRoute",
    "HTTPRouteDestination",
    "VirtualServiceSpec",
    "parse_virtual_service",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPMatchRequest:
    """A match; native Dubbo maps ``method`` and ``headers`` (attachments) onto its route."""

    name: str = ""
    method: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRoute:
    """An ``http[]`` entry. Aeraki's Dubbo generator reads only ``match[0]`` (§3.3)."""

    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualServiceSpec:
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    export_to: tuple[str, ...] = ()


# Istio HTTPMatchRequest / HTTPRoute fields that Aeraki never reads (accepted, ignored).
_MATCH_IGNORED = (
    "uri",
    "scheme",
    "authority",
    "port",
    "sourceLabels",
    "gateways",
    "queryParams",
    "ignoreUriCase",
    "withoutHeaders",
    "sourceNamespace",
    "statPrefix",
)
_ROUTE_IGNORED = (
    "redirect",
    "directResponse",
    "delegate",
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrors",
    "mirrorPercentage",
    "mirrorPercent",
    "mirror_percent",
    "corsPolicy",
    "headers",
)


def _match(r: Reader, value: Any, path: str) -> HTTPMatchRequest | None:
    data = r.obj(value, path, ("name", "method", "headers"), ignored=_MATCH_IGNORED)
    if data is None:
        return None
    return HTTPMatchRequest(
        name=r.string(data, "name", path),
        method=r.child(data, "method", path, lambda v, p: parse_string_match(r, v, p)),
        headers=parse_string_match_map(
            r, data, "headers", path, null_message="header match {name} cannot be null"
        ),
    )


def _destination(r: Reader, value: Any, path: str) -> HTTPRouteDestination | None:
    data = r.obj(value, path, ("destination", "weight"), ignored=("headers",))
    if data is None:
        return None
    weight = r.integer(data, "weight", path, high=2**31 - 1)
    dest = r.child(
        data,
        "destination",
        path,
        lambda v, p: parse_destination(r, v, p),
        required="destination is required",
    )
    if dest is None:
        return None
    return HTTPRouteDestination(destination=dest, weight=weight or 0)


def _route(r: Reader, value: Any, path: str) -> HTTPRoute | None:
    data = r.obj(value, path, ("name", "match", "route"), ignored=_ROUTE_IGNORED)
    if data is None:
        return None
    return HTTPRoute(
        name=r.string(data, "name", path),
        match=r.items(data, "match", path, lambda v, p: _match(r, v, p)),
        route=r.items(data, "route", path, lambda v, p: _destination(r, v, p)),
    )


def parse_virtual_service(r: Reader, value: Any, path: str) -> VirtualServiceSpec | None:
    data = r.obj(value, path, ("hosts", "gateways", "http", "exportTo"), ignored=("tcp", "tls"))
    if data is None:
        return None
    return VirtualServiceSpec(
        hosts=r.strings(data, "hosts", path),
        gateways=r.strings(data, "gateways", path),
        http=r.items(data, "http", path, lambda v, p: _route(r, v, p)),
        export_to=r.strings(data, "exportTo", path),
    )
