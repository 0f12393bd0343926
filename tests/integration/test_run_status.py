# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""``aeraki run``'s status view with real traffic: real thriftpy2 calls through the run's own
proxy show up as per-cluster request counters next to the cluster's endpoints; a cluster
whose endpoint is down shows failures; ``--no-status`` prints nothing."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aeraki.control import cli
from tests.control.test_runtime import router_yaml, service_yaml, to_subset
from tests.integration.peers.procs import LOOPBACK, free_ports
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class
from tests.integration.peers.thrift_peer import ThriftServer
from tests.integration.test_control_e2e import (
    THRIFT,
    THRIFT_PORT_NAME,
    thrift_pair,  # noqa: F401  (fixture)
)

DEADLINE = 15.0


def thrift_calls(port: int, calls: int) -> list[str]:
    with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
        return [client.whoami() for _ in range(calls)]


def last_block(out: io.StringIO) -> str:
    return out.getvalue().strip().split("\n\n")[-1]


async def wait_for_line(out: io.StringIO, check: Callable[[str], bool]) -> str:
    """The last status block once one of its lines passes ``check`` (bounded)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        block = last_block(out)
        if any(check(line) for line in block.splitlines()):
            return block
        await asyncio.sleep(0.05)
    raise AssertionError(f"no such status line; last block:\n{last_block(out)}")


async def test_status_counts_each_clusters_requests(
    tmp_path: Path, thrift_pair: tuple[ThriftServer, ThriftServer]
) -> None:
    listen_port, dead_port = free_ports(2)
    v1, _ = thrift_pair
    (tmp_path / "thrift.yaml").write_text(
        service_yaml(
            "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, listen_port, v1.port, dead_port
        )
    )
    (tmp_path / "route.yaml").write_text(
        router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v1"))
    )
    out, stop = io.StringIO(), asyncio.Event()
    run = asyncio.create_task(
        cli.run_mesh(str(tmp_path), quiet=0.02, poll=0.05, out=out, interval=0.05, stop=stop)
    )
    v1_cluster = f"outbound|{listen_port}|v1|{THRIFT}"
    v2_cluster = f"outbound|{listen_port}|v2|{THRIFT}"
    try:
        await wait_for_line(out, lambda ln: ln.startswith(f"  {cli.RUN_NODE_ID} (sotw, in sync)"))
        assert await asyncio.to_thread(thrift_calls, listen_port, 5) == ["v1"] * 5
        block = await wait_for_line(
            out, lambda ln: ln.startswith(f"  {v1_cluster}") and "[rq 5," in ln
        )
        assert f"  {v1_cluster}  127.0.0.1:{v1.port}  [rq 5, active 0, failed 0]" in block
        # route to the subset whose endpoint is down: a failed connect shows as a failure
        (tmp_path / "route.yaml").write_text(
            router_yaml("thrift", "meta-thrift", THRIFT, to_subset(THRIFT, "v2"))
        )
        await wait_for_line(out, lambda ln: "-> v2" in ln)
        await wait_for_line(out, lambda ln: ln.startswith(f"  {cli.RUN_NODE_ID} (sotw, in sync)"))
        with pytest.raises(application_exception_class("thriftpy2")):  # the local reply
            await asyncio.to_thread(thrift_calls, listen_port, 1)
        block = await wait_for_line(
            out, lambda ln: ln.startswith(f"  {v2_cluster}") and "failed 1]" in ln
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(run, DEADLINE) == 0
    assert f"  {v1_cluster}  127.0.0.1:{v1.port}  [rq 5, active 0, failed 0]" in block


async def test_no_status_prints_nothing(tmp_path: Path) -> None:
    listen_port, v1_port, v2_port = free_ports(3)
    (tmp_path / "thrift.yaml").write_text(
        service_yaml(
            "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, listen_port, v1_port, v2_port
        )
    )
    out = io.StringIO()
    assert await cli.run_mesh(str(tmp_path), duration=0.3, out=out, no_status=True) == 0
    assert out.getvalue() == ""
