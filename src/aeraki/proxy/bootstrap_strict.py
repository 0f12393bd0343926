"""Reject every config field the proxy does not implement, naming its full path.

Envoy's bootstrap has hundreds of fields; silently ignoring one (a circuit breaker, a TLS
transport socket, a tracing provider) would make the proxy behave differently from what the
config says. So the rule is a whitelist: :data:`SUPPORTED` lists, per message type, the fields
the proxy honours; :func:`check_supported` walks the fields actually set (``ListFields()``) and
reports anything else as ``<path>: not supported yet``. Adding a feature means adding its
fields here, next to the code that implements them.
"""

from __future__ import annotations

from google.protobuf import descriptor, message

from aeraki.proxy.bootstrap_problems import Problems, join

__all__ = ["LEAF_TYPES", "SUPPORTED", "check_supported"]

_RT = "aeraki.meta_protocol_proxy.config.route.v1alpha."
_MPP = "aeraki.meta_protocol_proxy.v1alpha."
_LRL = "aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha."
_GRL = "aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha."

#: message full name -> fields the proxy implements. Message-typed fields recurse.
SUPPORTED: dict[str, frozenset[str]] = {
    name: frozenset(fields.split())
    for name, fields in {
        # --- bootstrap ---
        "envoy.config.bootstrap.v3.Bootstrap": (
            "node static_resources dynamic_resources admin tracing"
        ),
        "envoy.config.trace.v3.Tracing": "http",
        "envoy.config.bootstrap.v3.Bootstrap.StaticResources": "listeners clusters",
        "envoy.config.bootstrap.v3.Bootstrap.DynamicResources": "ads_config lds_config cds_config",
        "envoy.config.bootstrap.v3.Admin": "address",
        "envoy.config.core.v3.Node": "id cluster metadata locality",
        "envoy.config.core.v3.Locality": "region zone sub_zone",
        "envoy.config.core.v3.ApiConfigSource": (
            "api_type transport_api_version grpc_services set_node_on_first_message_only"
        ),
        "envoy.config.core.v3.GrpcService": "envoy_grpc",
        "envoy.config.core.v3.GrpcService.EnvoyGrpc": "cluster_name",
        "envoy.config.core.v3.ConfigSource": "ads resource_api_version",
        "envoy.config.core.v3.AggregatedConfigSource": "",
        # --- listeners (typed_config is checked after unpacking) ---
        "envoy.config.listener.v3.Listener": "name address filter_chains traffic_direction",
        "envoy.config.listener.v3.FilterChain": "filters",
        "envoy.config.listener.v3.Filter": "name typed_config",
        "envoy.config.core.v3.Address": "socket_address",
        "envoy.config.core.v3.SocketAddress": "address port_value",
        # --- clusters ---
        "envoy.config.cluster.v3.Cluster": (
            "name type lb_policy connect_timeout load_assignment dns_refresh_rate"
            " ring_hash_lb_config maglev_lb_config least_request_lb_config eds_cluster_config"
            " http2_protocol_options"
            " circuit_breakers outlier_detection health_checks max_requests_per_connection"
            " typed_extension_protocol_options"
            " common_lb_config"
        ),
        # --- locality-aware balancing (aeraki.proxy.upstream.lb.priority) ---
        "envoy.config.cluster.v3.Cluster.CommonLbConfig": (
            "locality_weighted_lb_config healthy_panic_threshold"
        ),
        "envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig": "",
        "envoy.config.cluster.v3.Cluster.EdsClusterConfig": "eds_config service_name",
        "envoy.config.cluster.v3.Cluster.RingHashLbConfig": "minimum_ring_size maximum_ring_size",
        "envoy.config.cluster.v3.Cluster.MaglevLbConfig": "table_size",
        "envoy.config.cluster.v3.Cluster.LeastRequestLbConfig": "choice_count",
        # --- circuit breaking, outlier detection, health checks (bootstrap_resilience) ---
        # track_remaining, max_connection_pools and per_host_thresholds are not implemented.
        "envoy.config.cluster.v3.CircuitBreakers": "thresholds",
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds": (
            "priority max_connections max_pending_requests max_requests max_retries retry_budget"
        ),
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget": (
            "budget_percent min_retry_concurrency"
        ),
        "envoy.type.v3.Percent": "value",
        # success-rate / failure-percentage detectors: only their enforcing_* = 0 (off).
        "envoy.config.cluster.v3.OutlierDetection": (
            "consecutive_5xx consecutive_gateway_failure consecutive_local_origin_failure"
            " enforcing_consecutive_5xx enforcing_consecutive_gateway_failure"
            " enforcing_consecutive_local_origin_failure split_external_local_origin_errors"
            " interval base_ejection_time max_ejection_time max_ejection_percent"
            " successful_active_health_check_uneject_host enforcing_success_rate"
            " enforcing_local_origin_success_rate enforcing_failure_percentage"
            " enforcing_failure_percentage_local_origin"
        ),
        "envoy.config.core.v3.HealthCheck": (
            "timeout interval unhealthy_threshold healthy_threshold tcp_health_check"
        ),
        "envoy.config.core.v3.HealthCheck.TcpHealthCheck": "send receive",
        "envoy.config.core.v3.HealthCheck.Payload": "text binary",
        # typed_extension_protocol_options: only max_requests_per_connection is read; the
        # upstream HTTP version means nothing to a MetaProtocol upstream.
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": (
            "common_http_protocol_options explicit_http_config use_downstream_protocol_config"
        ),
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": (
            "http_protocol_options http2_protocol_options"
        ),
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig": (
            "http_protocol_options http2_protocol_options"
        ),
        "envoy.config.core.v3.HttpProtocolOptions": "max_requests_per_connection",
        "envoy.config.core.v3.Http1ProtocolOptions": "",
        # gRPC (our xDS client) always speaks HTTP/2; the empty option is accepted for Envoy.
        "envoy.config.core.v3.Http2ProtocolOptions": "",
        "envoy.config.endpoint.v3.ClusterLoadAssignment": "cluster_name endpoints",
        "envoy.config.endpoint.v3.LocalityLbEndpoints": (
            "lb_endpoints locality load_balancing_weight priority"
        ),
        "envoy.config.endpoint.v3.LbEndpoint": "endpoint load_balancing_weight metadata",
        "envoy.config.endpoint.v3.Endpoint": "address",
        "envoy.config.core.v3.Metadata": "filter_metadata",
        # --- MetaProtocolProxy ---
        _MPP + "MetaProtocolProxy": (
            "stat_prefix application_protocol rds route_config codec meta_protocol_filters"
            " idle_timeout protocol access_log tracing"
        ),
        # --- access logs (aeraki.proxy.observe.access_log; typed_config checked unpacked) ---
        "envoy.config.accesslog.v3.AccessLog": "name typed_config",
        "envoy.extensions.access_loggers.file.v3.FileAccessLog": (
            "path format json_format log_format"
        ),
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog": "log_format",
        "envoy.extensions.access_loggers.stream.v3.StderrAccessLog": "log_format",
        "envoy.config.core.v3.SubstitutionFormatString": (
            "text_format json_format text_format_source omit_empty_values"
        ),
        "envoy.config.core.v3.DataSource": "inline_string",
        _MPP + "Rds": "config_source route_config_name",
        _MPP + "MetaProtocolFilter": "name config",
        _MPP + "Codec": "name config",
        _MPP + "ApplicationProtocol": "name codec multiplexing",
        # --- tracing (aeraki.proxy.observe.tracing); verbose span logs are not implemented ---
        _MPP + "Tracing": (
            "client_sampling random_sampling overall_sampling max_tag_length provider"
        ),
        "envoy.config.trace.v3.Tracing.Http": "name typed_config",
        "envoy.config.trace.v3.OpenTelemetryConfig": "grpc_service service_name max_cache_size",
        "aeraki.meta_protocol_proxy.filters.router.v1alpha.Router": "",
        # --- Istio telemetry filters (aeraki.proxy.filters.metadata_exchange / .istio_stats) ---
        "aeraki.meta_protocol_proxy.filters.metadata_exchange.v1alpha.MetadataExchange": "",
        "aeraki.meta_protocol_proxy.filters.istio_stats.v1alpha.IstioStats": "destination_service",
        # --- rate limit filters (aeraki.proxy.filters.local_ratelimit / .ratelimit) ---
        _LRL + "LocalRateLimit": "stat_prefix token_bucket conditions",
        _LRL + "LocalRateLimitCondition": "match token_bucket",
        "envoy.type.v3.TokenBucket": "max_tokens tokens_per_fill fill_interval",
        _GRL + "RateLimit": (
            "match domain timeout failure_mode_deny rate_limit_service descriptors"
        ),
        _GRL + "RateLimit.Descriptor": "property descriptor_key",
        "envoy.config.ratelimit.v3.RateLimitServiceConfig": "grpc_service transport_api_version",
        # --- MetaProtocol routes ---
        _RT + "RouteConfiguration": "name routes",
        _RT + "Route": (
            "name match route request_mutation response_mutation"
            " timeout retry_policy fault idempotent"
        ),
        _RT + "RetryPolicy": (
            "num_retries per_try_timeout retry_on base_interval max_interval retry_non_idempotent"
        ),
        _RT + "FaultInjection": "delay abort",
        _RT + "FaultInjection.Delay": "fixed_delay percentage",
        _RT + "FaultInjection.Abort": "error_type message percentage",
        _RT + "RouteMatch": "metadata",
        _RT + "RouteAction": "cluster weighted_clusters hash_policy request_mirror_policies",
        _RT + "RouteAction.RequestMirrorPolicy": "cluster runtime_fraction",
        _RT + "KeyValue": "key value",
        # --- shared route pieces ---
        "envoy.config.route.v3.HeaderMatcher": (
            "name exact_match safe_regex_match range_match present_match prefix_match"
            " suffix_match contains_match string_match invert_match treat_missing_header_as_empty"
        ),
        "envoy.type.matcher.v3.StringMatcher": (
            "exact prefix suffix safe_regex contains ignore_case"
        ),
        "envoy.type.matcher.v3.RegexMatcher": "regex google_re2",
        "envoy.type.matcher.v3.RegexMatcher.GoogleRE2": "",
        "envoy.type.v3.Int64Range": "start end",
        "envoy.config.route.v3.WeightedCluster": "clusters",
        "envoy.config.route.v3.WeightedCluster.ClusterWeight": "name weight",
        # runtime_key only selects a runtime override; with no runtime layer the default
        # fraction applies, exactly as in Envoy without overrides.
        "envoy.config.core.v3.RuntimeFractionalPercent": "default_value runtime_key",
        "envoy.type.v3.FractionalPercent": "numerator denominator",
        # --- HTTP RouteConfiguration used as the RDS carrier (reference §15) ---
        "envoy.config.route.v3.RouteConfiguration": "name virtual_hosts",
        "envoy.config.route.v3.VirtualHost": "name domains routes",
        # path matching is ignored by the carrier conversion, so any path specifier is benign.
        "envoy.config.route.v3.RouteMatch": "prefix path safe_regex headers",
        "envoy.config.route.v3.Route": (
            "name match route request_headers_to_add response_headers_to_add"
        ),
        "envoy.config.route.v3.RouteAction": (
            "cluster weighted_clusters hash_policy request_mirror_policies"
        ),
        "envoy.config.route.v3.RouteAction.HashPolicy": "header",
        "envoy.config.route.v3.RouteAction.HashPolicy.Header": "header_name",
        "envoy.config.route.v3.RouteAction.RequestMirrorPolicy": "cluster runtime_fraction",
        # append flags are ignored by the reference conversion; mutations always set.
        "envoy.config.core.v3.HeaderValueOption": "header append append_action",
        "envoy.config.core.v3.HeaderValue": "key value",
    }.items()
}

#: Types whose content is taken whole (values, or an Any that is unpacked and checked later).
LEAF_TYPES: frozenset[str] = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.Duration",
        "google.protobuf.Struct",
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.BoolValue",
    }
)


def check_supported(msg: message.Message, path: str, problems: Problems) -> None:
    """Record ``<path>.<field>: not supported yet`` for every set field outside the whitelist."""
    desc = msg.DESCRIPTOR
    allowed = SUPPORTED.get(desc.full_name)
    if allowed is None:
        problems.add(path, f"{desc.full_name} is not supported yet")
        return
    for field, value in msg.ListFields():
        here = join(path, field.name)
        if field.name not in allowed:
            problems.add(here, "not supported yet")
            continue
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        child_type = field.message_type
        assert child_type is not None  # TYPE_MESSAGE fields always have one
        if child_type.GetOptions().map_entry:
            value_field = child_type.fields_by_name["value"]
            if value_field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    _check_child(item, f"{here}[{key!r}]", problems)
            continue
        if field.is_repeated:
            for i, item in enumerate(value):
                _check_child(item, f"{here}[{i}]", problems)
        else:
            _check_child(value, here, problems)


def _check_child(msg: message.Message, path: str, problems: Problems) -> None:
    if msg.DESCRIPTOR.full_name not in LEAF_TYPES:
        check_supported(msg, path, problems)
