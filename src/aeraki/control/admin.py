"""The control plane's admin pages: ``/ready``, ``/metrics``, ``/status``, ``/debug/…``,
``/logging`` (and ``POST /logging?level=…``, as the proxy's).

``/ready`` answers 200 once every config source has delivered its first complete view and
the configuration was built from it (so a replica never serves an empty configuration);
``/metrics`` is the Prometheus text exposition of :data:`~aeraki.control.push.CONTROL_METRICS`
and the xDS server's counters; ``/status`` is the same view ``aeraki run`` shows.
``/debug/connections`` (JSON) lists every connected proxy and, per resource type, the version
sent, ACKed and last NACKed with its reason; ``/debug/syncz`` is the same as one line per
proxy and type, in the words of Istio's ``syncz`` (SYNCED, STALE, NACKED, NOT SENT), to answer
"did my change reach that proxy, and if not why" without reading a log.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import TYPE_CHECKING, Any

from aeraki.admin_http import Action, Handler, Response
from aeraki.admin_logging import logging_get, logging_post
from aeraki.control.push import CONTROL_HISTOGRAMS, CONTROL_METRICS
from aeraki.control.status import connection_report, render
from aeraki.metrics import histogram_lines

if TYPE_CHECKING:
    from aeraki.control.runtime import ControlPlane

__all__ = ["METRIC_PREFIX", "admin_actions", "admin_routes", "prometheus_text"]

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
    for spec in CONTROL_HISTOGRAMS:
        name = METRIC_PREFIX + spec.name
        lines += [f"# HELP {name} {spec.help}", f"# TYPE {name} {spec.kind}"]
        lines += histogram_lines(name, "", getattr(plane.metrics, spec.name))
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


def _status_json(plane: ControlPlane) -> Response:
    status = dataclasses.asdict(plane.status())
    return 200, "application/json", json.dumps(status, indent=2) + "\n"


def _report(plane: ControlPlane) -> list[dict[str, Any]]:
    cache = plane.cache
    snapshots = {k: s for k in cache.keys() if (s := cache.get_snapshot(k))}  # noqa: SIM118
    return connection_report(plane.server.proxies(), snapshots, now=time.time())


def _connections(plane: ControlPlane) -> Response:
    report = {"proxies": _report(plane), "last_push": _last_push(plane)}
    return 200, "application/json", json.dumps(report, indent=2) + "\n"


def _last_push(plane: ControlPlane) -> dict[str, Any] | None:
    push = plane.last_push
    return None if push is None else dataclasses.asdict(push)


def _syncz(plane: ControlPlane) -> Response:
    lines = []
    for proxy in _report(plane):
        for name, t in proxy["types"].items():
            line = (
                f"{proxy['node_id']} {proxy['stream']} {name} {t['status']} "
                f"sent={t['sent_version'] or '-'} acked={t['acked_version'] or '-'}"
            )
            if t["last_nack_version"]:
                line += f" nacked={t['last_nack_version']}: {t['last_nack_reason']}"
            lines.append(line)
    return 200, "text/plain", "\n".join(lines or ["no proxy connected"]) + "\n"


def admin_routes(plane: ControlPlane) -> dict[str, Handler]:
    """The control plane's admin pages, bound to ``plane``."""
    return {
        "/ready": functools.partial(_ready, plane),
        "/metrics": functools.partial(_metrics, plane),
        "/status": functools.partial(_status, plane),
        "/status?format=json": functools.partial(_status_json, plane),
        "/debug/connections": functools.partial(_connections, plane),
        "/debug/syncz": functools.partial(_syncz, plane),
        "/logging": logging_get,
    }


def admin_actions(plane: ControlPlane) -> dict[str, Action]:
    """The control plane's POST actions: runtime log levels, as the proxy's admin has."""
    del plane  # logging is process-wide
    return {"/logging": logging_post}
