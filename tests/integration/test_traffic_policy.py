# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""Timeouts, retries and fault injection (MetaRouter extensions) with real Thrift and Dubbo
peers, configured from manifests through the control plane (the e2e harness of
``test_control_e2e``): the proxy answers in each protocol's own format, retries move calls
to a live host, faults fire at their configured percentages."""

from __future__ import annotations

import asyncio
import math
import socket

import pytest
import yaml

from tests.control.test_runtime import service_yaml
from tests.integration.peers.dubbo import read_frame, request_frame
from tests.integration.peers.procs import LOOPBACK, free_ports
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class
from tests.integration.test_control_e2e import (
    DUBBO,
    DUBBO_PORT_NAME,
    THRIFT,
    THRIFT_PORT_NAME,
    Mesh,
    dubbo_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    dubbo_router,
    mesh,  # noqa: F401
    route,
    thrift_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    thrift_router,
)

#: Dubbo statuses the proxy's local replies carry (reference §14).
DUBBO_SERVER_TIMEOUT = 31
DUBBO_SERVICE_ERROR = 70
DUBBO_THREADPOOL_EXHAUSTED = 100


def whole_service(host: str, subset: str = "v1", extra: str = "") -> str:
    """A route to one subset of ``host`` with route-level extensions in ``extra``."""
    return route("r", (host, subset, None), extra=extra)


def thrift_slow_raises(mesh: Mesh, ms: int) -> BaseException:
    with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.thrift_port) as c:
        with pytest.raises(application_exception_class("thriftpy2")) as raised:
            c.slow(ms)
        assert c.whoami() in {"v1", "v2"}  # the connection survives the local reply
        return raised.value


async def test_route_timeout_is_answered_in_each_protocols_format(mesh: Mesh) -> None:
    extra = "      timeout: 0.3s\n"
    await mesh.apply("thrift-route.yaml", thrift_router(whole_service(THRIFT, extra=extra)))
    await mesh.apply("dubbo-route.yaml", dubbo_router(whole_service(DUBBO, extra=extra)))
    error = await asyncio.to_thread(thrift_slow_raises, mesh, 3000)
    assert "timed out after 0.3s" in str(error)
    (frame,) = await asyncio.to_thread(mesh.dubbo, [request_frame(1, "slow", [3000])])
    assert frame.status == DUBBO_SERVER_TIMEOUT
    assert b"timed out after 0.3s" in frame.body


async def test_retry_succeeds_on_a_second_host(mesh: Mesh) -> None:
    """One endpoint of each service is dead; with retries every call reaches the live one."""
    (dead,) = free_ports(1)
    t_live_port = _endpoint_port(mesh, "thrift", "v2")
    d_live_port = _endpoint_port(mesh, "dubbo", "v2")
    await mesh.apply(
        "thrift.yaml",
        service_yaml(
            "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, mesh.thrift_port, dead, t_live_port
        ),
    )
    await mesh.apply(
        "dubbo.yaml",
        service_yaml(
            "dubbo", "meta-dubbo", DUBBO, DUBBO_PORT_NAME, mesh.dubbo_port, dead, d_live_port
        ),
    )
    retries = "      retries: {attempts: 2, retryOn: connect-failure}\n"
    both = "      route: [{destination: {host: %s}}]\n"
    await mesh.apply(
        "thrift-route.yaml", thrift_router("    - name: r\n" + both % THRIFT + retries)
    )
    await mesh.apply("dubbo-route.yaml", dubbo_router("    - name: r\n" + both % DUBBO + retries))
    labels = await asyncio.to_thread(mesh.thrift_labels, 40)
    assert labels == {"v2": 40}
    # One call at a time: 20 pipelined calls would need ~10 concurrent retries, more than
    # the retry breaker's default of 3 (Envoy's) allows.
    for _ in range(20):
        assert await asyncio.to_thread(mesh.dubbo_values, "whoami", (), 1) == ["v2"]
    stats = mesh.proxy.stats()
    retried = sum(v for k, v in stats.items() if k.endswith(".upstream_rq_retry_success"))
    assert retried >= 2  # round robin sent some first attempts to the dead endpoint


async def test_fault_abort_fires_at_its_percentage(mesh: Mesh) -> None:
    calls, percent = 1000, 25
    fault = (
        "      fault:\n"
        f"        abort: {{errorType: OVER_LIMIT, message: chaos drill, "
        f"percentage: {{value: {percent}}}}}\n"
    )
    await mesh.apply("thrift-route.yaml", thrift_router(whole_service(THRIFT, extra=fault)))

    def run() -> tuple[int, int]:
        aborted = served = 0
        messages: set[str] = set()
        error_cls = application_exception_class("thriftpy2")
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, mesh.thrift_port) as c:
            for _ in range(calls):
                try:
                    assert c.whoami() == "v1"
                    served += 1
                except error_cls as exc:
                    messages.add(str(exc))
                    aborted += 1
        assert all("chaos drill" in m for m in messages)
        return aborted, served

    aborted, served = await asyncio.to_thread(run)
    assert aborted + served == calls
    # Binomial(1000, 0.25): sigma ~ 13.7; a 5-sigma band fails by chance < 1e-6.
    sigma = math.sqrt(calls * percent / 100 * (1 - percent / 100))
    assert abs(aborted - calls * percent / 100) < 5 * sigma


async def test_dubbo_fault_abort_uses_the_error_types_status(mesh: Mesh) -> None:
    fault = "      fault: {abort: {errorType: OVER_LIMIT, message: shed}}\n"
    await mesh.apply("dubbo-route.yaml", dubbo_router(whole_service(DUBBO, extra=fault)))
    frames = await asyncio.to_thread(mesh.dubbo, [request_frame(i, "whoami") for i in (1, 2)])
    assert [f.status for f in frames] == [DUBBO_THREADPOOL_EXHAUSTED] * 2
    assert all(b"shed" in f.body for f in frames)


async def test_fault_delay_holds_a_call_back(mesh: Mesh) -> None:
    """A delayed Dubbo call is overtaken by an undelayed one sent after it on the same
    connection (an ordering fact, not a time measurement)."""
    delayed = route(
        "slow-lane",
        (DUBBO, "v1", None),
        match="{method: {exact: echo}}",
        extra="      fault: {delay: {fixedDelay: 0.5s, percentage: {value: 100}}}\n",
    )
    await mesh.apply("dubbo-route.yaml", dubbo_router(delayed + whole_service(DUBBO)))
    frames = [request_frame(1, "echo", ["late"]), request_frame(2, "whoami")]

    def exchange() -> list[int]:
        with socket.create_connection((LOOPBACK, mesh.dubbo_port), timeout=10) as sock:
            sock.sendall(b"".join(frames))
            return [read_frame(sock).request_id for _ in frames]

    assert await asyncio.to_thread(exchange) == [2, 1]
    assert await asyncio.to_thread(mesh.dubbo_values, "echo", ("x",), 1) == ["x"]


def _endpoint_port(mesh: Mesh, kind: str, label: str) -> int:
    """The port of the ``label`` peer, read back from the manifest the fixture wrote."""
    docs = list(yaml.safe_load_all((mesh.root / f"{kind}.yaml").read_text()))
    for endpoint in docs[0]["spec"]["endpoints"]:
        if endpoint["labels"]["version"] == label:
            return int(next(iter(endpoint["ports"].values())))
    raise AssertionError(f"no {label} endpoint in {kind}.yaml")
