"""The supervisor's admin pages against stand-in workers: real admin servers on 127.0.0.1
serving what a worker's admin would, so merging, readiness, failures and the forwarded
``POST /logging`` are checked over real sockets without starting proxy processes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import pytest

from aeraki.admin_http import AdminHttpServer, Response
from aeraki.proxy.workers import Supervisor, WorkerHandle
from aeraki.proxy.workers_admin import supervisor_actions, supervisor_routes
from tests.proxy.observe.promtext import parse


@dataclass
class StandIn:
    """What one worker's admin answers, and the actions it received."""

    requests: int
    ready: bool = True
    posted: list[dict[str, str]] = field(default_factory=list)
    server: AdminHttpServer | None = None

    def routes(self) -> dict[str, object]:
        stats = {
            "meta_protocol.thrift.l1.request": self.requests,
            "cluster.c.upstream_cx_active": 1,
        }
        prometheus = (
            "# HELP aeraki_meta_protocol_request_total Requests.\n"
            "# TYPE aeraki_meta_protocol_request_total counter\n"
            f'aeraki_meta_protocol_request_total{{listener="l1"}} {self.requests}\n'
        )
        return {
            "/ready": lambda: (
                (200, "text/plain", "LIVE\n")
                if self.ready
                else (503, "text/plain", "PRE_INITIALIZING\n")
            ),
            "/stats?format=json": lambda: (200, "application/json", json.dumps(stats)),
            "/stats/prometheus": lambda: (200, "text/plain", prometheus),
        }

    def post_logging(self, query: Mapping[str, str]) -> Response:
        if query.get("level") == "loud":
            return 400, "text/plain", "unknown level loud\n"
        self.posted.append(dict(query))
        return 200, "text/plain", "levels set\n"


@pytest.fixture
async def stand_ins() -> AsyncIterator[list[StandIn]]:
    workers = [StandIn(3), StandIn(4)]
    for worker in workers:
        worker.server = AdminHttpServer(worker.routes(), {"/logging": worker.post_logging})  # type: ignore[arg-type]
        await worker.server.start("127.0.0.1", 0)
    yield workers
    for worker in workers:
        assert worker.server is not None
        worker.server.close()


def _supervisor(stand_ins: list[StandIn], dead_port: int | None = None) -> Supervisor:
    supervisor = Supervisor.__new__(Supervisor)
    supervisor.stopping = False
    supervisor.restarts_total = 1
    ports = [w.server.port for w in stand_ins if w.server is not None]
    if dead_port is not None:
        ports.append(dead_port)
    supervisor.workers = {
        i: cast(WorkerHandle, SimpleNamespace(index=i, pid=1000 + i, admin_port=p, restarts=0))
        for i, p in enumerate(ports)
    }
    return supervisor


async def _get(supervisor: Supervisor, path: str) -> Response:
    return await supervisor_routes(supervisor)[path]()


async def test_stats_are_summed_with_the_supervisors_own(stand_ins: list[StandIn]) -> None:
    supervisor = _supervisor(stand_ins)
    status, _, body = await _get(supervisor, "/stats?format=json")
    assert status == 200
    assert json.loads(body) == {
        "meta_protocol.thrift.l1.request": 7,
        "cluster.c.upstream_cx_active": 2,
        "server.workers": 2,
        "server.worker_restarts": 1,
    }
    status, _, text = await _get(supervisor, "/stats")
    assert "meta_protocol.thrift.l1.request: 7\n" in text
    status, _, page = await _get(supervisor, "/stats/prometheus")
    families = parse(page)
    assert families["aeraki_meta_protocol_request_total"].value(listener="l1") == 7
    assert families["aeraki_server_workers"].value() == 2
    assert families["aeraki_server_worker_restarts_total"].value() == 1


async def test_ready_only_when_every_worker_is(stand_ins: list[StandIn]) -> None:
    supervisor = _supervisor(stand_ins)
    assert await _get(supervisor, "/ready") == (200, "text/plain", "LIVE\n")
    stand_ins[1].ready = False
    assert (await _get(supervisor, "/ready"))[0] == 503
    supervisor.stopping = True
    assert await _get(supervisor, "/ready") == (503, "text/plain", "DRAINING\n")


async def test_a_silent_worker_fails_the_page_naming_it(
    stand_ins: list[StandIn], unused_tcp_port: int
) -> None:
    supervisor = _supervisor(stand_ins, dead_port=unused_tcp_port)
    status, _, body = await _get(supervisor, "/stats")
    assert status == 503
    assert body.startswith("worker 2 (pid 1002): GET /stats?format=json: ")


@pytest.fixture
def keep_log_levels() -> Iterator[None]:
    """The supervisor applies ``POST /logging`` to its own loggers too: this process's."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    loggers.append(logging.getLogger("aeraki"))
    levels = [(logger, logger.level) for logger in loggers]
    yield
    for logger, level in levels:
        logger.setLevel(level)


@pytest.mark.usefixtures("keep_log_levels")
async def test_post_logging_reaches_every_worker_unless_refused(stand_ins: list[StandIn]) -> None:
    supervisor = _supervisor(stand_ins)
    act = supervisor_actions(supervisor)["/logging"]
    assert await act({"level": "debug"}) == (200, "text/plain", "levels set\n")
    assert [w.posted for w in stand_ins] == [[{"level": "debug"}], [{"level": "debug"}]]
    status, _, body = await act({"level": "loud"})
    assert (status, body) == (400, "unknown level loud\n")
    assert [len(w.posted) for w in stand_ins] == [1, 1]  # applied nowhere
