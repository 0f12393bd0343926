"""Trace context carried in a request's metadata: W3C Trace Context and B3, read and written.

Pure string work, no OpenTelemetry: the tracing filter calls :func:`extract` only for
requests it has decided to trace, and :func:`inject_keys` to get what the upstream request
must carry. Keys are metadata property names (Dubbo attachments, THeader headers), lower-case.

Formats (read in this order; the first present and valid wins):

* W3C ``traceparent: 00-<trace-id 32 hex>-<parent-id 16 hex>-<flags 2 hex>`` plus
  ``tracestate`` (passed on untouched). Versions above 00 are read by their first four
  fields, as the spec asks; ``ff``, all-zero ids and malformed values are ignored.
* B3 single header ``b3: <trace-id>-<span-id>[-<sampled>[-<parent-span-id>]]`` (sampled
  ``1``, ``0`` or ``d`` = debug); a bare ``b3: 0`` only says "not sampled".
* B3 multi headers ``x-b3-traceid`` (16 or 32 hex), ``x-b3-spanid``, ``x-b3-sampled``
  (``1``/``0``, ``true``/``false``), ``x-b3-flags: 1`` (debug, i.e. sampled).

What goes upstream: always ``traceparent`` (and the received ``tracestate``); B3 as well, in
the form it came in (single or multi), so a B3-only server still sees the proxy's span as its
parent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "B3Form",
    "ParentContext",
    "extract",
    "inject_keys",
    "parse_b3_single",
    "parse_traceparent",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
B3 = "b3"
B3_TRACE_ID = "x-b3-traceid"
B3_SPAN_ID = "x-b3-spanid"
B3_PARENT_SPAN_ID = "x-b3-parentspanid"
B3_SAMPLED = "x-b3-sampled"
B3_FLAGS = "x-b3-flags"

_HEX = frozenset("0123456789abcdef")


class B3Form(enum.Enum):
    """How B3 context arrived (and so how it is passed on)."""

    NONE = "none"
    SINGLE = "single"
    MULTI = "multi"


@dataclass(frozen=True, slots=True)
class ParentContext:
    """The caller's span as the request named it.

    ``sampled`` is ``None`` when the caller left the decision to us (B3 without a sampling
    state); ``trace_id_hex_len`` keeps a 64-bit B3 trace id 64-bit when passed on.
    """

    trace_id: int
    span_id: int
    sampled: bool | None
    tracestate: str = ""
    b3: B3Form = B3Form.NONE
    trace_id_hex_len: int = 32


def _hex_int(value: str, lengths: tuple[int, ...]) -> int | None:
    """``value`` as an int when it is lower-case hex of one of ``lengths`` and not zero."""
    if len(value) not in lengths or not _HEX.issuperset(value):
        return None
    number = int(value, 16)
    return number or None


def parse_traceparent(value: str, tracestate: str = "") -> ParentContext | None:
    """A W3C ``traceparent`` value, or ``None`` when it is not a valid one."""
    value = value.strip()
    version = value[:2]
    if len(value) < 55 or version == "ff" or not _HEX.issuperset(version):
        return None
    if (version == "00" and len(value) != 55) or (len(value) > 55 and value[55] != "-"):
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace_id = _hex_int(value[3:35], (32,))
    span_id = _hex_int(value[36:52], (16,))
    flags = value[53:55]
    if trace_id is None or span_id is None or not _HEX.issuperset(flags):
        return None
    return ParentContext(trace_id, span_id, bool(int(flags, 16) & 1), tracestate)


def parse_b3_single(value: str) -> ParentContext | None:
    """A ``b3`` single-header value; ``None`` when malformed or when it carries no ids."""
    parts = value.strip().lower().split("-")
    if len(parts) < 2 or len(parts) > 4:
        return None
    trace_id = _hex_int(parts[0], (16, 32))
    span_id = _hex_int(parts[1], (16,))
    if trace_id is None or span_id is None:
        return None
    sampled: bool | None = None
    if len(parts) > 2:
        if parts[2] not in ("0", "1", "d"):
            return None
        sampled = parts[2] != "0"
    return ParentContext(
        trace_id, span_id, sampled, b3=B3Form.SINGLE, trace_id_hex_len=len(parts[0])
    )


def _parse_b3_multi(strings: dict[str, str]) -> ParentContext | None:
    raw_trace = strings.get(B3_TRACE_ID, "").strip().lower()
    trace_id = _hex_int(raw_trace, (16, 32))
    span_id = _hex_int(strings.get(B3_SPAN_ID, "").strip().lower(), (16,))
    if trace_id is None or span_id is None:
        return None
    sampled: bool | None = None
    if strings.get(B3_FLAGS, "").strip() == "1":
        sampled = True
    else:
        flag = strings.get(B3_SAMPLED, "").strip().lower()
        if flag in ("1", "true"):
            sampled = True
        elif flag in ("0", "false"):
            sampled = False
    return ParentContext(
        trace_id, span_id, sampled, b3=B3Form.MULTI, trace_id_hex_len=len(raw_trace)
    )


def extract(strings: dict[str, str]) -> ParentContext | None:
    """The parent context a request carries (W3C first, then B3 single, then B3 multi).

    ``strings`` are the request's properties, keys lower-case, deferred ones loaded.
    """
    traceparent = strings.get(TRACEPARENT)
    if traceparent is not None:
        parent = parse_traceparent(traceparent, strings.get(TRACESTATE, ""))
        if parent is not None:
            return parent
    single = strings.get(B3)
    if single is not None:
        parent = parse_b3_single(single)
        if parent is not None:
            return parent
    if B3_TRACE_ID in strings:
        return _parse_b3_multi(strings)
    return None


def inject_keys(trace_id: int, span_id: int, parent: ParentContext | None) -> list[tuple[str, str]]:
    """The properties that make span ``span_id`` the upstream request's parent (sampled)."""
    out = [(TRACEPARENT, f"00-{trace_id:032x}-{span_id:016x}-01")]
    if parent is None:
        return out
    if parent.tracestate:
        out.append((TRACESTATE, parent.tracestate))
    if parent.b3 is B3Form.NONE:
        return out
    width = parent.trace_id_hex_len
    trace_hex = f"{trace_id:0{width}x}"[-width:]
    span_hex = f"{span_id:016x}"
    parent_hex = f"{parent.span_id:016x}"
    if parent.b3 is B3Form.SINGLE:
        out.append((B3, f"{trace_hex}-{span_hex}-1-{parent_hex}"))
    else:
        out += [
            (B3_TRACE_ID, trace_hex),
            (B3_SPAN_ID, span_hex),
            (B3_PARENT_SPAN_ID, parent_hex),
            (B3_SAMPLED, "1"),
        ]
    return out
