"""Patch values: the network filters Aeraki puts into Istio's listeners (§5.4, §6, §8-§11).

Configs are built as protos by the translation's own helpers (:mod:`aeraki.control.translate`:
filter chain, rate limits, inline inbound route, native Dubbo/Thrift routes), then adjusted to
what Aeraki sends to *Istio* sidecars, which differs from what our own proxy gets over ADS:

- ``application_protocol`` + ``codec`` (MPP fields 2 and 5, what meta-protocol-proxy 1.4 reads)
  instead of ``protocol`` (12); routes by RDS from the ``aeraki-xds`` cluster the bootstrap
  override defines (§6.1, §13.7) instead of ADS;
- Istio telemetry filters ``metadata_exchange`` and ``istio_stats`` before the router, tracing
  and access log from the mesh config (§6.3, §6.6, §6.7);
- rate-limit filters on the inbound side only (§6.2).

Encoding (§5.4): proto field names (snake_case, as the e2e config dumps show; §16.23), zero
enums and empty lists omitted, wrapped in ``udpa.type.v1.TypedStruct``. Whole-number doubles are
written as integers (``{"value": 100}`` as in §6.1) so the object survives the API server's JSON
round trip unchanged and reconciliation sees no spurious diff.

Deviations inherited from the translation's builders, on purpose: native Dubbo header matches
use ``string_match`` (Aeraki: deprecated ``exact_match``…) and weighted clusters carry no
``total_weight`` (deprecated; Envoy uses the sum); a Thrift VirtualService exact ``method``
match becomes ``method_name`` (Aeraki matched every method, §9); the global rate limit service
carries ``transport_api_version: V3``.
"""

from __future__ import annotations

from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import (
    config_source_pb2,
    grpc_service_pb2,
)
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from aeraki.control.envoyfilter.mesh import MeshConfig, access_log_format
from aeraki.control.translate.api import (
    LOCAL_RATELIMIT_FILTER,
    RATELIMIT_FILTER,
    ROUTER_FILTER,
    TranslateOptions,
)
from aeraki.control.translate.catalog import Catalog, PortRef
from aeraki.control.translate.listeners import (
    inbound_cluster_name,
    meta_protocol_filters,
    meta_protocol_proxy,
)
from aeraki.control.translate.native import native_inbound_config, native_outbound_config
from aeraki.control.translate.routes import plan_routes
from aeraki.xds.gen.meta_protocol_proxy.filters.istio_stats.v1alpha import istio_stats_pb2
from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2 as mpp_pb2

__all__ = [
    "AERAKI_XDS_CLUSTER",
    "MPP_FILTER",
    "MPP_TYPE_URL",
    "TYPED_STRUCT",
    "Filter",
    "mpp_inbound",
    "mpp_outbound",
    "native_inbound",
    "native_outbound",
    "stats_only",
]

Filter = dict[str, Any]  # a patch value: {"name": ..., "typed_config": {...}}

TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
TYPE_PREFIX = "type.googleapis.com/"
MPP_FILTER = "envoy.filters.network.meta_protocol_proxy"
MPP_TYPE_URL = TYPE_PREFIX + "aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy"
AERAKI_XDS_CLUSTER = "aeraki-xds"  # defined by the sidecar bootstrap override (§13.7)
METADATA_EXCHANGE_FILTER = "aeraki.meta_protocol.filters.metadata_exchange"
ISTIO_STATS_FILTER = "aeraki.meta_protocol.filters.istio_stats"
FILE_ACCESS_LOG = "envoy.access_loggers.file"
_ALL_FILTERS = TranslateOptions(
    supported_filters=frozenset({ROUTER_FILTER, LOCAL_RATELIMIT_FILTER, RATELIMIT_FILTER})
)
#: §6.6 JSON encoding default: key → command operator.


def _plain(value: Any) -> Any:
    """Whole-number floats as ints, recursively (see the module docstring)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _re2(value: Any) -> Any:
    """Every ``RegexMatcher`` spelled with ``google_re2: {}`` as Aeraki writes it (§8.1: the
    Dubbo e2e config dump expects ``{"safe_regex":{"google_re2":{},"regex":".*"}}``)."""
    if isinstance(value, dict):
        out = {k: _re2(v) for k, v in value.items()}
        for key in ("safe_regex", "safe_regex_match"):
            if isinstance(out.get(key), dict):
                out[key] = {"google_re2": {}, **out[key]}
        return out
    if isinstance(value, list):
        return [_re2(v) for v in value]
    return value


def _filter(name: str, config: Message | dict[str, Any], type_url: str = "") -> Filter:
    """``{name, typed_config: TypedStruct{type_url, value}}`` (§5.2, §5.4)."""
    if isinstance(config, Message):
        type_url = TYPE_PREFIX + config.DESCRIPTOR.full_name
        config = json_format.MessageToDict(config, preserving_proto_field_name=True)
    value = _plain(_re2(config))
    return {
        "name": name,
        "typed_config": {"@type": TYPED_STRUCT, "type_url": type_url, "value": value},
    }


def _pack(msg: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def _aeraki_rds() -> config_source_pb2.ConfigSource:
    """§6.1 ``rds.config_source``: gRPC to ``aeraki-xds``, v3 (MetaRDS, §12)."""
    api = config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.GRPC,
        transport_api_version=config_source_pb2.V3,
        grpc_services=[
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=AERAKI_XDS_CLUSTER)
            )
        ],
    )
    return config_source_pb2.ConfigSource(
        api_config_source=api, resource_api_version=config_source_pb2.V3
    )


def _access_log(mesh: MeshConfig) -> accesslog_pb2.AccessLog:
    """§6.6: file access log with the mesh format (TEXT) or JSON map."""
    fmt = access_log_format(mesh.access_log_encoding, mesh.access_log_format)
    log = file_pb2.FileAccessLog(path=mesh.access_log_file or "/dev/stdout", log_format=fmt)
    return accesslog_pb2.AccessLog(name=FILE_ACCESS_LOG, typed_config=_pack(log))


def _for_istio(proxy: mpp_pb2.MetaProtocolProxy, ref: PortRef, mesh: MeshConfig) -> None:
    """Turn the translation's proxy config into the form Aeraki writes (module docstring)."""
    proxy.ClearField("protocol")
    proxy.application_protocol = ref.app_protocol
    proxy.codec.name = ref.codec
    if proxy.HasField("rds"):
        proxy.rds.config_source.CopyFrom(_aeraki_rds())
    if mesh.enable_tracing:
        sampling = 1.0 if mesh.tracing_sampling is None else mesh.tracing_sampling
        proxy.tracing.client_sampling.CopyFrom(percent_pb2.Percent(value=100))
        proxy.tracing.random_sampling.CopyFrom(percent_pb2.Percent(value=sampling))
        proxy.tracing.overall_sampling.CopyFrom(percent_pb2.Percent(value=100))
    if mesh.access_log_file:
        proxy.access_log.append(_access_log(mesh))


def _telemetry(filters: list[mpp_pb2.MetaProtocolFilter], host: str) -> None:
    """§6.3: ``metadata_exchange`` and ``istio_stats{destination_service}`` before the router."""
    stats = istio_stats_pb2.IstioStats(destination_service=host)
    filters[-1:-1] = [
        mpp_pb2.MetaProtocolFilter(name=METADATA_EXCHANGE_FILTER),
        mpp_pb2.MetaProtocolFilter(name=ISTIO_STATS_FILTER, config=_pack(stats)),
    ]


def mpp_outbound(catalog: Catalog, ref: PortRef, mesh: MeshConfig) -> Filter:
    """§6.1: routes ``<host>_<port>`` by MetaRDS; no rate limits on the client side."""
    filters = meta_protocol_filters(catalog, None, _ALL_FILTERS, with_rate_limits=False)
    _telemetry(filters, ref.host)
    proxy = meta_protocol_proxy(
        ref, f"outbound|{ref.number}||{ref.host}", filters, route_config_name=ref.route_name
    )
    _for_istio(proxy, ref, mesh)
    return _filter(MPP_FILTER, proxy)


def mpp_inbound(catalog: Catalog, ref: PortRef, mesh: MeshConfig) -> Filter:
    """§6.2: one inline route to ``inbound|<port>||``; the MetaRouter's rate limits (§6.4-§6.5)."""
    mr = catalog.meta_router(ref.host)
    filters = meta_protocol_filters(catalog, mr, _ALL_FILTERS, with_rate_limits=True)
    _telemetry(filters, ref.host)
    cluster = inbound_cluster_name(ref.number)
    proxy = meta_protocol_proxy(ref, cluster, filters, inline_cluster=cluster)
    _for_istio(proxy, ref, mesh)
    return _filter(MPP_FILTER, proxy)


def native_outbound(catalog: Catalog, ref: PortRef) -> Filter | None:
    """§8.1 / §9 outbound: Envoy's dubbo_proxy / thrift_proxy routed by VirtualService."""
    built = native_outbound_config(catalog, ref, plan_routes(catalog, ref))
    return None if built is None else _filter(*built)


def native_inbound(ref: PortRef) -> Filter:
    """§8.2 / §9 inbound: every request to ``inbound|<port>||``."""
    return _filter(*native_inbound_config(ref, inbound_cluster_name(ref.number)))


def stats_only(filter_name: str, type_name: str, stat_prefix: str) -> Filter:
    """§11 Kafka / ZooKeeper: a decoding filter with only a stat prefix."""
    return _filter(filter_name, {"stat_prefix": stat_prefix}, TYPE_PREFIX + type_name)
