"""Kubernetes mode: the EnvoyFilter writer, run only by the replica holding the Lease.

Issue 3 items 2 and 8, reference §13.5. Every replica of ``aeraki control --kubernetes`` reads
the inputs and serves xDS (proxies may use any of them); writing EnvoyFilters must happen once,
or two replicas with slightly different views would overwrite each other's objects. So the
writer is a *role* of the :class:`~aeraki.control.runtime.ControlPlane` that campaigns for the
Lease (``aeraki-controller`` by default, :class:`~aeraki.control.sources.leader.LeaderElector`)
and runs an :class:`~aeraki.control.envoyfilter.writer.EnvoyFilterWriter` only while leading:

- the runtime offers every push's configuration — the *last good* one of
  :class:`~aeraki.control.push.ConfigBuilder`, so a broken edit keeps its resource's
  EnvoyFilters instead of deleting them — and nothing before every source has synced (a
  partial view would delete the EnvoyFilters of the services not listed yet);
- a new term starts a fresh writer with the latest configuration: it lists and reconciles
  from scratch, since the previous leader may have written anything in between;
- losing the Lease cancels the writer before anything else can happen (no write by a
  non-leader); stopping (SIGTERM) releases the Lease so a standby takes over at once instead
  of after ``lease_duration``;
- a cluster without Istio's EnvoyFilter kind (404 on its collection) is not an error: this
  control plane serves its own proxies over xDS without Istio, so the leader logs one warning
  and probes again every :data:`PROBE_INTERVAL` seconds while it leads.

Directory mode does not write EnvoyFilters (``aeraki envoyfilter DIR --apply`` does that on
demand): it has no Lease to serialise writers and no cluster to write to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from aeraki.control.envoyfilter.mesh import MeshConfig
from aeraki.control.envoyfilter.render import API_VERSION
from aeraki.control.envoyfilter.writer import EnvoyFilterWriter
from aeraki.control.model.config import ConfigSnapshot
from aeraki.control.sources.kubeclient import SERVICE_ACCOUNT_DIR, ApiError, KubeClient
from aeraki.control.sources.leader import Clock, LeaderElector

__all__ = [
    "DEFAULT_LEASE_NAME",
    "DEFAULT_LEASE_NAMESPACE",
    "PROBE_INTERVAL",
    "EnvoyFilterLeader",
    "LeaseConfig",
    "Role",
    "default_identity",
    "default_namespace",
]

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME = "aeraki-controller"
DEFAULT_LEASE_NAMESPACE = "aeraki-system"
#: Seconds between checks for the EnvoyFilter kind, and before restarting a failed writer.
PROBE_INTERVAL = 30.0
_PROBE_PATH = f"/apis/{API_VERSION}/envoyfilters"


class Role(Protocol):
    """A job a :class:`~aeraki.control.runtime.ControlPlane` runs beside xDS serving.

    Started after xDS is up; stopped *first* on shutdown (a leader releases its Lease while the
    API client is still open); offered the last good config after every push — never a
    partial one, since pushes wait for every source's SYNCED. ``offer`` and ``stop`` must not
    raise: they run inside the push and the shutdown of the whole control plane.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def offer(self, config: ConfigSnapshot) -> None: ...


def default_identity(env: Mapping[str, str] | None = None) -> str:
    """``POD_NAME`` (the Deployment sets it), else ``<hostname>_<pid>``: unique per process,
    so two replicas on one machine (or a restarted one) never share a holder identity."""
    env = os.environ if env is None else env
    return env.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def default_namespace(
    env: Mapping[str, str] | None = None, service_account: Path = SERVICE_ACCOUNT_DIR
) -> str:
    """``POD_NAMESPACE``, else the service account's namespace file, else ``aeraki-system``
    (where deploy/kubernetes grants the Lease RBAC)."""
    env = os.environ if env is None else env
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        text = (service_account / "namespace").read_text(encoding="utf-8").strip()
        if text:
            return text
    return DEFAULT_LEASE_NAMESPACE


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseConfig:
    """The Lease and the election timing (client-go's meaning; defaults controller-runtime's).

    Raises:
        ValueError: not ``lease_duration > renew_deadline > 1.2 * retry_period > 0`` (the
            order that keeps two leaders from overlapping), or an empty name.
    """

    name: str = DEFAULT_LEASE_NAME
    namespace: str = DEFAULT_LEASE_NAMESPACE
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.name or not self.namespace:
            raise ValueError("the Lease needs a name and a namespace")
        if not self.lease_duration > self.renew_deadline > 1.2 * self.retry_period > 0:
            raise ValueError(
                "need lease duration > renew deadline > 1.2 x retry period > 0, got "
                f"{self.lease_duration} / {self.renew_deadline} / {self.retry_period}"
            )


WriterFactory = Callable[[], EnvoyFilterWriter]


class EnvoyFilterLeader:
    """A :class:`Role`: campaign for the Lease, write while leading.

    Args:
        client: the API server client (shared with the Kubernetes source).
        lease: which Lease, who we are, and the timing.
        mesh: Istio mesh config for the rendering (access log, tracing, root namespace).
        quiet, max_delay: the writer's debounce (seconds).
        writer_factory: builds one writer per term (tests inject theirs).
        clock: the elector's clock (tests inject a fake).
        probe_interval: seconds between checks for the EnvoyFilter kind / writer restarts.
    """

    def __init__(
        self,
        client: KubeClient,
        lease: LeaseConfig,
        *,
        mesh: MeshConfig | None = None,
        quiet: float = 0.1,
        max_delay: float = 1.0,
        writer_factory: WriterFactory | None = None,
        clock: Clock | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.client, self.lease, self.mesh = client, lease, mesh or MeshConfig()
        self.probe_interval = probe_interval
        self._make_writer: WriterFactory = writer_factory or (
            lambda: EnvoyFilterWriter(client, self.mesh, quiet=quiet, max_delay=max_delay)
        )
        self.elector = LeaderElector(
            client,
            namespace=lease.namespace,
            name=lease.name,
            identity=lease.identity or default_identity(),
            on_started_leading=self._lead,
            on_stopped_leading=self._stopped,
            on_new_leader=self._new_leader,
            lease_duration=lease.lease_duration,
            renew_deadline=lease.renew_deadline,
            retry_period=lease.retry_period,
            clock=clock,
        )
        self.terms = 0  # leader terms started (for tests and the log)
        self.writer: EnvoyFilterWriter | None = None  # the current term's, while writing
        self._config: ConfigSnapshot | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def identity(self) -> str:
        return self.elector.identity

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader

    # --- Role --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start campaigning (returns at once; leading happens in the background)."""
        if self._task is None:
            log.info(
                "%s: campaigning for Lease %s/%s (EnvoyFilter writer)",
                self.identity,
                self.lease.namespace,
                self.lease.name,
            )
            self._task = asyncio.create_task(self.elector.run())

    async def stop(self) -> None:
        """Stop writing and release the Lease if held (the elector does on cancellation)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def offer(self, config: ConfigSnapshot) -> None:
        """The configuration in force; handed to the writer when (and only when) leading."""
        self._config = config
        if self.writer is not None:
            self.writer.offer(config, self.mesh)

    # --- leading -----------------------------------------------------------------------------

    async def _lead(self) -> None:
        """One term: wait for the EnvoyFilter kind, then write until cancelled (lease lost).

        A writer that dies on an unexpected error (e.g. the connection to the API server
        dropped mid-list) is replaced after ``probe_interval``: the term goes on, and a
        leader that silently stopped writing would be worse than none.
        """
        self.terms += 1
        log.info("%s: leading; EnvoyFilter writer starting", self.identity)
        while True:
            await self._until_served()
            writer = self._make_writer()
            self.writer = writer
            if self._config is not None:
                writer.offer(self._config, self.mesh)
            try:
                await writer.run()
            except Exception:
                log.exception("EnvoyFilter writer failed; restarting in %gs", self.probe_interval)
            finally:
                self.writer = None
            await asyncio.sleep(self.probe_interval)

    async def _until_served(self) -> None:
        warned = False
        while True:
            try:
                await self.client.request("GET", _PROBE_PATH, params={"limit": "1"})
                return
            except ApiError as exc:
                reason = (
                    "the API server does not serve EnvoyFilters (Istio not installed?)"
                    if exc.status == 404
                    else f"cannot list EnvoyFilters: {exc}"
                )
            except (OSError, aiohttp.ClientError, ValueError) as exc:  # keep the term, retry
                reason = f"cannot reach the API server: {exc!r}"
            if not warned:
                log.warning(
                    "%s: %s; not writing EnvoyFilters, checking again every %gs",
                    self.identity,
                    reason,
                    self.probe_interval,
                )
                warned = True
            await asyncio.sleep(self.probe_interval)

    def _stopped(self) -> None:
        self.writer = None
        log.info("%s: no longer leading; EnvoyFilter writer stopped", self.identity)

    def _new_leader(self, holder: str) -> None:
        if holder != self.identity:
            log.info("%s: Lease %s held by %s", self.identity, self.lease.name, holder)
