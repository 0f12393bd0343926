"""``benchmarks.request_path`` in miniature, so the microbenchmark cannot rot: its in-memory
closed loop must carry every request through the real request path to an upstream response,
for each protocol it measures."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from benchmarks import request_path


@pytest.mark.parametrize("protocol", sorted(request_path.PROTOCOLS))
def test_every_request_gets_its_upstream_response(protocol: str) -> None:
    runs = asyncio.run(
        request_path.measure(requests=300, repeat=2, connections=7, protocol=protocol)
    )
    assert len(runs) == 2
    assert all(run > 0 for run in runs)


@pytest.mark.parametrize("protocol", sorted(request_path.PROTOCOLS))
def test_a_lost_response_is_reported(protocol: str) -> None:
    async def short() -> None:
        bench = request_path._Bench(request_path.PROTOCOLS[protocol], connections=3)
        await bench.run(30)
        bench.check(31)  # one more than went through

    with pytest.raises(SystemExit, match="30 upstream responses for 31 requests"):
        asyncio.run(short())


def test_the_attachment_route_loads_and_matches_the_attachment() -> None:
    runs = asyncio.run(
        request_path.measure(
            requests=300, repeat=2, connections=7, protocol="dubbo", route_attachment=True
        )
    )
    assert len(runs) == 2


def test_the_attachment_route_refuses_requests_without_the_attachment() -> None:
    """The variant measures what it says: a request whose ``env`` differs gets no route."""
    dubbo = request_path.PROTOCOLS["dubbo"]
    other_env = dataclasses.replace(
        dubbo,
        config=request_path.ATTACHMENT_CONFIGS["dubbo"],
        request=lambda index: dubbo.request(index).replace(b"\x05bench", b"\x05bunch"),
    )
    assert b"\x05bench" in dubbo.request(0)

    async def short() -> None:
        bench = request_path._Bench(other_env, connections=3)
        await bench.run(30)
        bench.check(30)

    with pytest.raises(SystemExit, match="0 upstream responses for 30 requests, 30 local"):
        asyncio.run(short())
