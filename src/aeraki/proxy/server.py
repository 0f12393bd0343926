"""The proxy process: clusters, listeners and admin built from a :class:`ProxyConfig`.

``ProxyServer.run_until_signalled`` is what ``aeraki proxy`` runs: on SIGTERM or SIGINT it
stops accepting, lets requests in flight finish for up to the drain timeout, then closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.message import Message

from aeraki.admin_http import AdminHttpServer
from aeraki.proxy.admin import admin_actions, admin_routes
from aeraki.proxy.config import DiscoveryType, ListenerConfig, ProxyConfig
from aeraki.proxy.listener import Listener, ListenerRuntime
from aeraki.proxy.routing import RouteTable
from aeraki.proxy.upstream.cluster import Cluster, ClusterManager
from aeraki.signals import stop_on_signals

if TYPE_CHECKING:
    from aeraki.proxy.xds_client import XdsClient

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "ProxyServer"]

log = logging.getLogger(__name__)

#: Seconds requests in flight get to finish after SIGTERM (Envoy's --drain-time-s default
#: is 600; a mesh sidecar is usually given far less by its pod's grace period).
DEFAULT_DRAIN_TIMEOUT = 20.0


class ProxyServer:
    """One proxy worker."""

    def __init__(self, config: ProxyConfig, *, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT):
        self.config = config
        self.drain_timeout = drain_timeout
        self.clusters = ClusterManager(config.clusters)
        self.listeners = [Listener(self._runtime(c)) for c in config.listeners]
        self.static_listener_names = frozenset(c.name for c in config.listeners)
        #: route tables received over RDS, by route configuration name.
        self.routes: dict[str, RouteTable] = {}
        self.admin: AdminHttpServer | None = None
        self.xds: XdsClient | None = None
        self._ready = asyncio.Event()
        self.is_draining = False
        self._stopped = asyncio.Event()
        self._draining: set[asyncio.Task[bool]] = set()
        self._reuse_port = False

    def _runtime(self, listener: ListenerConfig) -> ListenerRuntime:
        """The runtime of ``listener``, knowing this proxy's node (for metadata exchange)."""
        node = self.config
        return ListenerRuntime(
            listener,
            self.clusters,
            node_id=node.node_id,
            node_metadata=node.node_metadata,
            tracing_provider=node.tracing_provider,
        )

    async def start(self, *, reuse_port: bool = False) -> None:
        """Resolve clusters, bind listeners and admin, start the xDS client if configured.

        Without ADS the proxy is ready when this returns; with ADS, once the first
        configuration from the control plane has been applied (``/ready`` says so).
        """
        self._reuse_port = reuse_port
        await self.clusters.start()
        for listener in self.listeners:
            await listener.start(reuse_port=reuse_port)
        if self.config.admin is not None:
            self.admin = AdminHttpServer(admin_routes(self), admin_actions(self))
            address = self.config.admin.address
            await self.admin.start(address.host, address.port)
        if self.config.ads is not None:
            from aeraki.proxy.xds_client import XdsClient

            self.xds = XdsClient(self, self.config.ads)
            self.xds.start()
        else:
            self.is_ready = True

    @property
    def is_ready(self) -> bool:
        """Whether the proxy serves its configuration (``/ready`` answers LIVE)."""
        return self._ready.is_set()

    @is_ready.setter
    def is_ready(self, value: bool) -> None:
        if value:
            self._ready.set()
        else:
            self._ready.clear()

    async def wait_ready(self) -> None:
        """Return once the proxy is ready (with ADS: the first configuration applied)."""
        await self._ready.wait()

    # -- dynamic configuration (applied by the xDS client) ------------------------------
    async def apply_listeners(self, configs: Sequence[ListenerConfig]) -> list[str]:
        """Make the dynamic listeners exactly ``configs`` (an LDS state of the world).

        A new listener binds; a removed one stops accepting and drains in the background; a
        changed one is replaced the same way, except that a change of its static routes
        alone swaps the route table in place (open connections keep going). Returns
        problems (e.g. an address that cannot be bound), for a NACK.
        """
        problems: list[str] = []
        wanted = {c.name: c for c in configs if c.name not in self.static_listener_names}
        current = {listener.runtime.name: listener for listener in self.listeners}
        for name, listener in current.items():
            if name not in self.static_listener_names and name not in wanted:
                self._retire_listener(listener)
        for name, config in wanted.items():
            old = current.get(name)
            if old is not None and old.runtime.config == config:
                continue
            if old is not None and _only_routes_differ(old.runtime.config, config):
                table = config.proxy.route_table
                old.runtime.config = config
                old.runtime.set_route_table(RouteTable.compile(table) if table else None)
                continue
            if old is not None:
                self._retire_listener(old)
            listener = Listener(self._runtime(config))
            self._attach_routes(listener.runtime)
            try:
                await listener.start(reuse_port=self._reuse_port)
            except OSError as exc:
                problems.append(f"listener {name}: cannot listen on {config.address}: {exc}")
                continue
            self.listeners.append(listener)
        return problems

    def _retire_listener(self, listener: Listener) -> None:
        listener.stop_accepting()
        self.listeners.remove(listener)
        task = asyncio.get_running_loop().create_task(listener.runtime.drain(self.drain_timeout))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def apply_route_table(self, name: str, table: RouteTable) -> int:
        """Install routes received for RDS ``name``; how many listeners use them."""
        self.routes[name] = table
        count = 0
        for listener in self.listeners:
            if listener.runtime.config.proxy.rds_name == name:
                listener.runtime.set_route_table(table)
                count += 1
        return count

    def _attach_routes(self, runtime: ListenerRuntime) -> None:
        rds_name = runtime.config.proxy.rds_name
        if rds_name and rds_name in self.routes:
            runtime.set_route_table(self.routes[rds_name])

    @property
    def rds_names(self) -> set[str]:
        """RDS route configuration names the listeners need."""
        names = {listener.runtime.config.proxy.rds_name for listener in self.listeners}
        names.discard("")
        return names

    def listener(self, name: str) -> Listener:
        """The listener called ``name``.

        Raises:
            KeyError: no such listener.
        """
        for listener in self.listeners:
            if listener.runtime.name == name:
                return listener
        raise KeyError(name)

    async def shutdown(self) -> bool:
        """Stop accepting, drain, close everything; ``True`` if the drain completed."""
        if self.is_draining:
            await self._stopped.wait()
            return True
        self.is_draining = True
        self.is_ready = False
        if self.xds is not None:
            await self.xds.stop()
        for listener in self.listeners:
            listener.stop_accepting()
        results = await asyncio.gather(
            *(listener.runtime.drain(self.drain_timeout) for listener in self.listeners)
        )
        for task in list(self._draining):
            task.cancel()
        self.clusters.close()
        if self.admin is not None:
            self.admin.close()
        self._stopped.set()
        return all(results)

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        with stop_on_signals() as stop:
            await self.start()
            log.info(
                "proxy ready: %d listener(s), %d cluster(s)",
                len(self.listeners),
                len(self.clusters.clusters),
            )
            await stop.wait()
            log.info("signal received: draining for up to %.1fs", self.drain_timeout)
            clean = await self.shutdown()
        log.info("proxy stopped (%s)", "drained" if clean else "drain timeout")

    def stats(self) -> dict[str, int]:
        """Every stat, by its full Envoy-style name."""
        out: dict[str, int] = {}
        named_in_full: dict[str, int] = {}
        for listener in self.listeners:
            runtime = listener.runtime
            proxy = runtime.config.proxy
            prefix = f"meta_protocol.{runtime.application_protocol}.{proxy.stat_prefix}."
            for name, value in runtime.stats.snapshot().items():
                out[prefix + name] = value
            # Envoy keeps one counter per name: listeners sharing a filter stat_prefix add up.
            for name, value in runtime.stats.full_snapshot().items():
                named_in_full[name] = named_in_full.get(name, 0) + value
        out.update(named_in_full)
        for cluster in self.clusters.clusters.values():
            for name, value in cluster.stats.snapshot().items():
                out[f"cluster.{cluster.name}.{name}"] = value
        return out

    def config_dump(self) -> dict[str, Any]:
        """The configuration in force, as JSON-ready data: the bootstrap, then what is live
        now (listeners and clusters, static or from xDS; route tables from RDS; the xDS
        client's versions and last rejection). Each live resource carries ``version_info``:
        ``static`` for the bootstrap's, else the xDS version it was last ACKed at (with delta
        xDS the resource's own version, else its type's); every route carries its full
        action (cluster or weights, hash policy, mirrors, mutations, timeout, retry policy,
        fault)."""
        versions = _XdsVersions(self.xds.state() if self.xds is not None else None)
        dump: dict[str, Any] = {
            "bootstrap": _plain(dataclasses.asdict(self.config)),
            "listeners": [self._listener_dump(item.runtime, versions) for item in self.listeners],
            "clusters": [
                self._cluster_dump(cluster, versions) for cluster in self.clusters.clusters.values()
            ],
            "rds_routes": {name: _route_table(table) for name, table in self.routes.items()},
            "rds_versions": {name: versions.of("RouteConfiguration", name) for name in self.routes},
        }
        if self.xds is not None:
            dump["xds"] = versions.state
        return dump

    def _listener_dump(self, runtime: ListenerRuntime, versions: _XdsVersions) -> dict[str, Any]:
        static = runtime.name in self.static_listener_names
        version = "static" if static else versions.of("Listener", runtime.name)
        dumped: dict[str, Any] = _plain(dataclasses.asdict(runtime.config))
        return dumped | {"version_info": version}

    def _cluster_dump(self, cluster: Cluster, versions: _XdsVersions) -> dict[str, Any]:
        config = cluster.config
        static = any(c.name == cluster.name for c in self.config.clusters)
        eds = config.discovery is DiscoveryType.EDS
        dumped: dict[str, Any] = _plain(dataclasses.asdict(config))
        return dumped | {
            "hosts": [host.key for host in cluster.hosts],
            "version_info": "static" if static else versions.of("Cluster", cluster.name),
            # the version the hosts came with ("" for a cluster not fed by EDS)
            "endpoints_version_info": versions.of("ClusterLoadAssignment", config.eds_name)
            if eds
            else "",
        }


class _XdsVersions:
    """The version each xDS resource was ACKed at, from the xDS client's state."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state or {}
        #: short type name (``Listener``, ``Cluster``, ...) -> that type's state
        self.types: dict[str, dict[str, Any]] = {
            url.rsplit(".", 1)[-1]: entry for url, entry in self.state.get("types", {}).items()
        }

    def of(self, kind: str, name: str) -> str:
        """``name``'s own version (delta xDS), else its type's, else "" (never received)."""
        entry = self.types.get(kind)
        if entry is None:
            return ""
        own = entry.get("resource_versions", {}).get(name)
        return str(own) if own is not None else str(entry["version"])


def _route_table(table: RouteTable) -> list[dict[str, Any]]:
    """A compiled table as the config it came from (every field of :class:`RouteConfig`)."""
    return [_plain(dataclasses.asdict(route.config)) for route in table.routes]


def _only_routes_differ(old: ListenerConfig, new: ListenerConfig) -> bool:
    """Whether ``new`` equals ``old`` but for the static route table."""
    if old.proxy.route_table is None or new.proxy.route_table is None:
        return False
    return dataclasses.replace(old, proxy=dataclasses.replace(old.proxy, route_table=None)) == (
        dataclasses.replace(new, proxy=dataclasses.replace(new.proxy, route_table=None))
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return json_format.MessageToDict(value)
    if isinstance(value, enum.Flag):  # e.g. retry_on: the names, not a bit mask
        return [member.name.lower() for member in type(value) if member in value and member.name]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)
