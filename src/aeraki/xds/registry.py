"""Type registry: which modules define our messages, and type-URL <-> class lookups.

Kept separate from the generated code so the lookups are typed and testable; the generated
modules are imported lazily by :func:`register` (idempotent) rather than at module import
time of every caller.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from google.protobuf import any_pb2, descriptor_pool, message, message_factory

__all__ = [
    "AERAKI_MODULES",
    "CODEC_CONFIG_TYPES",
    "ENVOY_MODULES",
    "FILTER_CONFIG_TYPES",
    "TYPE_URL_PREFIX",
    "message_class",
    "pack",
    "register",
    "type_url",
    "unpack",
]

TYPE_URL_PREFIX = "type.googleapis.com/"

_GEN = "aeraki.xds.gen."
#: Every generated module; importing one registers its file in the default pool.
AERAKI_MODULES: tuple[str, ...] = tuple(
    _GEN + m
    for m in (
        "meta_protocol_proxy.config.route.v1alpha.route_pb2",
        "meta_protocol_proxy.v1alpha.meta_protocol_proxy_pb2",
        "meta_protocol_proxy.admin.v1alpha.config_dump_pb2",
        "meta_protocol_proxy.filters.router.v1alpha.router_pb2",
        "meta_protocol_proxy.filters.local_ratelimit.v1alpha.local_ratelimit_pb2",
        "meta_protocol_proxy.filters.ratelimit.v1alpha.ratelimit_pb2",
        "meta_protocol_proxy.filters.metadata_exchange.v1alpha.metadata_exchange_pb2",
        "meta_protocol_proxy.filters.istio_stats.v1alpha.istio_stats_pb2",
        "meta_protocol.codec.dubbo_codec_pb2",
        "meta_protocol.codec.thrift_codec_pb2",
        "meta_protocol.codec.brpc_codec_pb2",
        "meta_protocol.codec.trpc_codec_pb2",
    )
)

#: Envoy/xDS modules whose messages appear inside our configs as ``Any`` or ``TypedStruct``.
ENVOY_MODULES: tuple[str, ...] = (
    "envoy.config.bootstrap.v3.bootstrap_pb2",
    "envoy.config.listener.v3.listener_pb2",
    "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2",
    "envoy.config.route.v3.route_pb2",
    "envoy.service.discovery.v3.discovery_pb2",
    "udpa.type.v1.typed_struct_pb2",
    "xds.type.v3.typed_struct_pb2",
)

#: meta_protocol_filters name -> full name of its config message.
FILTER_CONFIG_TYPES: dict[str, str] = {
    "aeraki.meta_protocol.filters.router": (
        "aeraki.meta_protocol_proxy.filters.router.v1alpha.Router"
    ),
    "aeraki.meta_protocol.filters.local_ratelimit": (
        "aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit"
    ),
    "aeraki.meta_protocol.filters.ratelimit": (
        "aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit"
    ),
    "aeraki.meta_protocol.filters.metadata_exchange": (
        "aeraki.meta_protocol_proxy.filters.metadata_exchange.v1alpha.MetadataExchange"
    ),
    "aeraki.meta_protocol.filters.istio_stats": (
        "aeraki.meta_protocol_proxy.filters.istio_stats.v1alpha.IstioStats"
    ),
}

#: codec name -> full name of its (empty) config message.
CODEC_CONFIG_TYPES: dict[str, str] = {
    "aeraki.meta_protocol.codec.dubbo": "aeraki.meta_protocol.codec.DubboCodec",
    "aeraki.meta_protocol.codec.thrift": "aeraki.meta_protocol.codec.ThriftCodec",
    "aeraki.meta_protocol.codec.brpc": "aeraki.meta_protocol.codec.BrpcCodec",
    "aeraki.meta_protocol.codec.trpc": "aeraki.meta_protocol.codec.TrpcCodec",
}

_loaded: list[ModuleType] = []


def register() -> None:
    """Import every generated and Envoy module we rely on (idempotent, cheap after the first)."""
    if _loaded:
        return
    _loaded.extend(importlib.import_module(name) for name in (*AERAKI_MODULES, *ENVOY_MODULES))


def type_url(msg: message.Message | type[message.Message]) -> str:
    """``type.googleapis.com/<full name>`` of a message or message class."""
    return TYPE_URL_PREFIX + msg.DESCRIPTOR.full_name


def message_class(url_or_name: str) -> type[message.Message]:
    """The message class for a type URL (any ``…/`` prefix) or a full message name.

    Raises:
        KeyError: the type is not in the default descriptor pool.
    """
    register()
    full_name = url_or_name.rsplit("/", 1)[-1]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise KeyError(f"unknown message type {full_name!r}") from None
    return message_factory.GetMessageClass(desc)


def pack(msg: message.Message) -> any_pb2.Any:
    """``msg`` wrapped in an ``Any`` with the standard type URL prefix."""
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def unpack(value: any_pb2.Any) -> message.Message:
    """The message inside ``value``, of whatever registered type its URL names.

    Raises:
        KeyError: unknown type URL.
        google.protobuf.message.DecodeError: the bytes do not parse as that type.
    """
    cls = message_class(value.type_url)
    out = cls()
    out.ParseFromString(value.value)
    return out
