"""Listeners carrying the ``aeraki.meta_protocol_proxy`` network filter (reference §6.1–§6.5).

Outbound (§6.1): ``stat_prefix outbound|<port>||<host>``, ``protocol {name, codec {name}}``,
routes over ADS by name ``<host>_<port>``. Inbound (§6.2): ``stat_prefix inbound|<port>||`` and
one inline match-all route to the local application's cluster ``inbound|<port>||``.

Filters: MetaRouter rate limits (local before global, §6.3) then the router, last. Aeraki's
``metadata_exchange`` and ``istio_stats`` filters and tracing are added by :mod:`.telemetry`
only when its options are on (off by default). Access logs come from the
mesh settings in :class:`TranslateOptions` (Istio's ``accessLogFile``/``Encoding``/``Format``),
as Aeraki's EnvoyFilters carry them (§6.6).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
)
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.ratelimit.v3 import rls_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.type.v3 import token_bucket_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from aeraki.control.model.base import Resource, Severity
from aeraki.control.model.metaprotocol import MetaRouterSpec, TokenBucket
from aeraki.control.translate.api import (
    LOCAL_RATELIMIT_FILTER,
    RATELIMIT_FILTER,
    ROUTER_FILTER,
    TranslateOptions,
)
from aeraki.control.translate.catalog import Catalog, PortRef, problem
from aeraki.control.translate.clusters import ads_source, duration
from aeraki.control.translate.routes import attributes_of, header_matchers
from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as meta_route
from aeraki.xds.gen.meta_protocol_proxy.filters.local_ratelimit.v1alpha import (
    local_ratelimit_pb2,
)
from aeraki.xds.gen.meta_protocol_proxy.filters.ratelimit.v1alpha import ratelimit_pb2
from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2 as mpp_pb2

__all__ = [
    "MPP_FILTER",
    "access_logs",
    "inbound_cluster_name",
    "listener",
    "meta_protocol_filters",
    "meta_protocol_proxy",
]

MPP_FILTER = "aeraki.meta_protocol_proxy"
_DEFAULT_RLS_TIMEOUT = timedelta(milliseconds=20)  # proto doc default (quirk §16.9)


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


def _pack(msg: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def _token_bucket(bucket: TokenBucket) -> token_bucket_pb2.TokenBucket | None:
    if bucket.fill_interval is None or bucket.max_tokens < 1:
        return None
    out = token_bucket_pb2.TokenBucket(
        max_tokens=bucket.max_tokens, fill_interval=duration(bucket.fill_interval)
    )
    out.tokens_per_fill.value = bucket.tokens_per_fill or 1  # default 1 (quirk §16.9)
    return out


def _local_rate_limit(
    catalog: Catalog, mr: Resource[MetaRouterSpec]
) -> local_ratelimit_pb2.LocalRateLimit | None:
    """§6.4: ``stat_prefix`` = host; conditions without a (valid) bucket are dropped."""
    spec = mr.spec.local_rate_limit
    assert spec is not None
    out = local_ratelimit_pb2.LocalRateLimit(stat_prefix=mr.spec.hosts[0])
    if spec.token_bucket is not None:
        bucket = _token_bucket(spec.token_bucket)
        if bucket is None:
            catalog.problems.append(
                problem(
                    mr, "spec.localRateLimit.tokenBucket", "needs maxTokens ≥ 1 and fillInterval"
                )
            )
        else:
            out.token_bucket.CopyFrom(bucket)
    for i, cond in enumerate(spec.conditions):
        bucket = _token_bucket(cond.token_bucket) if cond.token_bucket else None
        if bucket is None:
            catalog.problems.append(
                problem(
                    mr,
                    f"spec.localRateLimit.conditions[{i}].tokenBucket",
                    "condition without a valid token bucket is ignored",
                    Severity.WARNING,
                )
            )
            continue
        c = out.conditions.add(token_bucket=bucket)
        c.match.metadata.extend(
            header_matchers(attributes_of(cond.match.attributes if cond.match else None))
        )
    if not out.HasField("token_bucket") and not out.conditions:
        catalog.problems.append(
            problem(
                mr, "spec.localRateLimit", "either tokenBucket or conditions should be specified"
            )
        )
        return None
    return out


def _global_rate_limit(
    catalog: Catalog, mr: Resource[MetaRouterSpec]
) -> ratelimit_pb2.RateLimit | None:
    """§6.5, with ``requestTimeout`` defaulting to 20 ms instead of crashing (§16.9)."""
    spec = mr.spec.global_rate_limit
    assert spec is not None
    if not spec.descriptors or not spec.domain or not spec.rate_limit_service:
        catalog.problems.append(
            problem(
                mr,
                "spec.globalRateLimit",
                "domain, rateLimitService and at least one descriptor are required",
            )
        )
        return None
    out = ratelimit_pb2.RateLimit(
        domain=spec.domain,
        timeout=duration(spec.request_timeout or _DEFAULT_RLS_TIMEOUT),
        failure_mode_deny=spec.deny_on_fail,
        rate_limit_service=rls_pb2.RateLimitServiceConfig(
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=spec.rate_limit_service
                )
            ),
            transport_api_version=config_source_pb2.V3,
        ),
    )
    out.match.metadata.extend(
        header_matchers(attributes_of(spec.match.attributes if spec.match else None))
    )
    for d in spec.descriptors:
        out.descriptors.add(property=d.property, descriptor_key=d.descriptor_key)
    return out


def meta_protocol_filters(
    catalog: Catalog,
    mr: Resource[MetaRouterSpec] | None,
    options: TranslateOptions,
    *,
    with_rate_limits: bool,
) -> list[mpp_pb2.MetaProtocolFilter]:
    """``[local_ratelimit?, ratelimit?, router]`` (§6.3 order)."""
    filters: list[mpp_pb2.MetaProtocolFilter] = []
    if mr is not None and with_rate_limits:
        wanted: list[tuple[str, str, Message | None]] = []
        if mr.spec.local_rate_limit is not None:
            wanted.append(
                (LOCAL_RATELIMIT_FILTER, "spec.localRateLimit", _local_rate_limit(catalog, mr))
            )
        if mr.spec.global_rate_limit is not None:
            wanted.append(
                (RATELIMIT_FILTER, "spec.globalRateLimit", _global_rate_limit(catalog, mr))
            )
        for name, path, config in wanted:
            if config is None:
                continue
            if name not in options.supported_filters:
                catalog.problems.append(
                    problem(
                        mr,
                        path,
                        f"not enforced: the data plane does not implement {name} yet "
                        "(TranslateOptions.supported_filters)",
                        Severity.WARNING,
                    )
                )
                continue
            filters.append(mpp_pb2.MetaProtocolFilter(name=name, config=_pack(config)))
    filters.append(mpp_pb2.MetaProtocolFilter(name=ROUTER_FILTER))
    return filters


@functools.lru_cache(maxsize=8)
def access_logs(options: TranslateOptions) -> tuple[accesslog_pb2.AccessLog, ...]:
    """The mesh access log as Aeraki writes it (§6.6): an ``envoy.access_loggers.file`` to
    ``access_log_file`` with the text format, or the JSON map for ``JSON`` (a format that is
    not a JSON object falls back to the default map, as Aeraki does); none without a file.
    Built once per options (the messages are copied into each listener, never changed)."""
    if not options.access_log_file:
        return ()
    # Imported here: the EnvoyFilter renderer imports this module.
    from aeraki.control.envoyfilter.mesh import access_log_format

    fmt = access_log_format(options.access_log_encoding, options.access_log_format)
    log = file_pb2.FileAccessLog(path=options.access_log_file, log_format=fmt)
    return (accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=_pack(log)),)


def meta_protocol_proxy(
    ref: PortRef,
    stat_prefix: str,
    filters: list[mpp_pb2.MetaProtocolFilter],
    *,
    route_config_name: str = "",
    inline_cluster: str = "",
    access_log: Sequence[accesslog_pb2.AccessLog] = (),
) -> mpp_pb2.MetaProtocolProxy:
    """The filter config: routes over ADS by name, or one inline route to ``inline_cluster``;
    ``access_log`` from :func:`access_logs`."""
    proxy = mpp_pb2.MetaProtocolProxy(
        stat_prefix=stat_prefix,
        protocol=mpp_pb2.ApplicationProtocol(
            name=ref.app_protocol, codec=mpp_pb2.Codec(name=ref.codec)
        ),
        meta_protocol_filters=filters,
        access_log=access_log,
    )
    if route_config_name:
        proxy.rds.config_source.CopyFrom(ads_source())
        proxy.rds.route_config_name = route_config_name
    else:
        route = meta_route.Route()
        route.route.cluster = inline_cluster
        proxy.route_config.CopyFrom(
            meta_route.RouteConfiguration(name=inline_cluster, routes=[route])
        )
    return proxy


def listener(
    name: str,
    address: str,
    port: int,
    filter_name: str,
    config: Message,
    direction: int = base_pb2.UNSPECIFIED,
) -> listener_pb2.Listener:
    """One listener, one filter chain, one network filter with a packed typed config;
    ``direction`` is the ``traffic_direction`` telemetry reads (:mod:`.telemetry`)."""
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name=filter_name, typed_config=_pack(config))]
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=[chain],
        traffic_direction=direction,
    )
