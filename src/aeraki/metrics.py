"""How every statistic of both planes is declared: once, with its kind and help text.

The proxy declares its stats in :mod:`aeraki.proxy.stats`, the control plane in
:mod:`aeraki.control.push`; exporters (admin ``/stats``, ``/metrics``) read those lists, so a
metric cannot be exported without a declaration (style anchors §9 rule 11).

Both planes also share the one histogram type (:class:`Histogram`: fixed buckets, plain ints,
no lock — everything runs on one event loop) and its Prometheus text rendering.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

__all__ = ["Histogram", "MetricSpec", "histogram_lines", "prometheus_number"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One declared metric."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str


class Histogram:
    """A fixed-bucket histogram: per-bucket counts (not cumulative) and the sum.

    ``counts[i]`` holds observations ``<= bounds[i]`` and above the previous bound; the last
    slot holds those above every bound (Prometheus ``le="+Inf"``).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Counts per bucket as Prometheus exposes them (each includes the lower ones)."""
        out: list[int] = []
        total = 0
        for n in self.counts:
            total += n
            out.append(total)
        return out


def prometheus_number(value: float) -> str:
    """A sample value or bucket bound as the text format writes it."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"  # the format's spelling (Python's repr says "nan")
    return repr(value)


def histogram_lines(name: str, labels: str, histogram: Histogram) -> list[str]:
    """The ``_bucket``/``_sum``/``_count`` sample lines of one histogram (``labels`` is the
    rendered ``a="x",b="y"`` text, possibly empty)."""
    sep = "," if labels else ""
    cumulative = histogram.cumulative()
    lines = [
        f'{name}_bucket{{{labels}{sep}le="{prometheus_number(float(bound))}"}} {count}'
        for bound, count in zip(histogram.bounds, cumulative, strict=False)
    ]
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {cumulative[-1]}')
    braces = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{braces} {prometheus_number(histogram.sum)}")
    lines.append(f"{name}_count{braces} {cumulative[-1]}")
    return lines
