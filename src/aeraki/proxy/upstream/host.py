"""A host of a cluster as the load balancers and pools see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aeraki.proxy.config import NO_LOCALITY, Locality, SocketAddress
from aeraki.proxy.upstream.outcome import Outcome, OutcomeMonitor

__all__ = ["Host"]


class Host:
    """One upstream endpoint with the live counters load balancers read.

    ``active_requests`` is kept by the pools (LEAST_REQUEST reads it). ``healthy`` is what
    load balancers read when they rebuild; it is derived from two flags, as Envoy's health
    flags are: ``failed_active_hc`` (active health checking) and ``failed_outlier_check``
    (ejected by outlier detection). Whoever flips a flag tells the cluster, which rebuilds
    its balancer (``lb.update()``): ``choose`` never reads health per request.
    """

    __slots__ = (
        "active_requests",
        "address",
        "failed_active_hc",
        "failed_outlier_check",
        "healthy",
        "key",
        "locality",
        "locality_weight",
        "metadata",
        "monitor",
        "priority",
        "weight",
    )

    def __init__(
        self,
        address: SocketAddress,
        *,
        weight: int = 1,
        metadata: Mapping[str, Any] | None = None,
        locality: Locality = NO_LOCALITY,
        priority: int = 0,
        locality_weight: int = 0,
    ) -> None:
        self.address = address
        self.weight = max(1, weight)
        self.metadata: Mapping[str, Any] = metadata or {}
        #: placement for locality-aware balancing (aeraki.proxy.upstream.lb.priority);
        #: ``locality_weight`` is the weight of the host's locality group (0 = not given).
        self.locality = locality
        self.priority = priority
        self.locality_weight = locality_weight
        self.active_requests = 0
        self.healthy = True
        self.failed_active_hc = False
        self.failed_outlier_check = False
        #: outlier detection of the host's cluster, if configured.
        self.monitor: OutcomeMonitor | None = None
        #: "ip:port", also the hashing identity of the host on rings.
        self.key = str(address)

    def report(self, outcome: Outcome) -> None:
        """Account the outcome of one attempt on this host (outlier detection)."""
        monitor = self.monitor
        if monitor is not None:
            monitor.report(self, outcome)

    def set_failed_active_hc(self, failed: bool) -> None:
        """Active health checking's verdict (``healthy`` follows both flags)."""
        self.failed_active_hc = failed
        self.healthy = not (failed or self.failed_outlier_check)

    def set_failed_outlier_check(self, failed: bool) -> None:
        """Outlier detection ejected (``True``) or re-admitted the host."""
        self.failed_outlier_check = failed
        self.healthy = not (failed or self.failed_active_hc)

    @property
    def health_flags(self) -> str:
        """Envoy's ``/clusters`` notation: ``healthy`` or ``/failed_active_hc/…``."""
        if self.healthy:
            return "healthy"
        flags = [
            name
            for name, on in (
                ("failed_active_hc", self.failed_active_hc),
                ("failed_outlier_check", self.failed_outlier_check),
            )
            if on
        ]
        return "".join(f"/{flag}" for flag in flags) or "/failed"

    def __repr__(self) -> str:
        flags = self.health_flags
        return f"<Host {self.key} w={self.weight} active={self.active_requests} {flags}>"
