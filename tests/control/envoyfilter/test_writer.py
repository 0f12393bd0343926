"""Kubernetes mode writer: debounce, coalescing, no-op passes, retries (§13.4, §16.3)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from aeraki.control.envoyfilter.writer import EnvoyFilterWriter
from aeraki.control.model import ConfigSnapshot
from aeraki.control.sources.kubeclient import KubeClient
from tests.control.envoyfilter.helpers import load
from tests.control.envoyfilter.test_reconcile import API, apiserver, kube, writes
from tests.control.sources.fake_apiserver import FakeApiServer
from tests.control.sources.helpers import poll_until

__all__ = ["apiserver", "kube"]  # fixtures re-used from test_reconcile

KAFKA = "data/kafka.yaml"


@pytest.fixture
async def writer(kube: KubeClient) -> AsyncIterator[EnvoyFilterWriter]:
    w = EnvoyFilterWriter(kube, quiet=0.05, max_delay=0.5, retries=2, retry_delay=0.01)
    task = asyncio.create_task(w.run())
    yield w
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_coalesces_and_skips_no_ops(
    apiserver: FakeApiServer, writer: EnvoyFilterWriter
) -> None:
    config = load(KAFKA)
    empty = ConfigSnapshot()
    for snapshot in (empty, config, empty, config):  # a burst: one pass with the last
        writer.offer(snapshot)
    await poll_until(lambda: writer.passes == 1)
    assert writer.last is not None
    assert len(writer.last.created) == 4
    mark = len(apiserver.requests)
    writer.offer(dataclasses.replace(config))  # same rendering: no API call at all
    await asyncio.sleep(0.2)
    assert writer.passes == 1
    assert apiserver.requests[mark:] == []
    writer.offer(empty)  # everything withdrawn: stale EFs deleted
    await poll_until(lambda: writer.passes == 2)
    assert len(writer.last.deleted) == 4
    assert writes(apiserver, mark) == [("DELETE", p) for _, p in writes(apiserver, mark)]


async def test_retries_then_succeeds(apiserver: FakeApiServer, writer: EnvoyFilterWriter) -> None:
    apiserver.fail_next(503, count=2, path_contains="/envoyfilters")
    writer.offer(load(KAFKA))
    await poll_until(lambda: writer.last is not None and not writer.last.errors)
    assert writer.passes == 3
    name = "aeraki-inbound-my-release-kafka.kafka.svc.cluster.local-9092"
    assert apiserver.get(API, "EnvoyFilter", "istio-system", name) is not None


async def test_offer_never_blocks(kube: KubeClient) -> None:
    idle = EnvoyFilterWriter(kube)  # not running: a non-leader replica
    for _ in range(1000):
        idle.offer(ConfigSnapshot())
