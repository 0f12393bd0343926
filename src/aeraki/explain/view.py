"""The configuration ``aeraki explain`` reasons about, from wherever it lives.

A :class:`ConfigView` is what a proxy holds once configured: listeners, clusters with their
endpoints, and route tables (static in a listener, or by RDS name). It is built the same way
the proxy builds its own, so the explanation is of the proxy's behaviour, not of a model:

* a bootstrap file: :func:`~aeraki.proxy.bootstrap.load_bootstrap`;
* a manifest directory: the control plane's loader and translator for one node, then the
  proxy's xDS conversion (:mod:`aeraki.proxy.xds_apply`) of the resources it would be sent;
* a running proxy: its admin ``/config_dump`` and ``/clusters?format=json``
  (:mod:`aeraki.explain.dump`), i.e. what that proxy has in force now, health included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aeraki.errors import ConfigError
from aeraki.proxy.config import ClusterConfig, EndpointConfig, ListenerConfig
from aeraki.proxy.routing import RouteTable
from aeraki.proxy.upstream.host import Host

if TYPE_CHECKING:
    from aeraki.control.translate import TranslateOptions

__all__ = ["ConfigView", "from_bootstrap", "from_manifests"]

#: Node id used to translate a manifest directory (no metadata: every visible service).
EXPLAIN_NODE_ID = "aeraki-explain"


@dataclass(frozen=True)
class ConfigView:
    """A proxy's configuration: what ``explain`` matches a request against.

    ``endpoints`` holds EDS assignments by service name; ``health`` the health flags a live
    proxy reports for its unhealthy hosts, by ``cluster/address`` (Envoy's notation,
    ``/failed_outlier_check``): load balancers skip those hosts, as the proxy's do.
    ``node_id`` and ``node_metadata`` are the proxy's node (``metadata_exchange`` sends
    them); ``live`` says the view is a running proxy's (its rate limit buckets have been
    used, and their tokens are not in the view).
    """

    source: str
    listeners: tuple[ListenerConfig, ...]
    clusters: Mapping[str, ClusterConfig]
    routes: Mapping[str, RouteTable] = field(default_factory=dict)
    endpoints: Mapping[str, tuple[EndpointConfig, ...]] = field(default_factory=dict)
    health: Mapping[str, str] = field(default_factory=dict)
    node_id: str = ""
    node_metadata: Mapping[str, Any] = field(default_factory=dict)
    live: bool = False

    def route_table(self, listener: ListenerConfig) -> RouteTable | None:
        """The listener's static table, or the RDS table it names (``None`` if not held)."""
        proxy = listener.proxy
        if proxy.route_table is not None:
            return RouteTable.compile(proxy.route_table)
        return self.routes.get(proxy.rds_name)

    def endpoints_of(self, cluster: ClusterConfig) -> tuple[EndpointConfig, ...]:
        """Static endpoints, else the EDS assignment (by service name, else cluster name)."""
        if cluster.endpoints:
            return cluster.endpoints
        return self.endpoints.get(cluster.eds_service_name or cluster.name, ())

    def hosts_of(self, cluster: ClusterConfig) -> list[Host]:
        """The cluster's hosts as its load balancer would get them, health flags included."""
        hosts = []
        for e in self.endpoints_of(cluster):
            host = Host(
                e.address,
                weight=e.weight,
                metadata=e.metadata,
                locality=e.locality,
                priority=e.priority,
                locality_weight=e.locality_weight,
            )
            flags = self.health.get(f"{cluster.name}/{host.key}", "")
            host.set_failed_active_hc("failed_active_hc" in flags)
            host.set_failed_outlier_check("failed_outlier_check" in flags or flags == "/failed")
            hosts.append(host)
        return hosts

    def only(self, name: str | None) -> ConfigView:
        """The view restricted to listener ``name`` (all when ``None``).

        Raises:
            ConfigError: no such listener (the message lists those there are).
        """
        if name is None:
            return self
        chosen = tuple(item for item in self.listeners if item.name == name)
        if not chosen:
            names = ", ".join(item.name for item in self.listeners) or "none"
            raise ConfigError("--listener", f"no listener {name!r} in {self.source} ({names})")
        return dataclasses.replace(self, listeners=chosen)


def from_bootstrap(path: str) -> ConfigView:
    """A bootstrap file's static configuration.

    Raises:
        ConfigErrors: the file cannot be read or is invalid.
    """
    from aeraki.proxy.bootstrap import load_bootstrap

    config = load_bootstrap(path)
    clusters = {c.name: c for c in config.clusters}
    return ConfigView(
        path,
        config.listeners,
        clusters,
        node_id=config.node_id,
        node_metadata=config.node_metadata,
    )


def from_manifests(
    paths: list[str],
    node_id: str = EXPLAIN_NODE_ID,
    node_metadata: Mapping[str, str] | None = None,
    options: TranslateOptions | None = None,
) -> ConfigView:
    """What the control plane would send node ``node_id`` for these manifests, the node's
    metadata (``NAMESPACE``, ``SERVICES``, ``BIND_ADDRESS``, ...) scoping it as it would;
    ``options`` are the control plane's (default: its defaults).

    Raises:
        ConfigError: the manifests have errors (each listed with file and line), or a
            translated resource is one the proxy would reject.
    """
    from google.protobuf import any_pb2

    from aeraki.control.translate import NodeInfo, TranslateOptions, translate
    from aeraki.control.validation import format_problems, load_config
    from aeraki.proxy import xds_apply

    config = load_config(paths)
    if config.has_errors:
        raise ConfigError(
            ", ".join(paths), "invalid manifests:\n" + format_problems(config.problems)
        )
    node = NodeInfo(id=node_id, metadata=dict(node_metadata or {}))
    translation = translate(config, node, options or TranslateOptions())
    by_type: dict[str, list[any_pb2.Any]] = {}
    for message in translation.resources:
        packed = any_pb2.Any()
        packed.Pack(message)
        by_type.setdefault(message.DESCRIPTOR.name, []).append(packed)
    clusters = xds_apply.clusters_from_resources(by_type.get("Cluster", []))
    endpoints = dict(
        xds_apply.endpoints_from_resource(r) for r in by_type.get("ClusterLoadAssignment", [])
    )
    routes = dict(
        xds_apply.route_table_from_resource(r) for r in by_type.get("RouteConfiguration", [])
    )
    return ConfigView(
        f"{', '.join(paths)} (translated for node {node_id!r})",
        tuple(xds_apply.listeners_from_resources(by_type.get("Listener", []))),
        {c.name: c for c in clusters},
        routes,
        endpoints,
        node_id=node_id,
        node_metadata=node.metadata,
    )
