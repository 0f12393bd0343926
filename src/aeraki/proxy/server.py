"""The proxy process: clusters, listeners and admin built from a :class:`ProxyConfig`.

``ProxyServer.run_until_signalled`` is what ``aeraki proxy`` runs: on SIGTERM or SIGINT it
stops accepting, lets requests in flight finish for up to the drain timeout, then closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import signal
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from aeraki.proxy.admin import AdminServer
from aeraki.proxy.config import ProxyConfig
from aeraki.proxy.listener import Listener, ListenerRuntime
from aeraki.proxy.upstream.cluster import ClusterManager

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
        self.listeners = [Listener(ListenerRuntime(c, self.clusters)) for c in config.listeners]
        self.admin: AdminServer | None = None
        self.is_ready = False
        self.is_draining = False
        self._stopped = asyncio.Event()

    async def start(self, *, reuse_port: bool = False) -> None:
        """Resolve clusters, bind listeners and admin; ready when this returns."""
        await self.clusters.start()
        for listener in self.listeners:
            await listener.start(reuse_port=reuse_port)
        if self.config.admin is not None:
            self.admin = AdminServer(self)
            address = self.config.admin.address
            await self.admin.start(address.host, address.port)
        self.is_ready = True

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
        for listener in self.listeners:
            listener.stop_accepting()
        results = await asyncio.gather(
            *(listener.runtime.drain(self.drain_timeout) for listener in self.listeners)
        )
        self.clusters.close()
        if self.admin is not None:
            self.admin.close()
        self._stopped.set()
        return all(results)

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
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
        for listener in self.listeners:
            runtime = listener.runtime
            proxy = runtime.config.proxy
            prefix = f"meta_protocol.{runtime.application_protocol}.{proxy.stat_prefix}."
            for name, value in runtime.stats.snapshot().items():
                out[prefix + name] = value
        for cluster in self.clusters.clusters.values():
            for name, value in cluster.stats.snapshot().items():
                out[f"cluster.{cluster.name}.{name}"] = value
        return out

    def config_dump(self) -> dict[str, Any]:
        """The configuration in force, as JSON-ready data."""
        dump = _plain(dataclasses.asdict(self.config))
        assert isinstance(dump, dict)
        return dump


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return json_format.MessageToDict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)
