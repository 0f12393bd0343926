"""Clusters: named sets of hosts with a load balancer and per-host connection pools.

STRICT_DNS clusters resolve their endpoint names in the background and swap the host set
when the answer changes; requests never wait for DNS.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable, Sequence

from aeraki.codec.api import Codec
from aeraki.proxy.config import ClusterConfig, DiscoveryType, EndpointConfig, SocketAddress
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.health_check import ClusterHealth
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb import LoadBalancer, create_load_balancer
from aeraki.proxy.upstream.limits import ClusterLimits
from aeraki.proxy.upstream.pool import HostPool

__all__ = ["Cluster", "ClusterManager"]

log = logging.getLogger(__name__)


class Cluster:
    """One upstream cluster."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.name = config.name
        self.stats = ClusterStats()
        #: circuit breakers, shared by every pool of the cluster.
        self.limits = ClusterLimits(config.circuit_breakers, self.stats)
        #: outlier detection and active health checks (inert when not configured).
        self.health = ClusterHealth(config, self.stats, self._on_health_changed)
        self.hosts: list[Host] = []
        self.lb: LoadBalancer = create_load_balancer(config, [])
        self._pools: dict[tuple[type[Codec], bool, str], HostPool] = {}
        self._dns_task: asyncio.Task[None] | None = None
        if config.discovery is DiscoveryType.STATIC:
            self.set_hosts(_hosts_of(config.endpoints))

    def set_hosts(self, hosts: Sequence[Host]) -> None:
        """Replace the host set; pools of hosts that left are closed.

        A host that stays keeps its object (health, counters, pools) but takes the new
        weight and placement (locality, priority): an EDS update may move it.
        """
        kept = {host.key: host for host in self.hosts}
        merged = [_keep(kept.get(host.key), host) for host in hosts]
        self.hosts = merged
        self.health.set_hosts(merged)
        self.lb = create_load_balancer(self.config, merged)
        live = {host.key for host in merged}
        for key, pool in list(self._pools.items()):
            if key[2] not in live:
                pool.close()
                del self._pools[key]

    def pool_for(self, host: Host, codec_cls: type[Codec], *, multiplexed: bool) -> HostPool:
        """The pool of ``host`` for one codec and mode (created on first use)."""
        key = (codec_cls, multiplexed, host.key)
        pool = self._pools.get(key)
        if pool is None:
            pool = HostPool(
                host,
                codec_cls,
                self.stats,
                multiplexed=multiplexed,
                connect_timeout=self.config.connect_timeout,
                limits=self.limits,
            )
            self._pools[key] = pool
        return pool

    def _on_health_changed(self) -> None:
        """A host was ejected, re-admitted or flipped by a health check: rebuild the
        balancer's targets (``choose`` never re-reads health)."""
        self.lb.update()

    @property
    def pools(self) -> list[HostPool]:
        """Every pool of this cluster (for the admin page)."""
        return list(self._pools.values())

    def start(self, *, resolve_now: bool = False) -> None:
        """Begin background work (DNS resolution for STRICT_DNS clusters); ``resolve_now``
        when nobody resolved the names yet (a cluster that arrived over CDS)."""
        self.health.start()
        if self.config.discovery is DiscoveryType.STRICT_DNS and self._dns_task is None:
            loop = asyncio.get_running_loop()
            self._dns_task = loop.create_task(self._resolve_forever(resolve_now))

    async def resolve_once(self) -> None:
        """Resolve every endpoint name now and apply the result."""
        loop = asyncio.get_running_loop()
        hosts: list[Host] = []
        for endpoint in self.config.endpoints:
            address = endpoint.address
            try:
                infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("cluster %s: cannot resolve %s: %s", self.name, address.host, exc)
                continue
            seen: set[str] = set()
            for info in infos:
                ip = str(info[4][0])
                if ip not in seen:
                    seen.add(ip)
                    hosts.append(_host_of(endpoint, SocketAddress(ip, address.port)))
        if [h.key for h in hosts] != [h.key for h in self.hosts]:
            self.set_hosts(hosts)

    async def _resolve_forever(self, resolve_now: bool) -> None:
        if resolve_now:
            await self.resolve_once()
        while True:
            await asyncio.sleep(self.config.dns_refresh_rate)
            await self.resolve_once()

    def retire(self) -> None:
        """The cluster was removed or replaced: stop background work, let every pool finish
        the exchanges in flight and close its connections after them."""
        self.health.stop()
        if self._dns_task is not None:
            self._dns_task.cancel()
            self._dns_task = None
        for pool in self._pools.values():
            pool.retire()

    def close(self) -> None:
        """Stop background work and close every upstream connection."""
        self.health.stop()
        if self._dns_task is not None:
            self._dns_task.cancel()
            self._dns_task = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def __repr__(self) -> str:
        return f"<Cluster {self.name} hosts={len(self.hosts)} pools={len(self._pools)}>"


def _keep(old: Host | None, new: Host) -> Host:
    if old is None:
        return new
    old.weight = new.weight
    old.metadata = new.metadata
    old.locality = new.locality
    old.priority = new.priority
    old.locality_weight = new.locality_weight
    return old


def _host_of(e: EndpointConfig, address: SocketAddress | None = None) -> Host:
    """A host for endpoint ``e`` (at ``address``, a resolved address of ``e``, if given)."""
    return Host(
        address or e.address,
        weight=e.weight,
        metadata=e.metadata,
        locality=e.locality,
        priority=e.priority,
        locality_weight=e.locality_weight,
    )


def _hosts_of(endpoints: Iterable[EndpointConfig]) -> list[Host]:
    return [_host_of(e) for e in endpoints]


class ClusterManager:
    """Clusters by name; the router asks it for the cluster a route names.

    Clusters from the bootstrap are static; CDS manages the others (:meth:`apply_dynamic`)
    and cannot replace a static one, as in Envoy.
    """

    def __init__(self, configs: Iterable[ClusterConfig] = ()) -> None:
        self.clusters: dict[str, Cluster] = {}
        for config in configs:
            self.clusters[config.name] = Cluster(config)
        self.static_names = frozenset(self.clusters)
        #: EDS resource name -> endpoints last received (kept across cluster replacement).
        self.assignments: dict[str, tuple[EndpointConfig, ...]] = {}

    def apply_dynamic(self, configs: Iterable[ClusterConfig]) -> list[str]:
        """Make the dynamic clusters exactly ``configs`` (a CDS state of the world).

        New clusters are added, changed ones replaced (the old one retires: idle connections
        close now, busy ones after their exchange), missing ones removed. Returns the names
        of clusters that were ignored because a static cluster has that name.
        """
        ignored: list[str] = []
        wanted: dict[str, ClusterConfig] = {}
        for config in configs:
            if config.name in self.static_names:
                ignored.append(config.name)
            else:
                wanted[config.name] = config
        for name in [n for n in self.clusters if n not in self.static_names and n not in wanted]:
            self.clusters.pop(name).retire()
        for name, config in wanted.items():
            current = self.clusters.get(name)
            if current is not None and current.config == config:
                continue
            cluster = Cluster(config)
            if config.discovery is DiscoveryType.EDS and config.eds_name in self.assignments:
                cluster.set_hosts(_hosts_of(self.assignments[config.eds_name]))
            self.clusters[name] = cluster
            if current is not None:
                current.retire()
            cluster.start(resolve_now=True)
        return ignored

    def apply_assignment(self, eds_name: str, endpoints: tuple[EndpointConfig, ...]) -> int:
        """New endpoints for every EDS cluster subscribed to ``eds_name``; how many took them."""
        self.assignments[eds_name] = endpoints
        count = 0
        for cluster in self.clusters.values():
            config = cluster.config
            if config.discovery is DiscoveryType.EDS and config.eds_name == eds_name:
                cluster.set_hosts(_hosts_of(endpoints))
                count += 1
        return count

    @property
    def eds_names(self) -> set[str]:
        """EDS resource names the clusters need."""
        return {
            c.config.eds_name
            for c in self.clusters.values()
            if c.config.discovery is DiscoveryType.EDS
        }

    def get(self, name: str) -> Cluster | None:
        """The cluster called ``name``, or ``None``."""
        return self.clusters.get(name)

    async def start(self) -> None:
        """Resolve STRICT_DNS clusters once (so the first requests find hosts), then keep
        them fresh in the background."""
        dns = [c for c in self.clusters.values() if c.config.discovery is DiscoveryType.STRICT_DNS]
        await asyncio.gather(*(cluster.resolve_once() for cluster in dns))
        for cluster in self.clusters.values():
            cluster.start()

    def close(self) -> None:
        """Close every cluster."""
        for cluster in self.clusters.values():
            cluster.close()
