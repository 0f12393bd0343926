"""Istio telemetry for our proxy's MetaProtocol listeners, from control-plane options.

Why: without this a standalone user had to hand-write a bootstrap to get spans or Istio
metrics. The options mirror Istio's MeshConfig (reference aeraki-control-plane §6.3, §6.7;
meta-protocol-proxy §22.4-§22.5, §24):

- ``tracing_otlp`` (``HOST:PORT`` of an OTLP/gRPC collector): every MetaProtocol listener
  gets a ``tracing`` block whose ``envoy.tracers.opentelemetry`` provider exports to the
  cluster :data:`OTLP_CLUSTER`, which the translation adds (STATIC for an IP, STRICT_DNS for
  a host name such as a Kubernetes service's, resolved by the proxy); ``random_sampling`` is
  ``tracing_sampling`` percent (Istio's default 1 %), client and overall sampling 100 %, as
  Aeraki's EnvoyFilters write it.
- ``istio_telemetry``: ``metadata_exchange`` and ``istio_stats{destination_service}`` just
  before the router (§6.3).

Either sets the listener's ``traffic_direction`` (OUTBOUND / INBOUND), which tracing (span
kind and name), metadata_exchange and istio_stats read. With both off nothing changes.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2

from aeraki.control.translate.api import TranslateOptions
from aeraki.control.translate.clusters import static_cluster
from aeraki.xds.gen.meta_protocol_proxy.filters.istio_stats.v1alpha import istio_stats_pb2
from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2 as mpp_pb2

__all__ = [
    "ISTIO_STATS_FILTER",
    "METADATA_EXCHANGE_FILTER",
    "OTLP_CLUSTER",
    "OTLP_SERVICE_NAME",
    "add_istio_filters",
    "direction",
    "instrument",
    "otlp_cluster",
    "parse_otlp_address",
    "telemetry_on",
    "trace",
    "tracing",
]

METADATA_EXCHANGE_FILTER = "aeraki.meta_protocol.filters.metadata_exchange"
ISTIO_STATS_FILTER = "aeraki.meta_protocol.filters.istio_stats"
#: The cluster spans are exported to (one per node, added when tracing is on).
OTLP_CLUSTER = "aeraki-otlp-collector"
#: ``service.name`` of exported spans.
OTLP_SERVICE_NAME = "aeraki-proxy"
_OTEL_PROVIDER = "envoy.tracers.opentelemetry"


def _pack(msg: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)  # type: ignore[arg-type]
    return packed


def parse_otlp_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of the collector (an IP, IPv6 in brackets, or a DNS name);
    ``ValueError`` says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT of an OTLP/gRPC collector, got {text!r}")
    if host.startswith("["):
        host = host.strip("[]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {host!r}") from None
    elif not _is_ip(host) and not _DNS_NAME.fullmatch(host):
        raise ValueError(f"expected an IP address or a DNS name, got {host!r}")
    return host, int(port)


#: A DNS name as a cluster may resolve it: dot-separated labels of letters, digits and
#: inner hyphens (RFC 1123), 253 characters at most.
_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?"
)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def telemetry_on(options: TranslateOptions) -> bool:
    """Whether listeners carry a traffic direction (any telemetry option on)."""
    return bool(options.tracing_otlp) or options.istio_telemetry


@functools.lru_cache(maxsize=8)
def tracing(options: TranslateOptions) -> mpp_pb2.Tracing | None:
    """The listeners' ``tracing`` block, or ``None`` when tracing is off (built once per
    options; it is copied into each listener, never changed)."""
    if not options.tracing_otlp:
        return None
    otel = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=OTLP_CLUSTER)
        ),
        service_name=OTLP_SERVICE_NAME,
    )
    return mpp_pb2.Tracing(
        client_sampling=percent_pb2.Percent(value=100),
        random_sampling=percent_pb2.Percent(value=options.tracing_sampling),
        overall_sampling=percent_pb2.Percent(value=100),
        provider=http_tracer_pb2.Tracing.Http(name=_OTEL_PROVIDER, typed_config=_pack(otel)),
    )


def otlp_cluster(options: TranslateOptions) -> cluster_pb2.Cluster | None:
    """The collector's cluster (STATIC for an IP, STRICT_DNS for a name), or ``None`` when
    tracing is off."""
    if not options.tracing_otlp:
        return None
    host, port = parse_otlp_address(options.tracing_otlp)
    cluster = static_cluster(OTLP_CLUSTER, host, port, options)
    if not _is_ip(host):
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
    cluster.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    return cluster


def add_istio_filters(
    filters: list[mpp_pb2.MetaProtocolFilter], host: str, options: TranslateOptions
) -> None:
    """§6.3: ``metadata_exchange`` then ``istio_stats{destination_service}`` just before the
    router (the last filter); nothing unless ``istio_telemetry``."""
    if not options.istio_telemetry:
        return
    stats = istio_stats_pb2.IstioStats(destination_service=host)
    filters[-1:-1] = [
        mpp_pb2.MetaProtocolFilter(name=METADATA_EXCHANGE_FILTER),
        mpp_pb2.MetaProtocolFilter(name=ISTIO_STATS_FILTER, config=_pack(stats)),
    ]


def instrument(
    filters: list[mpp_pb2.MetaProtocolFilter], host: str, options: TranslateOptions
) -> None:
    """Before the proxy config is built: the Istio filters (when on)."""
    add_istio_filters(filters, host, options)


def trace(proxy: mpp_pb2.MetaProtocolProxy, options: TranslateOptions) -> None:
    """After the proxy config is built: its ``tracing`` block (when on)."""
    block = tracing(options)
    if block is not None:
        proxy.tracing.CopyFrom(block)


def direction(options: TranslateOptions, inbound: bool) -> int:
    """The listener's ``traffic_direction``: set only with telemetry on (goldens unchanged
    otherwise)."""
    if not telemetry_on(options):
        return int(base_pb2.UNSPECIFIED)
    return int(base_pb2.INBOUND if inbound else base_pb2.OUTBOUND)
