"""Kubernetes mode: keep the cluster's Aeraki EnvoyFilters in step with a changing config.

The runtime (under the writer's leader lease, §13.5) calls :meth:`EnvoyFilterWriter.offer` with
each new :class:`~aeraki.control.model.ConfigSnapshot` — ideally the last-good snapshot of
:class:`~aeraki.control.push.ConfigBuilder`, so a resource broken by an edit keeps its
EnvoyFilters instead of having them deleted. :meth:`run` debounces like Aeraki (§13.4: fire
after a quiet period, or after a maximum delay under a steady stream of events), renders, and
reconciles (§5.6).

Fixed against the reference: offering never blocks (the latest snapshot replaces a pending one;
Aeraki's 100-slot channel blocked every producer when the writer was not running, §16.3);
a rendering identical to the last applied one makes no API call at all (the content-level form
of §13.2's "drop no-op updates"); a failed pass is retried with backoff, at most ``retries``
times, then waits for the next offer, as Aeraki does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aeraki.control.envoyfilter.mesh import MeshConfig
from aeraki.control.envoyfilter.reconcile import ReconcileResult, reconcile
from aeraki.control.envoyfilter.render import render_envoyfilters
from aeraki.control.model.config import ConfigSnapshot
from aeraki.control.sources.kubeclient import ApiError, KubeClient

__all__ = ["EnvoyFilterWriter"]

log = logging.getLogger("aeraki.envoyfilter")


class EnvoyFilterWriter:
    """Debounced render + reconcile loop; one instance per leader term."""

    def __init__(
        self,
        client: KubeClient,
        mesh: MeshConfig | None = None,
        *,
        quiet: float = 0.1,
        max_delay: float = 1.0,
        retries: int = 3,
        retry_delay: float = 0.5,
        namespace_scope: bool = False,
    ) -> None:
        self.client = client
        self.mesh = mesh or MeshConfig()
        self.quiet, self.max_delay = quiet, max_delay
        self.retries, self.retry_delay = retries, retry_delay
        self.namespace_scope = namespace_scope
        self.passes = 0  # reconcile passes that reached the API server
        self.last: ReconcileResult | None = None
        self._pending: ConfigSnapshot | None = None
        self._applied: list[dict[str, Any]] | None = None
        self._wake = asyncio.Event()
        self._first = self._latest = 0.0

    def offer(self, config: ConfigSnapshot, mesh: MeshConfig | None = None) -> None:
        """A new configuration (and mesh config, §13.8); never blocks, coalesces."""
        now = asyncio.get_running_loop().time()
        if self._pending is None:
            self._first = now
        self._latest = now
        self._pending = config
        if mesh is not None:
            self.mesh = mesh
        self._wake.set()

    async def _settle(self) -> ConfigSnapshot:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = min(self._latest + self.quiet, self._first + self.max_delay)
            if now >= due:
                break
            await asyncio.sleep(due - now)
        config, self._pending = self._pending, None
        self._wake.clear()
        assert config is not None
        return config

    async def _apply(self, config: ConfigSnapshot) -> None:
        desired = render_envoyfilters(config, self.mesh, namespace_scope=self.namespace_scope)
        for problem in desired.problems:
            log.warning("envoyfilter: %s", problem.format())
        if desired.envoyfilters == self._applied:
            return
        for attempt in range(self.retries + 1):
            if self._pending is not None:
                return  # newer config: the next pass supersedes this one
            try:
                result = await reconcile(self.client, desired.envoyfilters)
            except (ApiError, OSError) as exc:
                result = ReconcileResult(errors=[f"list envoyfilters: {exc}"])
            self.passes += 1
            self.last = result
            if not result.errors:
                self._applied = desired.envoyfilters
                log.info("envoyfilters reconciled: %s", result.summary())
                return
            for error in result.errors:
                log.error("failed to reconcile envoyFilters: %s", error)
            if attempt < self.retries:
                await asyncio.sleep(self.retry_delay * 2**attempt)
        self._applied = None  # unknown state: the next offer reconciles again

    async def run(self) -> None:
        """Until cancelled (e.g. when the leader lease is lost)."""
        while True:
            await self._wake.wait()
            await self._apply(await self._settle())
