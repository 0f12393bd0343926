"""Envoy ``Listener`` protos carrying the MetaProtocolProxy network filter -> ListenerConfig.

The filter's ``typed_config`` comes either as the ``MetaProtocolProxy`` itself or, as Aeraki's
control plane emits it, as a ``TypedStruct`` (``udpa.type.v1`` or ``xds.type.v3``) whose
``value`` is the message in JSON form; both become the same proto before any check runs.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from google.protobuf import json_format, message

from aeraki.codec.registry import BUILTIN_CODECS, resolve_codec
from aeraki.errors import CodecNotFound
from aeraki.proxy.bootstrap_clusters import convert_socket_address
from aeraki.proxy.bootstrap_problems import Problems, duration_seconds, join, parse_message
from aeraki.proxy.bootstrap_routes import ClusterRef, convert_meta_route_table
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import FilterConfig, ListenerConfig, MetaProtocolConfig
from aeraki.proxy.filters.api import check_filter_config
from aeraki.proxy.observe.access_log import convert_access_logs
from aeraki.proxy.observe.tracing_config import convert_tracing
from aeraki.xds.registry import FILTER_CONFIG_TYPES, TYPE_URL_PREFIX, message_class

__all__ = [
    "IMPLEMENTED_FILTERS",
    "META_PROTOCOL_FILTER_NAMES",
    "ROUTER_FILTER",
    "convert_listener",
    "meta_protocol_proxy_from_any",
]

#: Network filter names that select the MetaProtocol proxy (Aeraki's, and the name its
#: control plane uses with a TypedStruct).
META_PROTOCOL_FILTER_NAMES = frozenset(
    {"aeraki.meta_protocol_proxy", "envoy.filters.network.meta_protocol_proxy"}
)
ROUTER_FILTER = "aeraki.meta_protocol.filters.router"
#: Filters the proxy implements.
IMPLEMENTED_FILTERS = frozenset(
    {
        ROUTER_FILTER,
        "aeraki.meta_protocol.filters.local_ratelimit",
        "aeraki.meta_protocol.filters.ratelimit",
        "aeraki.meta_protocol.filters.metadata_exchange",
        "aeraki.meta_protocol.filters.istio_stats",
    }
)

_MPP_NAME = "aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy"
_TYPED_STRUCTS = frozenset({"udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"})


def _full_name(type_url: str) -> str:
    return type_url.rsplit("/", 1)[-1]


def meta_protocol_proxy_from_any(typed_config: Any, path: str, problems: Problems) -> Any | None:
    """The ``MetaProtocolProxy`` inside ``typed_config`` (an Any), directly or via TypedStruct."""
    name = _full_name(typed_config.type_url)
    if name == _MPP_NAME:
        proxy = message_class(_MPP_NAME)()
        try:
            typed_config.Unpack(proxy)
        except message.DecodeError as exc:
            problems.add(path, f"cannot decode MetaProtocolProxy: {exc}")
            return None
        return proxy
    if name in _TYPED_STRUCTS:
        wrapper: Any = message_class(name)()
        typed_config.Unpack(wrapper)
        if _full_name(wrapper.type_url) != _MPP_NAME:
            problems.add(
                join(path, "type_url"),
                f"expected {TYPE_URL_PREFIX}{_MPP_NAME}, got {wrapper.type_url!r}",
            )
            return None
        data = json_format.MessageToDict(wrapper.value, preserving_proto_field_name=True)
        return parse_message(data, message_class(_MPP_NAME), join(path, "value"), problems)
    problems.add(
        path, f"expected {TYPE_URL_PREFIX}{_MPP_NAME} (or a TypedStruct of it), got {name!r}"
    )
    return None


#: ``envoy.config.core.v3.TrafficDirection`` numbers -> names.
_DIRECTIONS = {0: "UNSPECIFIED", 1: "INBOUND", 2: "OUTBOUND"}


def convert_listener(
    listener: Any,
    path: str,
    problems: Problems,
    refs: list[ClusterRef],
    *,
    has_ads: bool,
) -> ListenerConfig | None:
    """One listener, or ``None`` if it has no usable MetaProtocol filter (problems recorded)."""
    address = convert_socket_address(
        listener.address, join(path, "address"), problems, is_bind=True
    )
    if not listener.HasField("address"):
        problems.add(join(path, "address"), "required")
    chains = listener.filter_chains
    if not chains:
        problems.add(join(path, "filter_chains"), "one filter chain is required")
        return None
    for extra in range(1, len(chains)):
        problems.add(join(path, f"filter_chains[{extra}]"), "only one filter chain is supported")
    filters = chains[0].filters
    f_path = join(path, "filter_chains[0].filters")
    if len(filters) != 1:
        problems.add(
            f_path,
            f"exactly one network filter (the MetaProtocol proxy) expected, got {len(filters)}",
        )
    if not filters:
        return None
    f_path = join(f_path, "[0]")
    network_filter = filters[0]
    if network_filter.name not in META_PROTOCOL_FILTER_NAMES:
        problems.add(
            join(f_path, "name"),
            f"network filter {network_filter.name!r} not supported yet;"
            f" use one of {sorted(META_PROTOCOL_FILTER_NAMES)}",
        )
        return None
    tc_path = join(f_path, "typed_config")
    if not network_filter.HasField("typed_config"):
        problems.add(tc_path, "required")
        return None
    proxy_proto = meta_protocol_proxy_from_any(network_filter.typed_config, tc_path, problems)
    if proxy_proto is None:
        return None
    if _full_name(network_filter.typed_config.type_url) in _TYPED_STRUCTS:
        tc_path = join(tc_path, "value")
    check_supported(proxy_proto, tc_path, problems)
    proxy = convert_meta_protocol_proxy(proxy_proto, tc_path, problems, refs, has_ads=has_ads)
    name = listener.name or str(address)
    # core.v3.TrafficDirection: the metadata exchange and Istio metrics filters act by it.
    direction = _DIRECTIONS.get(listener.traffic_direction, "UNSPECIFIED")
    return ListenerConfig(name=name, address=address, proxy=proxy, traffic_direction=direction)


def _codec_ok(name: str, path: str, problems: Problems) -> None:
    """Known built-in names pass without importing (the codec loads when the listener
    starts); anything else must resolve now, so a typo or a broken user codec fails at load."""
    if name in BUILTIN_CODECS:
        return
    try:
        resolve_codec(name)
    except CodecNotFound as exc:
        problems.add(path, str(exc))


def convert_meta_protocol_proxy(
    proto: Any,
    path: str,
    problems: Problems,
    refs: list[ClusterRef],
    *,
    has_ads: bool,
) -> MetaProtocolConfig:
    """Apply the §1.1 rules (effective protocol/codec, default filter chain) and check values."""
    if not proto.stat_prefix:
        problems.add(join(path, "stat_prefix"), "required")
    protocol = proto.protocol
    app_protocol = protocol.name or proto.application_protocol
    if not app_protocol:
        problems.add(join(path, "protocol.name"), "required (or deprecated application_protocol)")
    if proto.HasField("protocol") and protocol.HasField("codec") and protocol.codec.name:
        codec, codec_path = protocol.codec.name, join(path, "protocol.codec.name")
    else:
        codec, codec_path = proto.codec.name, join(path, "codec.name")
        if not codec:
            problems.add(join(path, "protocol.codec.name"), "required (or deprecated codec)")
    if codec:
        _codec_ok(codec, codec_path, problems)

    route_table = None
    rds_name = ""
    which = proto.WhichOneof("route_specifier")
    if which == "route_config":
        route_table = convert_meta_route_table(
            proto.route_config, join(path, "route_config"), problems, refs
        )
    elif which == "rds":
        rds_path = join(path, "rds")
        rds_name = proto.rds.route_config_name
        if not rds_name:
            problems.add(join(rds_path, "route_config_name"), "required")
        if not proto.rds.config_source.HasField("ads"):
            problems.add(join(rds_path, "config_source"), "only `ads: {}` is supported yet")
        elif not has_ads:
            problems.add(join(rds_path, "config_source.ads"), "needs dynamic_resources.ads_config")
    else:
        problems.add(path, "one of route_config or rds is required")

    idle_timeout = None
    if proto.HasField("idle_timeout"):
        idle_timeout = duration_seconds(proto.idle_timeout)
        if idle_timeout <= 0:
            problems.add(
                join(path, "idle_timeout"),
                f"must be greater than 0 (omit it for no timeout), got {idle_timeout}s",
            )
    return MetaProtocolConfig(
        stat_prefix=proto.stat_prefix,
        application_protocol=app_protocol,
        codec=codec,
        multiplexing=protocol.multiplexing,
        route_table=route_table,
        rds_name=rds_name,
        filters=_filters(
            proto.meta_protocol_filters, join(path, "meta_protocol_filters"), problems, refs
        ),
        idle_timeout=idle_timeout,
        access_logs=convert_access_logs(proto.access_log, join(path, "access_log"), problems),
        tracing=(
            convert_tracing(proto.tracing, join(path, "tracing"), problems, refs)
            if proto.HasField("tracing")
            else None
        ),
    )


def _filters(
    items: Collection[Any], path: str, problems: Problems, refs: list[ClusterRef]
) -> tuple[FilterConfig, ...]:
    """``meta_protocol_filters`` with configs unpacked and checked by their filter (which adds
    the clusters they name to ``refs``); empty means router only (§1.1)."""
    if not items:
        return (
            FilterConfig(
                name=ROUTER_FILTER, config=message_class(FILTER_CONFIG_TYPES[ROUTER_FILTER])()
            ),
        )
    out: list[FilterConfig] = []
    for i, item in enumerate(items):
        i_path = join(path, f"[{i}]")
        if item.name not in FILTER_CONFIG_TYPES:
            problems.add(join(i_path, "name"), f"unknown filter {item.name!r}")
            continue
        if item.name not in IMPLEMENTED_FILTERS:
            problems.add(join(i_path, "name"), f"filter {item.name!r} is not implemented yet")
            continue
        expected = FILTER_CONFIG_TYPES[item.name]
        config = message_class(expected)()
        if item.HasField("config"):
            got = _full_name(item.config.type_url)
            if got != expected:
                problems.add(
                    join(i_path, "config"), f"expected {TYPE_URL_PREFIX}{expected}, got {got!r}"
                )
                continue
            item.config.Unpack(config)
            check_supported(config, join(i_path, "config"), problems)
        problems.extend(check_filter_config(item.name, config, join(i_path, "config"), refs))
        out.append(FilterConfig(name=item.name, config=config))
    names = [f.name for f in out]
    if names and names[-1] != ROUTER_FILTER:
        problems.add(path, f"the last filter must be {ROUTER_FILTER}")
    if names.count(ROUTER_FILTER) > 1:
        problems.add(path, f"{ROUTER_FILTER} may appear only once")
    return tuple(out)
