"""The proxy's admin pages: ``/ready``, ``/config_dump``, ``/stats``, ``/stats/prometheus``,
``/clusters``, ``/logging``; and the one action, ``POST /logging``.

Served by :class:`aeraki.admin_http.AdminHttpServer` on ``admin.address``. Paths, formats and
the logging action follow Envoy's admin API, so the operator's habits (and scripts) carry
over: ``/clusters`` prints ``cluster::host::stat::value`` lines, ``POST /logging?level=debug``
sets every logger, ``POST /logging?proxy.xds_client=debug`` one of them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aeraki.admin_http import Action, Handler, Response
from aeraki.admin_logging import logging_get, logging_post
from aeraki.proxy.observe import prometheus
from aeraki.proxy.upstream.cluster import Cluster
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.outlier import HostMonitor

if TYPE_CHECKING:
    from aeraki.proxy.server import ProxyServer

__all__ = ["admin_actions", "admin_routes", "cluster_status", "clusters_text", "host_status"]


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


def host_status(cluster: Cluster, host: Host) -> dict[str, Any]:
    """One host as ``/clusters`` shows it: placement, health, ejections, live load."""
    monitor = host.monitor
    connections = sum(len(p.connections) for p in cluster.pools if p.host is host)
    return {
        "address": host.key,
        "weight": host.weight,
        "priority": host.priority,
        "region": host.locality.region,
        "zone": host.locality.zone,
        "sub_zone": host.locality.sub_zone,
        "health_flags": host.health_flags,
        "outlier_ejections": monitor.ejections if isinstance(monitor, HostMonitor) else 0,
        "cx_active": connections,
        "rq_active": host.active_requests,
    }


def cluster_status(cluster: Cluster) -> dict[str, Any]:
    """One cluster as ``/clusters?format=json`` shows it (Envoy's ``cluster_statuses``)."""
    breakers = cluster.config.circuit_breakers
    return {
        "name": cluster.name,
        "lb_policy": cluster.config.lb_policy.value,
        "in_panic": cluster.lb.in_panic,
        "circuit_breakers": {
            "max_connections": breakers.max_connections,
            "max_pending_requests": breakers.max_pending_requests,
            "max_requests": breakers.max_requests,
            "max_retries": breakers.max_retries,
        },
        "stats": cluster.stats.snapshot(),
        "host_statuses": [host_status(cluster, host) for host in cluster.hosts],
    }


def _stats_prometheus(proxy: ProxyServer) -> Response:
    return 200, prometheus.CONTENT_TYPE, prometheus.render(proxy)


def clusters_text(statuses: Iterable[Mapping[str, Any]]) -> str:
    """``/clusters`` in Envoy's text form, from :func:`cluster_status` dicts (of this process,
    or merged over several workers)."""
    lines = []
    for status in statuses:
        name = status["name"]
        for key, value in status["circuit_breakers"].items():
            lines.append(f"{name}::default_priority::{key}::{value}")
        lines.append(f"{name}::in_panic::{str(status['in_panic']).lower()}")
        for host in status["host_statuses"]:
            prefix = f"{name}::{host['address']}"
            lines.extend(f"{prefix}::{k}::{v}" for k, v in host.items() if k != "address")
    return "\n".join(lines) + "\n"


def _clusters(proxy: ProxyServer) -> Response:
    statuses = [cluster_status(c) for c in proxy.clusters.clusters.values()]
    return 200, "text/plain", clusters_text(statuses)


def _clusters_json(proxy: ProxyServer) -> Response:
    statuses = [cluster_status(c) for c in proxy.clusters.clusters.values()]
    return 200, "application/json", json.dumps({"cluster_statuses": statuses}, indent=2) + "\n"


def admin_routes(proxy: ProxyServer) -> dict[str, Handler]:
    """The proxy's admin pages, bound to ``proxy``."""
    pages: dict[str, Callable[[ProxyServer], Response]] = {
        "/ready": _ready,
        "/config_dump": _config_dump,
        "/stats": _stats,
        "/stats?format=json": _stats_json,
        "/stats/prometheus": _stats_prometheus,
        "/clusters": _clusters,
        "/clusters?format=json": _clusters_json,
    }
    routes: dict[str, Handler] = {
        path: functools.partial(page, proxy) for path, page in pages.items()
    }
    routes["/logging"] = logging_get
    return routes


def admin_actions(proxy: ProxyServer) -> dict[str, Action]:
    """The proxy's POST actions (Envoy's ``/logging``)."""
    del proxy  # logging is process-wide; the signature matches admin_routes for symmetry
    return {"/logging": logging_post}
