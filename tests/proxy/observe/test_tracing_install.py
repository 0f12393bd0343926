"""The OTLP exporter imports next to xds-protos (which ships old ``opentelemetry/proto``
copies that break it when installed after opentelemetry-proto; ``scripts/setup.sh`` repairs
that). Run in a fresh interpreter so no module imported earlier by the suite hides it."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import envoy.service.discovery.v3.ads_pb2
import envoy.config.trace.v3.opentelemetry_pb2
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
import aeraki.proxy.observe.tracing
OTLPSpanExporter(endpoint="127.0.0.1:1", insecure=True).shutdown()
print("ok")
"""


def test_otlp_exporter_imports_with_xds_protos() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
