"""``benchmarks.request_path`` in miniature, so the microbenchmark cannot rot: its in-memory
closed loop must carry every request through the real request path to an upstream response,
for each protocol it measures."""

from __future__ import annotations

import asyncio

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
