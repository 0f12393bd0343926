"""The control plane's admin pages: ``/ready``, ``/metrics``, ``/status``.

``/ready`` answers 200 once every config source has delivered its first complete view and
the configuration was built from it (so a replica never serves an empty configuration);
``/metrics`` is the Prometheus text exposition of :data:`~aeraki.control.push.CONTROL_METRICS`
and the xDS server's counters; ``/status`` is the same view ``aeraki run`` shows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from aeraki.admin_http import Handler, Response
from aeraki.control.push import CONTROL_METRICS
from aeraki.control.status import render

if TYPE_CHECKING:
    from aeraki.control.runtime import ControlPlane

__all__ = ["METRIC_PREFIX", "admin_routes", "prometheus_text"]

#: Every control-plane metric is exported as ``aeraki_control_<name>``.
METRIC_PREFIX = "aeraki_control_"

_XDS_HELP = {
    "streams_total": "ADS streams opened.",
    "requests_total": "Discovery requests received.",
    "responses_total": "Discovery responses sent.",
    "acks_total": "Responses acknowledged by proxies.",
    "nacks_total": "Responses rejected by proxies.",
    "stale_total": "Requests carrying a stale nonce (ignored).",
}


def prometheus_text(plane: ControlPlane) -> str:
    """The metrics in the Prometheus text format (version 0.0.4)."""
    lines: list[str] = []
    for spec in CONTROL_METRICS:
        name = METRIC_PREFIX + spec.name
        lines += [f"# HELP {name} {spec.help}", f"# TYPE {name} {spec.kind}"]
        lines.append(f"{name} {getattr(plane.metrics, spec.name)}")
    stats = dataclasses.asdict(plane.server.stats)
    for field, value in stats.items():
        name = f"{METRIC_PREFIX}xds_{field}"
        lines += [f"# HELP {name} {_XDS_HELP.get(field, field)}", f"# TYPE {name} counter"]
        lines.append(f"{name} {value}")
    return "\n".join(lines) + "\n"


def _ready(plane: ControlPlane) -> Response:
    if plane.is_synced and plane.config is not None:
        return 200, "text/plain", "LIVE\n"
    return 503, "text/plain", "SYNCING: waiting for the first complete view of the config\n"


def _metrics(plane: ControlPlane) -> Response:
    return 200, "text/plain; version=0.0.4", prometheus_text(plane)


def _status(plane: ControlPlane) -> Response:
    return 200, "text/plain", "\n".join(render(plane.status())) + "\n"


def admin_routes(plane: ControlPlane) -> dict[str, Handler]:
    """The control plane's admin pages, bound to ``plane``."""
    return {
        "/ready": functools.partial(_ready, plane),
        "/metrics": functools.partial(_metrics, plane),
        "/status": functools.partial(_status, plane),
    }
