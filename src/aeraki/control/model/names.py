"""Name and pattern checks shared by the per-resource rules: DNS-1123, FQDN, exportTo, regex.

Message texts follow Istio's validation helpers, which Aeraki's webhook calls (reference §13.9),
so users see the words they know.
"""

from __future__ import annotations

import re

__all__ = [
    "MESSAGE_RE2_HINT",
    "export_to_errors",
    "fqdn_error",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "regex_error",
]

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_MAX = 63  # RFC 1123 label length
_SUBDOMAIN_MAX = 253  # Kubernetes object name limit (DNS-1123 subdomain)
_FQDN_MAX = 255

MESSAGE_RE2_HINT = (
    "Aeraki uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
)

# Constructs Python's `re` accepts but RE2 (Envoy's google_re2) rejects, with Go's wording.
# Our data plane uses `re`; refusing these keeps one config valid on every data plane (§6.8).
_PERL_ONLY = re.compile(r"\(\?(?:=|!|<=|<!|>|P=|\()|(?<!\\)(?:\\\\)*\\[1-9]")


def is_dns1123_label(text: str) -> bool:
    return len(text) <= _LABEL_MAX and _LABEL.fullmatch(text) is not None


def is_dns1123_subdomain(text: str) -> bool:
    return len(text) <= _SUBDOMAIN_MAX and all(is_dns1123_label(p) for p in text.split("."))


def fqdn_error(host: str) -> str | None:
    """Istio's ``ValidateFQDN`` (§13.9 rule 1): ``None`` if ``host`` is a valid FQDN."""
    if len(host) > _FQDN_MAX:
        return f'domain name "{host}" too long (max 255)'
    if not host:
        return "empty domain name not allowed"
    parts = host.split(".")
    tld = parts[-1]
    if re.fullmatch(r"[+-]?[0-9]+", tld):
        return f'domain name "{host}" invalid (top level domain "{tld}" cannot be all-numeric)'
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            break  # a trailing dot is allowed
        if not is_dns1123_label(label):
            return f'domain name "{host}" invalid (label "{label}" invalid)'
    return None


def export_to_errors(entries: tuple[str, ...], namespace: str) -> list[tuple[int, str]]:
    """(index, message) for each bad ``exportTo`` entry (§13.9 rule 4, Istio visibility)."""
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry in seen:
            out.append((i, f"duplicate entries in exportTo for entry {entry}"))
        elif (entry == "." and namespace in seen) or (entry == namespace and "." in seen):
            out.append((i, f"duplicate entries in exportTo: . and current namespace {namespace}"))
        elif entry == "~":
            out.append((i, "exportTo ~ (none) is not allowed for Istio configuration objects"))
        elif entry not in (".", "*") and not is_dns1123_label(entry):
            out.append((i, "only .,*,~, or a valid DNS 1123 label is allowed as exportTo entry"))
        seen.add(entry)
    if "*" in seen and len(seen) > 1:
        out.append(
            (-1, "cannot have both public (*) and non-public exportTo values for a resource")
        )
    return out


def regex_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable RE2 pattern, in Go's wording, or ``None``."""
    perl = _PERL_ONLY.search(pattern)
    if perl:
        found = perl.group(0)
        if found[-1].isdigit():  # a backreference
            return f"error parsing regexp: invalid escape sequence: `\\{found[-1]}`"
        return f"error parsing regexp: invalid or unsupported Perl syntax: `{found}`"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"error parsing regexp: {exc.msg}: `{pattern}`"
    return None
