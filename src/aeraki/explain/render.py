"""An :class:`~aeraki.explain.trace.Explanation` as terminal text or JSON.

JSON is the dataclasses as they are (a listener's ``filters`` is a list, in chain order, of
``{name, effect, details}``); text is for a terminal: one line per decision, the filter chain
before the routes, since it runs first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from aeraki.explain.filters import FilterStep
from aeraki.explain.trace import ClusterPick, Explanation, HostPick, ListenerTrace

__all__ = ["render_json", "render_text"]


def render_json(explanation: Explanation) -> str:
    """The whole explanation as indented JSON (field names as in :mod:`.trace`)."""
    return json.dumps(dataclasses.asdict(explanation), indent=2) + "\n"


def render_text(explanation: Explanation) -> str:
    """Readable lines; a listener the request could not enter (its frame is another
    protocol) gets one line saying why."""
    lines = [f"config: {explanation.source}"]
    for trace in explanation.listeners:
        lines.append("")
        lines.extend(_listener(trace))
    return "\n".join(lines) + "\n"


def _listener(t: ListenerTrace) -> list[str]:
    head = f"listener {t.listener} ({t.address}, {t.protocol}, routes {t.route_source})"
    if t.skipped:
        return [f"{head}: skipped: {t.skipped}"]
    lines = [head + ":", "  request metadata:"]
    lines.extend(f"    {k} = {v!r}" for k, v in t.metadata.items())
    if t.filters:
        lines.append("  filters, in order:")
    for i, step in enumerate(t.filters, 1):
        lines.extend(_filter(i, step))
    if t.routes:
        lines.append("  routes, in order:")
    for check in t.routes:
        verdict = "MATCH" if check.matched else "miss "
        lines.append(f"    {verdict} route {check.name} -> {check.target}")
        if not check.matchers:
            lines.append("          ok   (no matchers: matches every request)")
        for m in check.matchers:
            seen = "absent" if m.seen is None else f"value {m.seen!r}"
            lines.append(f"          {'ok  ' if m.ok else 'FAIL'} {m.matcher}: {seen}")
    if t.route is not None:
        lines.extend(_action(t))
    lines.append(f"  => {t.outcome}")
    return lines


def _action(t: ListenerTrace) -> list[str]:
    lines = []
    if t.request_mutation:
        pairs = ", ".join(f"{k}={v}" for k, v in t.request_mutation.items())
        lines.append(f"  request mutation: {pairs}")
    if t.response_mutation:
        pairs = ", ".join(f"{k}={v}" for k, v in t.response_mutation.items())
        lines.append(f"  response mutation: {pairs}")
    lines.append(f"  traffic policy: {_policy(t.policy)}")
    if t.cluster is not None:
        lines.extend(_cluster(t.cluster))
    if t.host is not None:
        lines.extend(_host(t.host))
    return lines


def _policy(policy: object) -> str:
    if not isinstance(policy, dict) or not policy:
        return "none (no timeout, no retries, no fault)"
    parts = []
    if "timeout_s" in policy:
        parts.append(f"timeout {policy['timeout_s']}s")
    retries = policy.get("retries")
    if isinstance(retries, dict):
        text = f"{retries['num_retries']} retries on {','.join(retries['retry_on']) or 'nothing'}"
        if retries["per_try_timeout_s"] is not None:
            text += f" (per try {retries['per_try_timeout_s']}s)"
        parts.append(text)
    delay = policy.get("fault_delay")
    if isinstance(delay, dict):
        parts.append(f"fault delay {delay['delay_s']}s on {delay['percent']}%")
    abort = policy.get("fault_abort")
    if isinstance(abort, dict):
        parts.append(f"fault abort {abort['error_type']} on {abort['percent']}%")
    if policy.get("idempotent") is False:
        parts.append("not idempotent")
    return "; ".join(parts)


def _cluster(c: ClusterPick) -> list[str]:
    if not c.weights:
        lines = [f"  cluster: {c.cluster}"]
    else:
        total = sum(w for _, w in c.weights) or 1
        split = ", ".join(f"{n} {w} ({100 * w / total:.0f}%)" for n, w in c.weights)
        lines = [
            f"  weighted clusters: {split}",
            f"  cluster: {c.cluster} (random value {c.random_value}; --random to replay)",
        ]
    for name, percent, sent in c.mirrors:
        lines.append(f"  mirror: {name} {percent}% -> {'mirrored' if sent else 'not'} this time")
    return lines


def _host(h: HostPick) -> list[str]:
    if not h.lb_policy:
        return [f"  host: none ({h.note})"]
    hashing = ""
    if h.hash_keys:
        values = ", ".join(f"{k}={v!r}" for k, v in h.hash_keys)
        hashing = f"; hash policy {values} -> hash key {h.hash_key}"
    lines = [
        f"  load balancer: {h.lb_policy} over {h.healthy} healthy of {h.hosts} host(s){hashing}",
        f"  host: {h.host or 'none'}",
    ]
    if h.note:
        lines.append(f"  note: {h.note}")
    return lines


_FILTER_PREFIX = "aeraki.meta_protocol.filters."


def _filter(number: int, step: FilterStep) -> list[str]:
    lines = [f"    {number}. {step.name.removeprefix(_FILTER_PREFIX)}: {step.effect}"]
    details = step.details
    pad = "         "
    for row in _rows(details.get("conditions")):
        verdict = "MATCH" if row["matched"] else "miss "
        chosen = (
            "  <- this bucket" if details.get("bucket") == f"conditions[{row['index']}]" else ""
        )
        lines.append(f"{pad}{verdict} conditions[{row['index']}]: {_bucket(row)}{chosen}")
        lines.extend(_matchers(pad + "      ", _rows(row.get("matchers"))))
    default = details.get("default_bucket")
    if isinstance(default, dict) and "conditions" in details:
        chosen = "  <- this bucket" if details.get("bucket") == "default" else ""
        lines.append(f"{pad}default bucket: {_bucket({'token_bucket': default})}{chosen}")
    elif "conditions" in details:
        lines.append(f"{pad}no default bucket: a request no condition matches is allowed")
    if "tokens" in details:
        lines.append(f"{pad}{details['tokens']}")
    if "descriptors" in details:
        lines.extend(_global(pad, details))
    return lines


def _rows(value: object) -> list[dict[str, object]]:
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _bucket(row: dict[str, object]) -> str:
    b = row["token_bucket"]
    assert isinstance(b, dict)
    return f"max {b['max_tokens']} tokens, +{b['tokens_per_fill']} every {b['fill_interval_s']:g}s"


def _matchers(pad: str, rows: list[dict[str, object]]) -> list[str]:
    if not rows:
        return [f"{pad}ok   (no matchers: matches every request)"]
    out = []
    for m in rows:
        seen = "absent" if m["seen"] is None else f"value {m['seen']!r}"
        out.append(f"{pad}{'ok  ' if m['ok'] else 'FAIL'} {m['matcher']}: {seen}")
    return out


def _global(pad: str, d: Mapping[str, object]) -> list[str]:
    lines = [f"{pad}match:"]
    lines.extend(_matchers(pad + "  ", _rows(d.get("match"))))
    descriptors = d["descriptors"]
    assert isinstance(descriptors, list)
    entries = "; ".join(", ".join(f"{e['key']}={e['value']!r}" for e in x) for x in descriptors)
    host = d.get("rls_host") or "none"
    sent = f"domain {d['domain']!r}, descriptors {entries}"
    if not d.get("applies"):
        sent = "none (the match fails)"
    lines += [
        f"{pad}request: {sent}",
        f"{pad}service: cluster {d['rls_cluster']} (host {host}), timeout {d['timeout_s']:g}s, "
        f"failure_mode_deny {str(d['failure_mode_deny']).lower()}",
        f"{pad}verdict: {d['verdict']}",
    ]
    return lines
