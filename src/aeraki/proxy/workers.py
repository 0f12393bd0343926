"""Several proxy worker processes on one host: ``aeraki proxy --workers N``.

One Python process serves one CPU. To use more, the proxy runs pre-forked the way nginx and
Envoy's ``--concurrency`` do, with processes instead of threads: a **supervisor** spawns N
**workers**; each is a whole :class:`~aeraki.proxy.server.ProxyServer` (its own event loop,
connection pools, and xDS client, so all get the same configuration from the control plane)
whose listeners bind with ``SO_REUSEPORT``: the kernel spreads new connections over them.

The supervisor serves nothing itself but the admin address of the bootstrap. Each worker runs
its admin on an internal 127.0.0.1 port it reports to the supervisor, which answers a page by
asking every worker and merging (:mod:`aeraki.proxy.workers_admin`): counters and gauges are
summed, histograms bucket by bucket, so ``/stats`` and ``/stats/prometheus`` read as one proxy
(as Envoy sums its worker threads). Local rate limit buckets live in a shared-memory store
(:mod:`aeraki.proxy.filters.shared_buckets`), so a limit is one limit however many workers
there are. Circuit breakers, outlier detection and load balancers are per worker (each worker
has its own pools and sees its own outcomes).

Lifecycle: each worker holds one end of a socket pair whose other end only the supervisor
holds. The worker writes one JSON line on it once started (``{"admin_port": ...}``) and then
watches it: end of file means the supervisor is gone (even killed with SIGKILL), and the
worker drains and exits rather than serve on unsupervised. A worker that exits while the
supervisor runs is replaced after a back-off (doubling from 0.5 s to 30 s while replacements
keep dying young); one that fails before it ever started fails the whole start, with its own
one-line error on stderr. SIGTERM/SIGINT on the supervisor: every worker gets SIGTERM and
drains; those still running after the drain timeout (plus a grace) are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aeraki.errors import AerakiError, ConfigError
from aeraki.signals import stop_on_signals

if TYPE_CHECKING:
    from aeraki.admin_http import AdminHttpServer
    from aeraki.proxy.config import ProxyConfig
    from aeraki.proxy.server import ProxyServer

__all__ = [
    "STARTUP_TIMEOUT",
    "Supervisor",
    "WorkerHandle",
    "WorkerStartError",
    "check_shareable",
    "serve_worker",
    "worker_command",
]

log = logging.getLogger(__name__)

#: Seconds a new worker has to bind its listeners and report (imports included).
STARTUP_TIMEOUT = 60.0
#: Replacement back-off: first delay, cap, and the uptime after which a worker counts as
#: having started well (its replacement starts at the first delay again).
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
HEALTHY_UPTIME = 10.0
#: Seconds past the drain timeout before a worker that ignores SIGTERM is killed.
KILL_GRACE = 5.0


def check_shareable(config: ProxyConfig) -> None:
    """Refuse what several workers cannot share: a listener on port 0 would get a different
    ephemeral port in every worker.

    Raises:
        ConfigError: naming the listener.
    """
    for listener in config.listeners:
        if listener.address.port == 0:
            raise ConfigError(
                f"listener {listener.name}",
                "port 0 cannot be shared by several workers (each would bind its own "
                "ephemeral port); give a port, or run one worker",
            )


# -- worker side ------------------------------------------------------------------------------
async def serve_worker(server: ProxyServer, channel_fd: int, index: int) -> None:
    """Run ``server`` as worker ``index``: start with ``SO_REUSEPORT``, report on the
    supervisor's channel, serve until SIGTERM/SIGINT or until the channel closes."""
    loop = asyncio.get_running_loop()
    channel = socket.socket(fileno=channel_fd)
    reader, writer = await asyncio.open_connection(sock=channel)
    with stop_on_signals() as stop:
        await server.start(reuse_port=True)
        admin_port = server.admin.port if server.admin is not None else None
        report = {"admin_port": admin_port, "pid": os.getpid()}
        writer.write(json.dumps(report).encode() + b"\n")
        await writer.drain()
        log.info("worker %d ready: %d listener(s)", index, len(server.listeners))
        orphaned = loop.create_task(reader.read())  # returns at end of file: supervisor gone
        stopped = loop.create_task(stop.wait())
        try:
            await asyncio.wait({orphaned, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (orphaned, stopped):
                task.cancel()
        if not stop.is_set():
            log.warning("worker %d: supervisor gone; draining and exiting", index)
        # still inside: Ctrl-C's SIGINT and the supervisor's SIGTERM both arrive while draining
        clean = await server.shutdown()
    writer.close()
    log.info("worker %d stopped (%s)", index, "drained" if clean else "drain timeout")


# -- supervisor side --------------------------------------------------------------------------
@dataclass
class WorkerHandle:
    """One worker process as the supervisor tracks it."""

    index: int
    process: asyncio.subprocess.Process
    #: the supervisor's end of the channel (kept open: closing it tells the worker to go).
    writer: asyncio.StreamWriter
    admin_port: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid


class WorkerStartError(AerakiError):
    """A worker exited (or hung) before it reported; its own error is on stderr."""


class Supervisor:
    """Spawns ``count`` workers running ``worker_argv`` (the ``aeraki proxy`` command line
    without the worker options) and keeps that many running.

    The shared rate-limit store is created here and removed at :meth:`stop`.
    """

    def __init__(
        self,
        config: ProxyConfig,
        worker_argv: Sequence[str],
        count: int,
        *,
        drain_timeout: float,
    ) -> None:
        self.config = config
        self.worker_argv = list(worker_argv)
        self.count = count
        self.drain_timeout = drain_timeout
        self.workers: dict[int, WorkerHandle] = {}
        self.restarts_total = 0
        self.stopping = False
        self.admin: AdminHttpServer | None = None
        self.store_path: Path | None = None
        #: one task per worker: waits for its exit and replaces it (ends once replaced).
        self.watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create the shared store, start every worker, then serve the admin address.

        Raises:
            WorkerStartError: a worker failed to start (the others are stopped).
            OSError: the admin address cannot be bound.
        """
        from aeraki.proxy.filters.shared_buckets import create_store

        self.store_path = create_store()
        try:
            started = await asyncio.gather(
                *(self._spawn(i) for i in range(self.count)), return_exceptions=True
            )
            handles = [r for r in started if isinstance(r, WorkerHandle)]
            failures = [r for r in started if isinstance(r, BaseException)]
            if failures:  # the ones that did start are stopped too: all or nothing
                await self._terminate(handles)
                raise failures[0]
            for handle in handles:
                self._adopt(handle)
            await self._start_admin()
        except BaseException:
            await self.stop()
            raise

    async def _start_admin(self) -> None:
        if self.config.admin is None:
            return
        from aeraki.admin_http import AdminHttpServer
        from aeraki.proxy.workers_admin import supervisor_actions, supervisor_routes

        self.admin = AdminHttpServer(supervisor_routes(self), supervisor_actions(self))
        address = self.config.admin.address
        await self.admin.start(address.host, address.port)

    def _argv(self, index: int, channel_fd: int) -> list[str]:
        argv = [*self.worker_argv, "--worker-index", str(index)]
        argv += ["--worker-channel", str(channel_fd)]
        if self.store_path is not None:
            argv += ["--shared-state", str(self.store_path)]
        return argv

    async def _spawn(self, index: int) -> WorkerHandle:
        """Start worker ``index`` and wait for its report."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv(index, theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        handle = WorkerHandle(index, process, writer)
        try:
            line = await asyncio.wait_for(reader.readline(), STARTUP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise WorkerStartError(
                f"worker {index} did not start within {STARTUP_TIMEOUT:.0f}s"
            ) from None
        if not line:
            status = await process.wait()
            writer.close()
            raise WorkerStartError(
                f"worker {index} exited with status {status} before it started (its own "
                "error is above)"
            )
        handle.admin_port = json.loads(line).get("admin_port")
        return handle

    def _adopt(self, handle: WorkerHandle) -> None:
        """Track a started worker and replace it if it exits."""
        self.workers[handle.index] = handle
        task = asyncio.get_running_loop().create_task(self._watch(handle))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def _watch(self, handle: WorkerHandle) -> None:
        status = await handle.process.wait()
        handle.writer.close()
        if self.stopping:
            return
        # Out of the admin's view until replaced: pages answer for the workers alive (their
        # totals drop by the dead one's counters, which Prometheus reads as a counter reset).
        if self.workers.get(handle.index) is handle:
            del self.workers[handle.index]
        uptime = time.monotonic() - handle.started_at
        restarts = 0 if uptime >= HEALTHY_UPTIME else handle.restarts + 1
        delay = min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** max(0, restarts - 1))
        log.error(
            "worker %d (pid %d) exited with status %s after %.1fs; replacing it in %.1fs",
            handle.index,
            handle.pid,
            status,
            uptime,
            delay,
        )
        await self._replace(handle.index, restarts, delay)

    async def _replace(self, index: int, restarts: int, delay: float) -> None:
        while not self.stopping:
            await asyncio.sleep(delay)  # back-off: a timed wait, nothing to await instead
            if self.stopping:
                return
            try:
                handle = await self._spawn(index)
            except WorkerStartError as exc:
                restarts += 1
                delay = min(RESTART_DELAY_MAX, delay * 2)
                log.error("replacing worker %d: %s; next try in %.1fs", index, exc, delay)
                continue
            self.restarts_total += 1
            handle.restarts = restarts
            if self.stopping:  # stop() began while this one started: it is ours to end
                await self._terminate([handle])
                return
            self._adopt(handle)
            log.info("worker %d replaced (pid %d)", index, handle.pid)
            return

    async def stop(self) -> bool:
        """SIGTERM every worker, wait for the drains, kill stragglers, remove the store;
        ``True`` if every worker exited by itself."""
        self.stopping = True
        if self.admin is not None:
            self.admin.close()
        clean = await self._terminate(list(self.workers.values()))
        for task in list(self.watchers):
            task.cancel()
        if self.store_path is not None:
            from aeraki.proxy.filters.shared_buckets import remove_store

            remove_store(self.store_path)
        return clean

    async def _terminate(self, handles: Sequence[WorkerHandle]) -> bool:
        for handle in handles:
            if handle.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    handle.process.send_signal(signal.SIGTERM)
        clean = True
        for handle in handles:
            try:
                await asyncio.wait_for(handle.process.wait(), self.drain_timeout + KILL_GRACE)
            except TimeoutError:
                clean = False
                log.warning("worker %d (pid %d) did not stop: killing it", handle.index, handle.pid)
                with contextlib.suppress(ProcessLookupError):
                    handle.process.kill()
                await handle.process.wait()
            handle.writer.close()
        return clean

    async def run_until_signalled(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop."""
        with stop_on_signals() as stop:
            await self.start()
            pids = ", ".join(str(w.pid) for w in self.workers.values())
            log.info("proxy ready: %d worker(s) (pids %s)", len(self.workers), pids)
            await stop.wait()
            log.info("signal received: workers draining for up to %.1fs", self.drain_timeout)
            clean = await self.stop()
        log.info("proxy stopped (%s)", "drained" if clean else "drain timeout")


def worker_command(argv: Sequence[str]) -> list[str]:
    """The interpreter command line that runs ``aeraki`` with ``argv``."""
    return [sys.executable, "-m", "aeraki.cli", *argv]
