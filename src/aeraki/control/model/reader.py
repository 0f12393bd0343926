"""Strict conversion of a raw YAML/JSON value into typed fields, recording every problem.

Kubernetes' strict field validation (``kubectl apply --validate=strict``, the default since
1.27) rejects unknown fields; so do we, as errors, because a misspelt ``subest`` that is silently
dropped sends traffic to the wrong place. Istio fields we do not model are declared ``ignored``
per object so valid Istio YAML passes (DESIGN §6: one place per kind, every problem reported).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from aeraki.control.model.base import Report, child_path, index_path

__all__ = ["Reader", "describe"]

T = TypeVar("T")

UINT32_MAX = 2**32 - 1

# Go ``time.ParseDuration`` syntax, which is what Aeraki users write ("60s", "100ms", "1m30s");
# protobuf's JSON form ("0.100s") is a special case of it.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def describe(value: object) -> str:
    """A value as a user would recognise it in a message: ``string "20"``, ``list``, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'string "{shown}"'
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


class Reader:
    """Typed getters over raw mappings; each records a problem and returns a default on error."""

    def __init__(self, report: Report) -> None:
        self.report = report
        # list path -> source index of each kept item, for lists where a bad item was dropped
        self._kept: dict[str, list[int]] = {}

    def item(self, list_path: str, position: int) -> str:
        """Path of the ``position``-th *parsed* item of a list, as indexed in the source.

        Bad items are dropped from the model; rules that run afterwards must still point at
        the user's ``[i]``, not at the position in the shorter tuple.
        """
        kept = self._kept.get(list_path)
        return index_path(list_path, kept[position] if kept else position)

    def has_error_under(self, path: str) -> bool:
        """Whether an error was already reported at or below ``path`` (avoids cascades)."""
        return any(
            p.is_error
            and (p.field_path == path or p.field_path.startswith((path + ".", path + "[")))
            for p in self.report.problems
        )

    def error(self, path: str, message: str) -> None:
        self.report.error(path, message)

    def warning(self, path: str, message: str) -> None:
        self.report.warning(path, message)

    # --- objects -----------------------------------------------------------------------------

    def obj(
        self,
        value: object,
        path: str,
        known: Collection[str],
        ignored: Collection[str] = (),
    ) -> Mapping[str, Any] | None:
        """``value`` as a mapping whose keys are all in ``known`` or ``ignored``.

        Unknown keys are errors, with a suggestion when one known key is close.
        """
        if not isinstance(value, Mapping):
            self.error(path, f"expected a mapping, got {describe(value)}")
            return None
        for key in value:
            if key in known or key in ignored:
                continue
            near = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f' (did you mean "{near[0]}"?)' if near else ""
            self.error(child_path(path, key), f"unknown field{hint}")
        return value

    def child(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        parse: Callable[[Any, str], T | None],
        *,
        required: str = "",
    ) -> T | None:
        """``parse(data[key])`` if present; ``required`` is the message when it is missing."""
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            if required:
                self.error(sub, required)
            return None
        return parse(value, sub)

    def items(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        parse: Callable[[Any, str], T | None],
        *,
        null_message: str = "list item may not be null",
    ) -> tuple[T, ...]:
        """Each element of the list ``data[key]`` parsed; bad elements are reported and left out."""
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(sub, f"expected a list, got {describe(value)}")
            return ()
        out: list[T] = []
        kept: list[int] = []
        for i, item in enumerate(value):
            if item is None:
                self.error(index_path(sub, i), null_message)
                continue
            parsed = parse(item, index_path(sub, i))
            if parsed is not None:
                out.append(parsed)
                kept.append(i)
        if len(kept) != len(value):
            self._kept[sub] = kept
        return tuple(out)

    # --- scalars -----------------------------------------------------------------------------

    def string(self, data: Mapping[str, Any], key: str, path: str, *, required: str = "") -> str:
        """``data[key]`` as a string (``""`` when absent). YAML ``true``/``8080`` are rejected:
        Kubernetes would reject them too, and the fix (quote it) is easy to state."""
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            if required:
                self.error(sub, required)
            return ""
        if not isinstance(value, str):
            self.error(sub, f"expected a string, got {describe(value)} (quote it in YAML)")
            return ""
        return value

    def strings(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        def one(item: Any, item_path: str) -> str | None:
            if isinstance(item, str):
                return item
            self.error(item_path, f"expected a string, got {describe(item)}")
            return None

        return self.items(data, key, path, one, null_message="expected a string, got null")

    def string_map(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        """A ``map<string, string>`` (labels, annotations), keys in the order written."""
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(sub, f"expected a mapping of strings, got {describe(value)}")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.error(child_path(sub, k), f"expected a string key, got {describe(k)}")
            elif not isinstance(v, str):
                self.error(child_path(sub, k), f"expected a string, got {describe(v)}")
            else:
                out[k] = v
        return out

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        low: int = 0,
        high: int = UINT32_MAX,
        required: str = "",
    ) -> int | None:
        """An integer in ``[low, high]`` (uint32 by default, the proto type of most fields)."""
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            if required:
                self.error(sub, required)
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON from the API server may carry 20.0
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(sub, f"expected an integer, got {describe(value)}")
            return None
        if not low <= value <= high:
            self.error(sub, f"{value} is out of range {low}..{high}")
            return None
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(sub, f"expected a number, got {describe(value)}")
            return None
        return float(value)

    def boolean(self, data: Mapping[str, Any], key: str, path: str) -> bool:
        value = data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.error(child_path(path, key), f"expected true or false, got {describe(value)}")
            return False
        return value

    def enum(
        self, data: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]
    ) -> str | None:
        """One of ``allowed`` (proto enum names, written in upper case as Istio's YAML does)."""
        text = self.string(data, key, path)
        if not text:
            return None
        if text not in allowed:
            self.error(child_path(path, key), f'"{text}" is not one of {", ".join(allowed)}')
            return None
        return text

    def duration(self, data: Mapping[str, Any], key: str, path: str) -> timedelta | None:
        """A Go-style duration string (``"60s"``, ``"100ms"``, ``"1m30s"``)."""
        sub = child_path(path, key)
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(sub, f'expected a duration such as "1s" or "100ms", got {describe(value)}')
            return None
        seconds = parse_duration(value)
        if seconds is None:
            self.error(sub, f'invalid duration "{value}" (expected e.g. "1s", "100ms", "1m30s")')
            return None
        return timedelta(seconds=seconds)


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration string, or ``None``; ``"0"`` alone is allowed, as in Go."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None
