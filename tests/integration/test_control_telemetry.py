# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""Tracing configured by the control plane (``--tracing-otlp``/``--tracing-sampling``/
``--istio-telemetry``): manifests -> ControlPlane with those options -> our proxy as its ADS
client -> real Dubbo and Thrift peers; spans arrive at a real OTLP/gRPC receiver at 100 %
sampling and none (but a forced one) at 0 %."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aeraki.control.runtime import translate_options
from tests.integration.peers.dubbo import DubboProvider, request_frame
from tests.integration.peers.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.integration.peers.procs import LOOPBACK
from tests.integration.peers.thrift_peer import ThriftServer
from tests.integration.test_control_e2e import (
    DUBBO,
    THRIFT,
    Mesh,
    dubbo_pair,  # noqa: F401  (a fixture ``traced_mesh`` uses)
    running_mesh,
    string_value,
    thrift_pair,  # noqa: F401  (a fixture ``traced_mesh`` uses)
)

FORCE = {"x-envoy-force-trace": "yes"}


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OtlpReceiver]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # batches leave quickly
    async with otlp_receiver() as r:
        yield r


@pytest.fixture
async def traced_mesh(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    receiver: OtlpReceiver,
    thrift_pair: tuple[ThriftServer, ThriftServer],
    dubbo_pair: tuple[DubboProvider, DubboProvider],
) -> AsyncIterator[Mesh]:
    """The e2e mesh of ``test_control_e2e``, its control plane tracing at ``request.param`` %."""
    options = translate_options(
        tracing_otlp=f"{LOOPBACK}:{receiver.port}",
        tracing_sampling=float(request.param),
        istio_telemetry=True,
    )
    async with running_mesh(tmp_path / "mesh", thrift_pair, dubbo_pair, options=options) as mesh:
        yield mesh


def _forced(spans: list[ReceivedSpan]) -> bool:
    return any("request metadata: x-envoy-force-trace" in s.attributes for s in spans)


@pytest.mark.parametrize("traced_mesh", [100], indirect=True)
async def test_every_call_is_traced_at_100_percent(
    traced_mesh: Mesh, receiver: OtlpReceiver
) -> None:
    frames = [request_frame(i, "whoami") for i in range(1, 6)]
    replies = await asyncio.to_thread(traced_mesh.dubbo, frames)
    assert {string_value(r) for r in replies} <= {"v1", "v2"}
    labels = await asyncio.to_thread(traced_mesh.thrift_labels, 5)
    assert sum(labels.values()) == 5
    spans = await receiver.wait_spans(10)
    assert len(spans) == 10
    # OUTBOUND listeners (traffic_direction set by the control plane): client-side spans.
    assert all(s.name.startswith("egress ") for s in spans), [s.name for s in spans]
    assert {s.attributes["upstream_cluster"].split("|")[-1] for s in spans} == {DUBBO, THRIFT}
    assert len({s.trace_id for s in spans}) == 10


@pytest.mark.parametrize("traced_mesh", [0], indirect=True)
async def test_no_call_is_traced_at_0_percent(traced_mesh: Mesh, receiver: OtlpReceiver) -> None:
    frames = [request_frame(i, "whoami") for i in range(1, 31)]
    replies = await asyncio.to_thread(traced_mesh.dubbo, frames)
    assert len(replies) == 30
    labels = await asyncio.to_thread(traced_mesh.thrift_labels, 20)
    assert sum(labels.values()) == 20
    # A service-forced request ends last; once its span is here, earlier ones would be too.
    forced = request_frame(99, "whoami", attachments=FORCE)
    await asyncio.to_thread(traced_mesh.dubbo, [forced])
    spans = await receiver.wait_for(_forced)
    assert len(spans) == 1, [s.name for s in spans]
