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

from aeraki.control.cli import local_proxy_bootstrap
from aeraki.control.runtime import ControlPlane, translate_options
from aeraki.control.sources.files import FileSource
from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.server import ProxyServer
from tests.control.test_runtime import service_yaml
from tests.integration.peers.dubbo import DubboProvider, request_frame
from tests.integration.peers.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.integration.peers.procs import LOOPBACK, free_ports
from tests.integration.peers.thrift_peer import ThriftServer
from tests.integration.test_control_e2e import (
    DUBBO,
    DUBBO_PORT_NAME,
    THRIFT,
    THRIFT_PORT_NAME,
    WAIT,
    Mesh,
    dubbo_pair,  # noqa: F401  (a fixture ``traced_mesh`` uses)
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
    thrift_port, dubbo_port = free_ports(2)
    root = tmp_path / "mesh"
    root.mkdir()
    (t1, t2), (d1, d2) = thrift_pair, dubbo_pair
    (root / "thrift.yaml").write_text(
        service_yaml(
            "thrift", "meta-thrift", THRIFT, THRIFT_PORT_NAME, thrift_port, t1.port, t2.port
        )
    )
    (root / "dubbo.yaml").write_text(
        service_yaml("dubbo", "meta-dubbo", DUBBO, DUBBO_PORT_NAME, dubbo_port, d1.port, d2.port)
    )
    options = translate_options(
        tracing_otlp=f"{LOOPBACK}:{receiver.port}",
        tracing_sampling=float(request.param),
        istio_telemetry=True,
    )
    plane = ControlPlane(
        FileSource(root, interval=0.1), xds_port=0, quiet=0.05, max_delay=0.5, options=options
    )
    port = await plane.start()
    proxy = ProxyServer(bootstrap_from_dict(local_proxy_bootstrap(port)), drain_timeout=1.0)
    await proxy.start()
    mesh = Mesh(root, plane, proxy, thrift_port, dubbo_port)
    try:
        await asyncio.wait_for(proxy.wait_ready(), WAIT)
        await mesh.synced()
        yield mesh
    finally:
        await proxy.shutdown()
        await plane.stop()
    assert plane.metrics.snapshots_rejected_total == 0  # the proxy ACKed every push


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
