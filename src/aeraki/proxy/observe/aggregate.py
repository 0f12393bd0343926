"""One admin page out of several worker processes' pages (``aeraki proxy --workers N``).

Each worker is a whole :class:`~aeraki.proxy.server.ProxyServer` with its own counters, so
the supervisor answers ``/stats/prometheus``, ``/stats?format=json`` and
``/clusters?format=json`` by fetching the page from every worker and merging the bodies with
the pure functions here (no I/O). Like Envoy summing its worker threads' stats, every counter
and gauge is the SUM over workers, and a histogram is summed bucket by bucket (its cumulative
``_bucket`` samples, ``_sum`` and ``_count`` are each summed, so buckets stay monotonic and
``_count`` stays equal to the ``le="+Inf"`` bucket).

The Prometheus pages are merged as text, not re-rendered from parsed values, so a merged page
of one worker is byte-identical to that worker's page, and a sample's labels keep the order
the first page wrote them in. A sample is identified by its name and exact label set, in any
order; label values are compared in their escaped form, which is canonical because the format
allows only the ``\\\\``, ``\\"`` and ``\\n`` escapes. Scrape cost is what matters: a sample
line is looked up by its raw ``name{labels}`` text first, and its labels are parsed only the
first time that text is seen (two pages of 5,000 samples merge in about 20 ms; 45 ms when
they carry Istio's 25 labels, 5 MB a page).

A worker page that does not follow the text format raises :class:`~aeraki.errors.CodecError`
naming the page's index and line number: the supervisor then answers with an error rather than
a page that silently drops or double-counts a worker.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from aeraki.errors import CodecError
from aeraki.metrics import prometheus_number

__all__ = ["merge_cluster_statuses", "merge_prometheus", "merge_stats"]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
#: An escaped label value: no raw quote or newline, and only the three escapes of the format
#: (unrolled-loop form: linear, no backtracking on a bad value).
_VALUE = r'[^"\\\n]*(?:\\[\\"n][^"\\\n]*)*'
_PAIR = rf'[a-zA-Z_][a-zA-Z0-9_]*="{_VALUE}"'
_LABELS = re.compile(rf"{_PAIR}(?:,{_PAIR})*,?")
_PAIRS = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)="({_VALUE})"')
_METRIC_NAME = re.compile(_NAME)
#: ``,name=``: the text before a label value once the labels are split at quotes.
_LABEL_TOKEN = re.compile(r",[a-zA-Z_][a-zA-Z0-9_]*=")

#: How to put the values of a label-name order into the canonical order of its name set
#: (None: it is the canonical order).
_Reorder = Callable[[list[str]], tuple[str, ...]] | None

#: Sample names of a family, by its TYPE (``""``: a family without a TYPE line).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}

_KNOWN_FLAGS = ("failed_active_hc", "failed_outlier_check")
_GENERIC_FLAG = "failed"
_HEALTHY = "healthy"
_HOST_SUMS = ("outlier_ejections", "cx_active", "rq_active")


class _Family:
    """One metric family of the merged page: its header lines and samples, in first-seen
    order."""

    __slots__ = ("help", "kind", "name", "names", "samples")

    def __init__(self, name: str) -> None:
        self.name = name
        self.help: str | None = None
        self.kind: str | None = None
        self.names: frozenset[str] = frozenset((name,))
        self.samples: list[_Sample] = []

    def set_kind(self, kind: str) -> None:
        self.kind = kind
        self.names = frozenset(self.name + suffix for suffix in _SUFFIXES[kind])


class _Sample:
    """One series: the ``name{labels}`` text the first page wrote, and the running sum."""

    __slots__ = ("family", "key", "name", "page", "value")

    def __init__(self, key: str, name: str, family: _Family) -> None:
        self.key = key
        self.name = name
        self.family = family
        self.value: int | float = 0
        #: the last page that contributed (a second line in that page is a duplicate).
        self.page = -1


def _number(value: int | float) -> str:
    """``prometheus_number`` plus the two values it does not spell as the format does."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value == -math.inf:
            return "-Inf"
    return prometheus_number(value)


def _parse_value(text: str) -> int | float:
    """An int when the text is one (so sums of ints print without ``.0``), else a float
    (``+Inf``, ``-Inf`` and ``NaN`` included); ValueError otherwise."""
    if text.isascii() and "_" not in text:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                pass
    raise ValueError(f"bad value {text!r}")


class _Merger:
    """The state of one :func:`merge_prometheus` call."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        #: ``name{labels}`` text as a page wrote it, and the series' canonical text -> series.
        self.series: dict[str, _Sample] = {}
        #: metric names known to be well-formed.
        self.valid: set[str] = set()
        #: a set of label names -> the first order they were seen in: the canonical one.
        self.orders: dict[frozenset[str], tuple[str, ...]] = {}
        #: the ``,name=`` tokens of a label set, in a page's order -> (canonical order, how to
        #: reorder values into it).
        self.shapes: dict[tuple[str, ...], tuple[tuple[str, ...], _Reorder]] = {}

    def family(self, name: str) -> _Family:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = _Family(name)
        return family

    def header(self, line: str) -> _Family | None:
        """Apply a ``# HELP``/``# TYPE`` line; the family it opens, None for a comment."""
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            family = self._declared(name)
            if family.help is None:
                family.help = text
            return family
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            if kind not in _SUFFIXES or not kind:
                raise ValueError(f"unknown metric type {kind!r}")
            family = self._declared(name)
            if family.kind is None:
                if family.samples:
                    raise ValueError(f"TYPE of {name} after its samples")
                family.set_kind(kind)
            elif family.kind != kind:
                raise ValueError(f"{name} is a {family.kind} in an earlier page")
            return family
        return None

    def _declared(self, name: str) -> _Family:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"bad metric name {name!r}")
        return self.family(name)

    def new_sample(self, key: str, current: _Family | None) -> _Sample:
        """The series of a ``name{labels}`` text not seen before in any page: a new one, or
        one written before with its labels in another order (or a trailing comma)."""
        name, text = self.canonical(key)
        sample = None if text is key else self.series.get(text)
        if sample is None:
            family = self.family_of(name, current)
            sample = self.series[text] = _Sample(key, name, family)
            family.samples.append(sample)
        self.series[key] = sample
        return sample

    def canonical(self, key: str) -> tuple[str, str]:
        """Check ``key`` is ``name`` or ``name{labels}``; its name and canonical text: its
        labels in the first order any sample had that set of label names in, without a
        trailing comma (``key`` itself, nearly always).

        Runs once per distinct text, so on every line of the first page: labels without a
        backslash (nearly all) are split at their quotes with C-level string methods, and
        the ``,name=`` pieces between the values are checked once per distinct sequence; a
        regex walking every character costs several times more on Istio-sized label sets,
        and so would a tuple of the values as the identity (hashing them again, where the
        key's hash is already cached from its lookup).
        """
        brace = key.find("{")
        if brace < 0:
            name, labels = key, ""
        elif key[-1] != "}":
            raise ValueError("not a sample: name{labels} value")
        else:
            name, labels = key[:brace], key[brace + 1 : -1]
        if name not in self.valid:
            if not _METRIC_NAME.fullmatch(name):
                raise ValueError(f"bad metric name {name!r}")
            self.valid.add(name)
        if not labels:
            return name, name
        if "\\" in labels:
            if not _LABELS.fullmatch(labels):
                raise ValueError("bad labels")
            pairs = _PAIRS.findall(labels)
            tokens = tuple(f",{label}=" for label, _ in pairs)
            values = [value for _, value in pairs]
        else:
            # ,a="1",b="2" -> [",a=", "1", ",b=", "2", ""]; a value holds no quote here.
            parts = ("," + labels).split('"')
            if len(parts) % 2 == 0 or parts[-1] not in ("", ","):
                raise ValueError("bad labels")
            tokens = tuple(parts[0:-1:2])
            values = parts[1::2]
        shape = self.shapes.get(tokens)
        if shape is None:
            shape = self.shapes[tokens] = self._shape(tokens)
        order, reorder = shape
        if reorder is None:
            if labels[-1] != ",":
                return name, key
        else:
            values = list(reorder(values))
        body = "".join(f'{token}"{value}"' for token, value in zip(order, values, strict=True))
        return name, f"{name}{{{body[1:]}}}"

    def _shape(self, tokens: tuple[str, ...]) -> tuple[tuple[str, ...], _Reorder]:
        """Check a sequence of label names (once: they repeat on thousands of lines) and
        relate it to the canonical order of its set."""
        for token in tokens:
            if not _LABEL_TOKEN.fullmatch(token):
                raise ValueError(f"bad label name {token[1:-1]!r}")
        names = frozenset(tokens)
        if len(names) != len(tokens):
            raise ValueError("a label given twice")
        order = self.orders.setdefault(names, tokens)
        if order == tokens:
            return order, None
        position = {token: i for i, token in enumerate(tokens)}
        return order, itemgetter(*(position[token] for token in order))

    def family_of(self, name: str, current: _Family | None) -> _Family:
        """The family a sample named ``name`` belongs to after ``current``'s header: that
        one, or a family of its own without a header (untyped)."""
        if current is not None and name in current.names:
            return current
        family = self.family(name)
        if family.kind is not None and name not in family.names:
            raise ValueError(f"sample {name} outside its family")
        return family

    def text(self) -> str:
        out: list[str] = []
        for family in self.families.values():
            if family.help is not None:
                out.append(f"# HELP {family.name} {family.help}")
            if family.kind is not None:
                out.append(f"# TYPE {family.name} {family.kind}")
            # a quantile of several workers cannot be computed from their quantiles.
            quantiles = family.name if family.kind == "summary" else None
            out.extend(f"{s.key} {_number(s.value)}" for s in family.samples if s.name != quantiles)
        return "\n".join(out) + "\n"


def merge_prometheus(pages: Sequence[str]) -> str:
    """One exposition page whose every sample is the sum of that (name, labels) sample over
    ``pages``.

    Families come in first-seen order with their HELP/TYPE once (the first page's HELP); a
    sample present in only some pages is the sum of those. An optional timestamp is accepted
    and dropped (a sum of several workers' samples has no one time). A summary's quantile
    samples are dropped, its ``_sum`` and ``_count`` summed.

    Raises:
        CodecError: a line is malformed, a sample appears twice in one page, or pages
            disagree on a family's TYPE; the message names the page index and line number.
    """
    merger = _Merger()
    series = merger.series
    for index, page in enumerate(pages):
        current: _Family | None = None
        # split("\n"), not splitlines(): a label value may hold U+2028 and the like.
        for number, line in enumerate(page.split("\n"), 1):
            if not line:
                continue
            try:
                if line[0] == "#":
                    current = merger.header(line) or current
                    continue
                cut = line.rfind("} ")
                if cut >= 0:
                    key = line[: cut + 1]
                    rest = line[cut + 2 :]
                else:
                    key, _, rest = line.partition(" ")
                text, _, stamp = rest.partition(" ")
                if text.isdigit() and text.isascii():
                    value: int | float = int(text)
                else:
                    value = _parse_value(text)
                if stamp:
                    int(stamp)
                sample = series.get(key)
                if sample is None:
                    sample = merger.new_sample(key, current)
                elif sample.family is not current and sample.family is not merger.family_of(
                    sample.name, current
                ):
                    raise ValueError(f"sample {sample.name} outside its family")
                if sample.page == index:
                    raise ValueError("sample given twice in this page")
                sample.page = index
                sample.value += value
            except ValueError as exc:
                shown = line if len(line) <= 200 else line[:200] + "…"
                raise CodecError(
                    f"prometheus page {index} line {number}: {exc}: {shown!r}"
                ) from None
    return merger.text()


def merge_stats(stats: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """``/stats?format=json`` of several workers: every stat summed, first-seen order.

    Raises:
        CodecError: a value is not an int (names the page index and the stat).
    """
    out: dict[str, int] = {}
    for index, page in enumerate(stats):
        for name, value in page.items():
            if type(value) is not int:
                raise CodecError(f"stats page {index}: {name} is {value!r}, not an int")
            out[name] = out.get(name, 0) + value
    return out


def _flags(text: str) -> list[str]:
    """The flags of a ``health_flags`` value (``healthy`` has none)."""
    if text == _HEALTHY:
        return []
    if not text.startswith("/"):
        raise ValueError(f"health_flags {text!r}")
    return [flag for flag in text[1:].split("/") if flag]


def _union_flags(seen: Sequence[str]) -> str:
    """Flags seen in any worker, in the notation of
    :attr:`~aeraki.proxy.upstream.host.Host.health_flags`: known flags in its order, others
    after them in first-seen order; the generic ``/failed`` only when nothing more precise is
    known; ``healthy`` when no worker has a flag."""
    ordered = [flag for flag in _KNOWN_FLAGS if flag in seen]
    ordered += [flag for flag in seen if flag not in _KNOWN_FLAGS and flag != _GENERIC_FLAG]
    if not ordered and _GENERIC_FLAG in seen:
        ordered = [_GENERIC_FLAG]
    return "".join(f"/{flag}" for flag in ordered) or _HEALTHY


class _ClusterMerge:
    """One cluster being merged: the first page's copy, updated with each later page."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.out: dict[str, Any] = copy.deepcopy(
            {k: v for k, v in status.items() if k != "host_statuses"}
        )
        self.out["stats"] = {}
        self.out["in_panic"] = False
        self.hosts: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, list[str]] = {}

    def add(self, status: Mapping[str, Any]) -> None:
        out = self.out
        out["in_panic"] = bool(out["in_panic"] or status["in_panic"])
        stats: dict[str, int] = out["stats"]
        for name, value in status["stats"].items():
            stats[name] = stats.get(name, 0) + value
        for host in status["host_statuses"]:
            self._host(host)

    def _host(self, host: Mapping[str, Any]) -> None:
        address = host["address"]
        merged = self.hosts.get(address)
        if merged is None:
            merged = self.hosts[address] = copy.deepcopy(dict(host))
            for key in _HOST_SUMS:
                merged[key] = 0
            self.flags[address] = []
        for key in _HOST_SUMS:
            merged[key] += host[key]
        seen = self.flags[address]
        seen.extend(flag for flag in _flags(host["health_flags"]) if flag not in seen)

    def result(self) -> dict[str, Any]:
        hosts = []
        for address, host in self.hosts.items():
            host["health_flags"] = _union_flags(self.flags[address])
            hosts.append(host)
        return {**self.out, "host_statuses": hosts}


def merge_cluster_statuses(pages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge several ``/clusters?format=json`` bodies (``{"cluster_statuses": [...]}``, see
    :func:`~aeraki.proxy.admin.cluster_status`/:func:`~aeraki.proxy.admin.host_status`).

    Clusters are matched by name, hosts by address; clusters and hosts known to only some
    workers are included (first-seen order). Summed: ``stats`` values, ``cx_active``,
    ``rq_active``, ``outlier_ejections`` (each worker ejects on its own traffic). A host's
    ``health_flags`` is the union of the workers' (unhealthy if any worker has it so);
    ``in_panic`` is true if any worker's is. Everything else (``lb_policy``,
    ``circuit_breakers``, weight, priority, locality) is configuration, the same in every
    worker, and is copied from the first page that has the cluster or host.

    Raises:
        CodecError: a body lacks a field named above or has one of the wrong type (names the
            page index).
    """
    clusters: dict[str, _ClusterMerge] = {}
    for index, page in enumerate(pages):
        try:
            for status in page["cluster_statuses"]:
                merge = clusters.get(status["name"])
                if merge is None:
                    merge = clusters[status["name"]] = _ClusterMerge(status)
                merge.add(status)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CodecError(f"clusters page {index}: malformed body ({exc!r})") from None
    return {"cluster_statuses": [merge.result() for merge in clusters.values()]}
