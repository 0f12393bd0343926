"""What the control plane is doing, as data and as the text ``aeraki run`` shows.

:func:`collect` reads the pieces (config, snapshots, streams) into a frozen :class:`Status`;
:func:`render` turns it into lines. Keeping the two apart lets tests assert on data and the
CLI redraw the same text on a terminal or print it to a log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from aeraki.control.model import ConfigSnapshot, MatchKind, MetaRoute, Problem
from aeraki.control.xds import CLUSTER_TYPE, ENDPOINT_TYPE, ProxyStatus, Snapshot
from aeraki.control.xds.streams import TypeStatus

__all__ = [
    "ClusterTraffic",
    "ClusterView",
    "ProxyView",
    "PushRecord",
    "Status",
    "cluster_traffic",
    "collect",
    "connection_report",
    "render",
    "sync_state",
]


@dataclass(frozen=True, slots=True)
class PushRecord:
    """One debounced push: when (wall clock), how long, what changed."""

    at: float
    duration: float
    nodes: int  # node snapshots set (changed ones only)
    store_version: int


@dataclass(frozen=True, slots=True)
class ClusterView:
    name: str
    endpoints: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClusterTraffic:
    """What a local proxy sent to one cluster (``aeraki run`` shows it next to the cluster)."""

    requests: int
    active: int
    failures: int  # connect failures and timeouts, timed-out requests, breaker overflows


#: Cluster stats that count a failed request or connection attempt.
FAILURE_STATS = (
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_rq_timeout",
    "upstream_rq_pending_overflow",
)


def cluster_traffic(stats: Mapping[str, Mapping[str, int]]) -> dict[str, ClusterTraffic]:
    """Per cluster name, its counters (``Cluster.stats.snapshot()``) as traffic."""
    return {
        name: ClusterTraffic(
            s.get("upstream_rq_total", 0),
            s.get("upstream_rq_active", 0),
            sum(s.get(k, 0) for k in FAILURE_STATS),
        )
        for name, s in stats.items()
    }


@dataclass(frozen=True, slots=True)
class ProxyView:
    """A connected proxy: per type, the short name and acked/NACKed versions."""

    node_id: str
    node_key: str
    stream: str
    in_sync: bool
    types: tuple[tuple[str, str, str, str], ...]  # (type, acked, nack version, nack reason)


@dataclass(frozen=True, slots=True)
class Status:
    services: tuple[str, ...]
    routes: tuple[str, ...]
    clusters: tuple[ClusterView, ...]
    proxies: tuple[ProxyView, ...]
    last_push: PushRecord | None
    problems: tuple[str, ...]
    metrics: Mapping[str, float]
    #: per cluster, what the local proxy of ``aeraki run`` sent (empty for ``aeraki control``).
    traffic: Mapping[str, ClusterTraffic] = field(default_factory=dict)


def short_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.cluster.v3.Cluster`` → ``Cluster``."""
    return type_url.rsplit(".", 1)[-1]


def describe_services(config: ConfigSnapshot | None) -> tuple[str, ...]:
    if config is None:
        return ()
    out: list[str] = []
    for se in config.service_entries:
        host = se.spec.hosts[0] if se.spec.hosts else "?"
        ports = ", ".join(f"{p.number}/{p.name}" for p in se.spec.ports)
        out.append(f"{host} [{ports}] {len(se.spec.endpoints)} endpoint(s)")
    return tuple(out)


def _match_text(route: MetaRoute) -> str:
    if route.match is None or not route.match.attributes:
        return "*"
    parts = []
    for key, match in route.match.attributes.items():
        if match.kind is MatchKind.PRESENT:
            parts.append(f"{key} present")
        else:
            parts.append(f"{key} {match.kind.value} {match.value!r}")
    return " & ".join(parts)


def describe_routes(config: ConfigSnapshot | None) -> tuple[str, ...]:
    """Per MetaRouter: ``host: [name] match -> subset weight%, …`` (one line per route)."""
    if config is None:
        return ()
    out: list[str] = []
    for mr in config.meta_routers:
        host = mr.spec.hosts[0] if mr.spec.hosts else "?"
        if not mr.spec.routes:
            out.append(f"{host} ({mr.meta.namespace}/{mr.meta.name}): default route")
        for route in mr.spec.routes:
            dests = ", ".join(
                f"{d.destination.subset or '(all)'}"
                + (f" {d.weight}%" if len(route.route) > 1 else "")
                for d in route.route
            )
            extra = ""
            if route.mirror is not None:
                extra += f" mirror {route.mirror.subset or '(all)'}"
            if route.request_mutation:
                extra += " +" + ",".join(f"{kv.key}={kv.value}" for kv in route.request_mutation)
            out.append(
                f"{host} ({mr.meta.namespace}/{mr.meta.name}) [{route.name or '-'}] "
                f"{_match_text(route)} -> {dests}{extra}"
            )
    return tuple(out)


def describe_clusters(snapshots: Iterable[Snapshot]) -> tuple[ClusterView, ...]:
    """Clusters of every node snapshot (deduplicated by name) with their endpoints."""
    found: dict[str, ClusterView] = {}
    for snapshot in snapshots:
        assignments = snapshot.messages(ENDPOINT_TYPE)
        for name, msg in snapshot.messages(CLUSTER_TYPE).items():
            if name in found or not isinstance(msg, cluster_pb2.Cluster):
                continue
            cla = assignments.get(msg.eds_cluster_config.service_name or name)
            if cla is None and msg.HasField("load_assignment"):
                cla = msg.load_assignment
            found[name] = ClusterView(name, _endpoints(cla))
    return tuple(found[name] for name in sorted(found))


def _endpoints(cla: object) -> tuple[str, ...]:
    if not isinstance(cla, endpoint_pb2.ClusterLoadAssignment):
        return ()
    out = []
    for locality in cla.endpoints:
        for lb in locality.lb_endpoints:
            address = lb.endpoint.address.socket_address
            out.append(f"{address.address}:{address.port_value}")
    return tuple(out)


def describe_proxy(status: ProxyStatus, snapshot: Snapshot | None) -> ProxyView:
    types = []
    in_sync = snapshot is not None
    for type_url, ts in sorted(status.types.items()):
        types.append(
            (short_type(type_url), ts.acked_version, ts.last_nack_version, ts.last_nack_reason)
        )
        if snapshot is None or ts.acked_version != snapshot.version(type_url):
            in_sync = False
    return ProxyView(status.node_id, status.node_key, status.kind.value, in_sync, tuple(types))


def collect(
    *,
    config: ConfigSnapshot | None,
    snapshots: Mapping[str, Snapshot],
    proxies: Sequence[ProxyStatus],
    last_push: PushRecord | None,
    problems: Iterable[Problem | str],
    metrics: Mapping[str, float],
) -> Status:
    return Status(
        services=describe_services(config),
        routes=describe_routes(config),
        clusters=describe_clusters(snapshots.values()),
        proxies=tuple(describe_proxy(p, snapshots.get(p.node_key)) for p in proxies),
        last_push=last_push,
        problems=tuple(p if isinstance(p, str) else p.format() for p in problems),
        metrics=dict(metrics),
    )


def render(status: Status, *, now: float | None = None, title: str = "aeraki") -> list[str]:
    """The status as text lines (no terminal control codes)."""
    now = time.time() if now is None else now
    lines = [title, ""]
    lines.append(f"Services ({len(status.services)}):")
    lines.extend(f"  {s}" for s in status.services or ("none",))
    lines.append(f"Routes ({len(status.routes)}):")
    lines.extend(f"  {r}" for r in status.routes or ("none (default routes)",))
    lines.append(f"Clusters ({len(status.clusters)}):")
    for cluster in status.clusters:
        text = f"  {cluster.name}  {', '.join(cluster.endpoints) or 'no endpoints'}"
        traffic = status.traffic.get(cluster.name)
        if traffic is not None:
            text += f"  [rq {traffic.requests}, active {traffic.active}, failed {traffic.failures}]"
        lines.append(text)
    if not status.clusters:
        lines.append("  none")
    lines.append(f"Proxies ({len(status.proxies)}):")
    for proxy in status.proxies:
        sync = "in sync" if proxy.in_sync else "updating"
        lines.append(f"  {proxy.node_id} ({proxy.stream}, {sync})")
        for name, acked, nack_version, reason in proxy.types:
            text = f"    {name}: ACKed {acked or '-'}"
            if nack_version:
                text += f", NACKed {nack_version}: {reason}"
            lines.append(text)
    if not status.proxies:
        lines.append("  none connected")
    push = status.last_push
    if push is None:
        lines.append("Last push: none yet")
    else:
        ago = max(0.0, now - push.at)
        stamp = time.strftime("%H:%M:%S", time.localtime(push.at))
        lines.append(
            f"Last push: {stamp} ({ago:.0f}s ago), {push.duration * 1000:.1f} ms, "
            f"{push.nodes} node snapshot(s) changed"
        )
    lines.append(f"Problems ({len(status.problems)}):")
    lines.extend(f"  {p}" for p in status.problems or ("none",))
    return lines


def sync_state(ts: TypeStatus, snapshot: Snapshot | None) -> str:
    """Istio's ``syncz`` words for one type on one stream.

    ``SYNCED``: the proxy ACKed the version its snapshot holds now; ``NACKED``: it rejected the
    last version sent; ``STALE``: a newer version was sent (or is due) and not ACKed yet;
    ``NOT SENT``: nothing sent on this stream yet.
    """
    if not ts.sent_version:
        return "NOT SENT"
    if ts.last_nack_version and ts.last_nack_version == ts.sent_version:
        return "NACKED"
    if snapshot is not None and ts.acked_version == snapshot.version(ts.type_url):
        return "SYNCED"
    return "STALE"


def connection_report(
    proxies: Sequence[ProxyStatus], snapshots: Mapping[str, Snapshot], *, now: float
) -> list[dict[str, Any]]:
    """Every connected proxy with, per subscribed type, what was sent, ACKed and NACKed
    (``/debug/connections`` and ``/debug/syncz`` of the control plane's admin port)."""
    out: list[dict[str, Any]] = []
    for proxy in proxies:
        snapshot = snapshots.get(proxy.node_key)
        types = {}
        for type_url, ts in sorted(proxy.types.items()):
            types[short_type(type_url)] = {
                "type_url": type_url,
                "status": sync_state(ts, snapshot),
                "snapshot_version": snapshot.version(type_url) if snapshot is not None else "",
                "sent_version": ts.sent_version,
                "acked_version": ts.acked_version,
                "acks": ts.acks,
                "nacks": ts.nacks,
                "last_nack_version": ts.last_nack_version,
                "last_nack_reason": ts.last_nack_reason,
                "wildcard": ts.wildcard,
                "subscribed": list(ts.subscribed),
            }
        out.append(
            {
                "node_id": proxy.node_id,
                "node_cluster": proxy.node_cluster,
                "node_key": proxy.node_key,
                "stream_id": proxy.stream_id,
                "stream": proxy.kind.value,
                "peer": proxy.peer,
                "connected_seconds": round(max(0.0, now - proxy.connected_at), 3),
                "in_sync": describe_proxy(proxy, snapshot).in_sync,
                "types": types,
            }
        )
    return out
