"""How every statistic of both planes is declared: once, with its kind and help text.

The proxy declares its stats in :mod:`aeraki.proxy.stats`, the control plane in
:mod:`aeraki.control.push`; exporters (admin ``/stats``, ``/metrics``) read those lists, so a
metric cannot be exported without a declaration (style anchors §9 rule 11).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MetricSpec"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One declared metric."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
