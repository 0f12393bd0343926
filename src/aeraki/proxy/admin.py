"""The proxy's admin pages: ``/ready``, ``/config_dump``, ``/stats``, ``/clusters``.

Served by :class:`aeraki.admin_http.AdminHttpServer` on ``admin.address``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from aeraki.admin_http import Handler, Response
from aeraki.proxy.upstream.outlier import HostMonitor

if TYPE_CHECKING:
    from aeraki.proxy.server import ProxyServer

__all__ = ["admin_routes"]


def _ready(proxy: ProxyServer) -> Response:
    if proxy.is_ready:
        return 200, "text/plain", "LIVE\n"
    return 503, "text/plain", "PRE_INITIALIZING\n" if not proxy.is_draining else "DRAINING\n"


def _config_dump(proxy: ProxyServer) -> Response:
    return 200, "application/json", json.dumps(proxy.config_dump(), indent=2) + "\n"


def _stats(proxy: ProxyServer) -> Response:
    lines = [f"{name}: {value}" for name, value in sorted(proxy.stats().items())]
    return 200, "text/plain", "\n".join(lines) + "\n"


def _stats_json(proxy: ProxyServer) -> Response:
    return 200, "application/json", json.dumps(proxy.stats(), indent=2, sort_keys=True) + "\n"


def _clusters(proxy: ProxyServer) -> Response:
    lines = []
    for cluster in proxy.clusters.clusters.values():
        for host in cluster.hosts:
            prefix = f"{cluster.name}::{host.key}"
            lines.append(f"{prefix}::health_flags::{host.health_flags}")
            monitor = host.monitor
            if isinstance(monitor, HostMonitor):
                lines.append(f"{prefix}::outlier_ejections::{monitor.ejections}")
            lines.append(f"{prefix}::weight::{host.weight}")
            lines.append(f"{prefix}::rq_active::{host.active_requests}")
    return 200, "text/plain", "\n".join(lines) + "\n"


def admin_routes(proxy: ProxyServer) -> dict[str, Handler]:
    """The proxy's admin pages, bound to ``proxy``."""
    pages: dict[str, Callable[[ProxyServer], Response]] = {
        "/ready": _ready,
        "/config_dump": _config_dump,
        "/stats": _stats,
        "/stats?format=json": _stats_json,
        "/clusters": _clusters,
    }
    return {path: functools.partial(page, proxy) for path, page in pages.items()}
