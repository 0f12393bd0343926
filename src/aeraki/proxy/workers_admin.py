"""The admin pages of a proxy run as several workers (``aeraki proxy --workers N``).

The supervisor answers on the bootstrap's admin address as one proxy would: it asks every
worker's internal admin for the same page and merges the answers
(:mod:`aeraki.proxy.observe.aggregate`): ``/stats`` and ``/stats/prometheus`` sum every
counter and gauge and every histogram bucket across workers, ``/clusters`` sums each host's
load and joins its health flags, ``/ready`` is LIVE when every worker is, ``/config_dump`` is
the first worker's (all get the same configuration) plus the list of workers, and
``POST /logging`` changes every worker. ``/workers`` lists them (index, pid, internal admin
port, restarts). A worker that exited is out of the view until its replacement reports (its
counters died with it; Prometheus reads the drop as a counter reset). A live worker that does
not answer makes the page fail (503 naming it) rather than return totals missing its share.
"""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aeraki.admin_http import AsyncAction, AsyncHandler, Response
from aeraki.admin_logging import logging_post
from aeraki.errors import AerakiError
from aeraki.proxy.admin import clusters_text
from aeraki.proxy.observe import prometheus
from aeraki.proxy.observe.aggregate import (
    merge_cluster_statuses,
    merge_prometheus,
    merge_stats,
)
from aeraki.proxy.stats import SUPERVISOR_STATS

if TYPE_CHECKING:
    from aeraki.proxy.workers import Supervisor, WorkerHandle

__all__ = ["FETCH_TIMEOUT", "WorkerUnavailable", "fetch", "supervisor_actions", "supervisor_routes"]

#: Seconds a worker has to answer one admin request.
FETCH_TIMEOUT = 5.0
_LOOPBACK = "127.0.0.1"
_SUPERVISOR_PREFIX = "server."
_PROMETHEUS_PREFIX = "aeraki_server_"


class WorkerUnavailable(AerakiError):
    """A worker's admin did not answer (it may be restarting)."""


async def fetch(port: int, target: str, method: str = "GET") -> tuple[int, str]:
    """One admin request to ``127.0.0.1:port``: ``(status, body)``.

    Raises:
        WorkerUnavailable: no connection, no answer within :data:`FETCH_TIMEOUT`, or not HTTP.
    """
    try:
        return await asyncio.wait_for(_exchange(port, target, method), FETCH_TIMEOUT)
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        raise WorkerUnavailable(f"{method} {target}: {exc or type(exc).__name__}") from exc


async def _exchange(port: int, target: str, method: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(_LOOPBACK, port)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: {_LOOPBACK}\r\n\r\n".encode())
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


def _admin_workers(supervisor: Supervisor) -> list[WorkerHandle]:
    handles = sorted(supervisor.workers.values(), key=lambda w: w.index)
    return [w for w in handles if w.admin_port is not None]


async def _ask_all(
    supervisor: Supervisor, target: str, method: str = "GET", *, skip: int = 0
) -> list[str]:
    """Every worker's answer to ``target`` (must be 200), in worker order (the first
    ``skip`` workers left out).

    Raises:
        WorkerUnavailable: naming the first worker that failed.
    """
    handles = _admin_workers(supervisor)[skip:]
    answers = await asyncio.gather(
        *(fetch(w.admin_port or 0, target, method) for w in handles), return_exceptions=True
    )
    bodies = []
    for handle, answer in zip(handles, answers, strict=True):
        if isinstance(answer, BaseException):
            raise WorkerUnavailable(f"worker {handle.index} (pid {handle.pid}): {answer}")
        status, body = answer
        if status != 200:
            raise WorkerUnavailable(
                f"worker {handle.index} (pid {handle.pid}): {target} answered {status}: "
                + body.strip()
            )
        bodies.append(body)
    return bodies


def _guarded(page: Callable[[Supervisor], Awaitable[Response]]) -> Callable[..., Any]:
    """``page`` answering 503 with the reason when a worker cannot be asked."""

    async def guarded(supervisor: Supervisor) -> Response:
        try:
            return await page(supervisor)
        except WorkerUnavailable as exc:
            return 503, "text/plain", f"{exc}\n"
        except AerakiError as exc:  # a worker's page that cannot be merged (a bug): say so
            return 500, "text/plain", f"cannot merge the workers' pages: {exc}\n"

    return guarded


def _supervisor_stats(supervisor: Supervisor) -> dict[str, int]:
    values = {"workers": len(supervisor.workers), "worker_restarts": supervisor.restarts_total}
    return {spec.name: values[spec.name] for spec in SUPERVISOR_STATS}


async def _merged_stats(supervisor: Supervisor) -> dict[str, int]:
    pages = [json.loads(body) for body in await _ask_all(supervisor, "/stats?format=json")]
    merged = merge_stats(pages)
    for name, value in _supervisor_stats(supervisor).items():
        merged[_SUPERVISOR_PREFIX + name] = value
    return merged


async def _stats(supervisor: Supervisor) -> Response:
    merged = await _merged_stats(supervisor)
    lines = [f"{name}: {value}" for name, value in sorted(merged.items())]
    return 200, "text/plain", "\n".join(lines) + "\n"


async def _stats_json(supervisor: Supervisor) -> Response:
    merged = await _merged_stats(supervisor)
    return 200, "application/json", json.dumps(merged, indent=2, sort_keys=True) + "\n"


async def _stats_prometheus(supervisor: Supervisor) -> Response:
    page = merge_prometheus(await _ask_all(supervisor, "/stats/prometheus"))
    out = prometheus.Exposition()
    values = _supervisor_stats(supervisor)
    for spec in SUPERVISOR_STATS:
        name = prometheus.exported_name(_PROMETHEUS_PREFIX, spec)
        out.sample(spec, "", values[spec.name], name)
    return 200, prometheus.CONTENT_TYPE, page + out.text()


async def _ready(supervisor: Supervisor) -> Response:
    if supervisor.stopping:
        return 503, "text/plain", "DRAINING\n"
    handles = _admin_workers(supervisor)
    answers = await asyncio.gather(
        *(fetch(w.admin_port or 0, "/ready") for w in handles), return_exceptions=True
    )
    live = [a for a in answers if not isinstance(a, BaseException) and a[0] == 200]
    if handles and len(live) == len(handles):
        return 200, "text/plain", "LIVE\n"
    return 503, "text/plain", "PRE_INITIALIZING\n"


def _worker_list(supervisor: Supervisor) -> list[dict[str, Any]]:
    return [
        {
            "index": w.index,
            "pid": w.pid,
            "admin": f"{_LOOPBACK}:{w.admin_port}" if w.admin_port is not None else None,
            "restarts": w.restarts,
        }
        for w in sorted(supervisor.workers.values(), key=lambda w: w.index)
    ]


async def _workers(supervisor: Supervisor) -> Response:
    body = {"workers": _worker_list(supervisor), "restarts_total": supervisor.restarts_total}
    return 200, "application/json", json.dumps(body, indent=2) + "\n"


async def _ask_first(supervisor: Supervisor, target: str, method: str = "GET") -> tuple[int, str]:
    """The lowest-indexed running worker's answer (pages every worker answers alike).

    Raises:
        WorkerUnavailable: no worker is running, or it did not answer.
    """
    handles = _admin_workers(supervisor)
    if not handles:
        raise WorkerUnavailable("no worker is running")
    return await fetch(handles[0].admin_port or 0, target, method)


async def _config_dump(supervisor: Supervisor) -> Response:
    status, body = await _ask_first(supervisor, "/config_dump")
    if status != 200:
        raise WorkerUnavailable(f"/config_dump answered {status}")
    dump = json.loads(body)
    admin = supervisor.config.admin
    if admin is not None and isinstance(dump.get("bootstrap"), dict):  # not the internal port
        dump["bootstrap"]["admin"] = {
            "address": {"host": admin.address.host, "port": admin.address.port}
        }
    dump["workers"] = _worker_list(supervisor)
    return 200, "application/json", json.dumps(dump, indent=2) + "\n"


async def _cluster_statuses(supervisor: Supervisor) -> list[dict[str, Any]]:
    pages = [json.loads(b) for b in await _ask_all(supervisor, "/clusters?format=json")]
    statuses: list[dict[str, Any]] = merge_cluster_statuses(pages)["cluster_statuses"]
    return statuses


async def _clusters(supervisor: Supervisor) -> Response:
    return 200, "text/plain", clusters_text(await _cluster_statuses(supervisor))


async def _clusters_json(supervisor: Supervisor) -> Response:
    body = {"cluster_statuses": await _cluster_statuses(supervisor)}
    return 200, "application/json", json.dumps(body, indent=2) + "\n"


async def _logging(supervisor: Supervisor) -> Response:
    status, body = await _ask_first(supervisor, "/logging")
    return status, "text/plain", body


def supervisor_routes(supervisor: Supervisor) -> dict[str, AsyncHandler]:
    """The admin pages of ``supervisor``, merged over its workers."""
    pages: dict[str, Callable[[Supervisor], Awaitable[Response]]] = {
        "/ready": _ready,
        "/stats": _stats,
        "/stats?format=json": _stats_json,
        "/stats/prometheus": _stats_prometheus,
        "/config_dump": _config_dump,
        "/clusters": _clusters,
        "/clusters?format=json": _clusters_json,
        "/logging": _logging,
        "/workers": _workers,
    }
    return {path: functools.partial(_guarded(page), supervisor) for path, page in pages.items()}


async def _post_logging(supervisor: Supervisor, query: Mapping[str, str]) -> Response:
    """Apply ``POST /logging`` in every worker (and here, for the supervisor's own loggers);
    answer with the first worker's reply (a bad level or logger: its 4xx, applied nowhere)."""
    target = "/logging?" + urllib.parse.urlencode(query) if query else "/logging"
    try:
        status, body = await _ask_first(supervisor, target, "POST")
        if status == 200:
            await _ask_all(supervisor, target, "POST", skip=1)
            logging_post(query)  # may not know a worker-only logger: the workers' word counts
    except WorkerUnavailable as exc:
        return 503, "text/plain", f"{exc}\n"
    return status, "text/plain", body


def supervisor_actions(supervisor: Supervisor) -> dict[str, AsyncAction]:
    """``POST /logging``, applied to every worker."""
    return {"/logging": functools.partial(_post_logging, supervisor)}
