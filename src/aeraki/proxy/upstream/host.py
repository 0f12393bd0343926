"""A host of a cluster as the load balancers and pools see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aeraki.proxy.config import SocketAddress
from aeraki.proxy.upstream.outcome import Outcome, OutcomeMonitor

__all__ = ["Host"]


class Host:
    """One upstream endpoint with the live counters load balancers read.

    ``active_requests`` is kept by the pools (LEAST_REQUEST reads it); ``healthy`` by
    health checking and outlier detection (load balancers skip unhealthy hosts).
    """

    __slots__ = ("active_requests", "address", "healthy", "key", "metadata", "monitor", "weight")

    def __init__(
        self,
        address: SocketAddress,
        *,
        weight: int = 1,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.weight = max(1, weight)
        self.metadata: Mapping[str, Any] = metadata or {}
        self.active_requests = 0
        self.healthy = True
        #: outlier detection of the host's cluster, if configured.
        self.monitor: OutcomeMonitor | None = None
        #: "ip:port", also the hashing identity of the host on rings.
        self.key = str(address)

    def report(self, outcome: Outcome) -> None:
        """Account the outcome of one attempt on this host (outlier detection)."""
        monitor = self.monitor
        if monitor is not None:
            monitor.report(self, outcome)

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "unhealthy"
        return f"<Host {self.key} w={self.weight} active={self.active_requests} {state}>"
