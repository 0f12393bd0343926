"""Types shared by MetaRouter and Istio's VirtualService: string matches and destinations.

Both CRDs use the same shapes (reference §2.1 ``StringMatch``/``Destination``, §3.3), so the
translation code handles one type for each.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aeraki.control.model.base import child_path
from aeraki.control.model.reader import Reader, describe

__all__ = [
    "Destination",
    "MatchKind",
    "StringMatch",
    "parse_destination",
    "parse_string_match",
    "parse_string_match_map",
]


class MatchKind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"
    PRESENT = "present"


@dataclass(frozen=True, slots=True, kw_only=True)
class StringMatch:
    """An attribute/header match. ``PRESENT`` has ``value=""``.

    Reference §6.8: ``regex: "*"`` means presence; ``{}`` (no oneof set) is a presence match
    here instead of being silently dropped (quirk §16.8: presence is friendlier). ``exact: ""``
    stays an empty exact match, which the data plane treats as presence (§15.2 relies on it).
    """

    kind: MatchKind
    value: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """``{host, subset, port: {number}}``; ``port=None`` means "the service port" (§6.8)."""

    host: str
    subset: str = ""
    port: int | None = None


_MATCH_KEYS = ("exact", "prefix", "regex")


def parse_string_match(r: Reader, value: Any, path: str) -> StringMatch | None:
    """One ``StringMatch`` oneof; more than one of exact/prefix/regex is an error."""
    data = r.obj(value, path, _MATCH_KEYS)
    if data is None:
        return None
    present = [k for k in _MATCH_KEYS if k in data]
    if len(present) > 1:
        r.error(path, f"only one of exact, prefix, regex may be set (found {', '.join(present)})")
        return None
    if not present:
        return StringMatch(kind=MatchKind.PRESENT)
    key = present[0]
    raw = data[key]
    if not isinstance(raw, str):
        r.error(child_path(path, key), f"expected a string, got {describe(raw)} (quote it in YAML)")
        return None
    if key == "regex" and raw == "*":
        return StringMatch(kind=MatchKind.PRESENT)
    return StringMatch(kind=MatchKind(key), value=raw)


def parse_string_match_map(
    r: Reader, data: Mapping[str, Any], key: str, path: str, *, null_message: str
) -> dict[str, StringMatch]:
    """``map<string, StringMatch>`` sorted by key (quirk §16.7: stable route configs).

    ``null_message`` may contain ``{name}``; MetaRouter's webhook rejects null values (§13.9).
    """
    sub = child_path(path, key)
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        r.error(sub, f"expected a mapping, got {describe(value)}")
        return {}
    out: dict[str, StringMatch] = {}
    for name in sorted(value, key=str):
        item_path = child_path(sub, name)
        if not isinstance(name, str):
            r.error(item_path, f"expected a string key, got {describe(name)}")
            continue
        if name == "":
            r.error(item_path, "attribute name cannot be empty")
            continue
        if value[name] is None:
            r.error(item_path, null_message.format(name=name))
            continue
        match = parse_string_match(r, value[name], item_path)
        if match is not None:
            out[name] = match
    return out


def parse_destination(r: Reader, value: Any, path: str) -> Destination | None:
    data = r.obj(value, path, ("host", "subset", "port"))
    if data is None:
        return None
    port: int | None = None
    port_data = r.child(data, "port", path, lambda v, p: r.obj(v, p, ("number",)))
    if port_data is not None:
        # Range 1..65535 is a webhook rule with its own text (§13.9.3); here only the type.
        port = r.integer(port_data, "number", child_path(path, "port"))
    return Destination(
        host=r.string(data, "host", path),
        subset=r.string(data, "subset", path),
        port=port,
    )
