"""Our generated protos must match Aeraki's wire contract (reference Appendix B) exactly."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import any_pb2, descriptor_pool, json_format

import aeraki.xds
from aeraki.xds import registry

_MPP = "aeraki.meta_protocol_proxy.v1alpha."
_RT = "aeraki.meta_protocol_proxy.config.route.v1alpha."
_F = "aeraki.meta_protocol_proxy.filters."
_ADMIN = "aeraki.meta_protocol_proxy.admin.v1alpha.RoutesConfigDump"

#: message -> {number: (name, type full name or "" for scalars, repeated)}.
APPENDIX_B: dict[str, dict[int, tuple[str, str, bool]]] = {
    _MPP + "MetaProtocolProxy": {
        1: ("stat_prefix", "", False),
        2: ("application_protocol", "", False),
        3: ("rds", _MPP + "Rds", False),
        4: ("route_config", _RT + "RouteConfiguration", False),
        5: ("codec", _MPP + "Codec", False),
        6: ("meta_protocol_filters", _MPP + "MetaProtocolFilter", True),
        7: ("tracing", _MPP + "Tracing", False),
        8: ("access_log", "envoy.config.accesslog.v3.AccessLog", True),
        11: ("idle_timeout", "google.protobuf.Duration", False),
        12: ("protocol", _MPP + "ApplicationProtocol", False),
    },
    _MPP + "Rds": {
        1: ("config_source", "envoy.config.core.v3.ConfigSource", False),
        2: ("route_config_name", "", False),
    },
    _MPP + "MetaProtocolFilter": {
        1: ("name", "", False),
        2: ("config", "google.protobuf.Any", False),
    },
    _MPP + "Codec": {1: ("name", "", False), 2: ("config", "google.protobuf.Any", False)},
    _MPP + "Tracing": {
        3: ("client_sampling", "envoy.type.v3.Percent", False),
        4: ("random_sampling", "envoy.type.v3.Percent", False),
        5: ("overall_sampling", "envoy.type.v3.Percent", False),
        6: ("verbose", "", False),
        7: ("max_tag_length", "google.protobuf.UInt32Value", False),
        9: ("provider", "envoy.config.trace.v3.Tracing.Http", False),
    },
    _MPP + "ApplicationProtocol": {
        1: ("name", "", False),
        2: ("codec", _MPP + "Codec", False),
        3: ("multiplexing", "", False),
    },
    _RT + "RouteConfiguration": {1: ("name", "", False), 2: ("routes", _RT + "Route", True)},
    _RT + "Route": {
        1: ("name", "", False),
        2: ("match", _RT + "RouteMatch", False),
        3: ("route", _RT + "RouteAction", False),
        19: ("request_mutation", _RT + "KeyValue", True),
        20: ("response_mutation", _RT + "KeyValue", True),
    },
    _RT + "RouteMatch": {1: ("metadata", "envoy.config.route.v3.HeaderMatcher", True)},
    _RT + "RouteAction": {
        1: ("cluster", "", False),
        2: ("weighted_clusters", "envoy.config.route.v3.WeightedCluster", False),
        10: ("hash_policy", "", True),
        11: ("request_mirror_policies", _RT + "RouteAction.RequestMirrorPolicy", True),
    },
    _RT + "RouteAction.RequestMirrorPolicy": {
        1: ("cluster", "", False),
        2: ("runtime_fraction", "envoy.config.core.v3.RuntimeFractionalPercent", False),
    },
    _RT + "KeyValue": {1: ("key", "", False), 2: ("value", "", False)},
    _F + "router.v1alpha.Router": {},
    _F + "local_ratelimit.v1alpha.LocalRateLimit": {
        1: ("stat_prefix", "", False),
        2: ("token_bucket", "envoy.type.v3.TokenBucket", False),
        3: ("conditions", _F + "local_ratelimit.v1alpha.LocalRateLimitCondition", True),
    },
    _F + "local_ratelimit.v1alpha.LocalRateLimitCondition": {
        1: ("match", _RT + "RouteMatch", False),
        2: ("token_bucket", "envoy.type.v3.TokenBucket", False),
    },
    _F + "ratelimit.v1alpha.RateLimit": {
        1: ("match", _RT + "RouteMatch", False),
        2: ("domain", "", False),
        3: ("timeout", "google.protobuf.Duration", False),
        4: ("failure_mode_deny", "", False),
        5: ("rate_limit_service", "envoy.config.ratelimit.v3.RateLimitServiceConfig", False),
        6: ("descriptors", _F + "ratelimit.v1alpha.RateLimit.Descriptor", True),
    },
    _F + "ratelimit.v1alpha.RateLimit.Descriptor": {
        1: ("property", "", False),
        2: ("descriptor_key", "", False),
    },
    _F + "metadata_exchange.v1alpha.MetadataExchange": {},
    _F + "istio_stats.v1alpha.IstioStats": {1: ("destination_service", "", False)},
    _ADMIN: {
        2: ("static_route_configs", _ADMIN + ".StaticRouteConfig", True),
        3: ("dynamic_route_configs", _ADMIN + ".DynamicRouteConfig", True),
    },
    _ADMIN + ".StaticRouteConfig": {
        1: ("route_config", "google.protobuf.Any", False),
        2: ("last_updated", "google.protobuf.Timestamp", False),
    },
    _ADMIN + ".DynamicRouteConfig": {
        1: ("version_info", "", False),
        2: ("route_config", "google.protobuf.Any", False),
        3: ("last_updated", "google.protobuf.Timestamp", False),
        4: ("error_state", "envoy.admin.v3.UpdateFailureState", False),
        5: ("client_status", "envoy.admin.v3.ClientResourceStatus", False),
    },
    "aeraki.meta_protocol.codec.DubboCodec": {},
    "aeraki.meta_protocol.codec.ThriftCodec": {},
    "aeraki.meta_protocol.codec.BrpcCodec": {},
    "aeraki.meta_protocol.codec.TrpcCodec": {},
}


def _describe(field: Any) -> tuple[str, str, bool]:
    type_name = ""
    if field.message_type is not None:
        type_name = field.message_type.full_name
    elif field.enum_type is not None:
        type_name = field.enum_type.full_name
    return field.name, type_name, field.is_repeated


#: This project's own fields: numbers from 100, so they never collide with Aeraki's.
EXTENSION_FIRST_NUMBER = 100


@pytest.mark.parametrize("full_name", sorted(APPENDIX_B))
def test_fields_match_appendix_b(full_name: str) -> None:
    desc = descriptor_pool.Default().FindMessageTypeByName(full_name)
    actual = {f.number: _describe(f) for f in desc.fields if f.number < EXTENSION_FIRST_NUMBER}
    assert actual == APPENDIX_B[full_name]


def test_route_extensions_are_numbered_apart_from_aerakis_fields() -> None:
    desc = descriptor_pool.Default().FindMessageTypeByName(_RT + "Route")
    extensions = {f.name: f.number for f in desc.fields if f.number >= EXTENSION_FIRST_NUMBER}
    assert extensions == {"timeout": 100, "retry_policy": 101, "fault": 102, "idempotent": 103}


def test_oneofs_and_reserved_numbers() -> None:
    pool = descriptor_pool.Default()
    mpp = pool.FindMessageTypeByName(_MPP + "MetaProtocolProxy")
    assert [f.name for f in mpp.oneofs_by_name["route_specifier"].fields] == [
        "rds",
        "route_config",
    ]
    action = pool.FindMessageTypeByName(_RT + "RouteAction")
    assert [f.name for f in action.oneofs_by_name["cluster_specifier"].fields] == [
        "cluster",
        "weighted_clusters",
    ]
    # Tracing 1 and 2 are reserved: a number there must not parse into a known field.
    tracing_cls = registry.message_class(_MPP + "Tracing")
    assert 1 not in tracing_cls.DESCRIPTOR.fields_by_number
    assert 2 not in tracing_cls.DESCRIPTOR.fields_by_number


def test_import_registers_every_type_url() -> None:
    for name in [*APPENDIX_B, *registry.FILTER_CONFIG_TYPES.values()]:
        cls = aeraki.xds.message_class(aeraki.xds.TYPE_URL_PREFIX + name)
        assert cls.DESCRIPTOR.full_name == name
    for name in registry.CODEC_CONFIG_TYPES.values():
        assert aeraki.xds.message_class(name).DESCRIPTOR.full_name == name


def test_unknown_type_is_a_key_error() -> None:
    with pytest.raises(KeyError, match=r"nope\.Missing"):
        aeraki.xds.message_class("type.googleapis.com/nope.Missing")


def test_meta_protocol_proxy_round_trips_through_any() -> None:
    cls = aeraki.xds.message_class(_MPP + "MetaProtocolProxy")
    proxy: Any = json_format.ParseDict(
        {
            "stat_prefix": "dubbo",
            "protocol": {
                "name": "dubbo",
                "codec": {"name": "aeraki.meta_protocol.codec.dubbo"},
                "multiplexing": True,
            },
            "route_config": {
                "name": "r",
                "routes": [
                    {
                        "match": {"metadata": [{"name": "method", "exact_match": "sayHello"}]},
                        "route": {"cluster": "c", "hash_policy": ["method"]},
                        "request_mutation": [{"key": "foo", "value": "bar"}],
                    }
                ],
            },
            "meta_protocol_filters": [
                {
                    "name": "aeraki.meta_protocol.filters.router",
                    "config": {"@type": aeraki.xds.TYPE_URL_PREFIX + _F + "router.v1alpha.Router"},
                }
            ],
            "idle_timeout": "5s",
        },
        cls(),
    )
    packed = aeraki.xds.pack(proxy)
    assert (
        packed.type_url
        == "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy"
    )
    wire = any_pb2.Any.FromString(packed.SerializeToString())
    assert aeraki.xds.unpack(wire) == proxy
    # JSON form of the Any names the type and parses back to the same message.
    as_json = json_format.MessageToDict(packed)
    assert as_json["@type"] == aeraki.xds.type_url(proxy)
    again = json_format.ParseDict(as_json, any_pb2.Any())
    assert aeraki.xds.unpack(again) == proxy
    # Field 19 (request_mutation) is on the wire with Aeraki's number.
    route = proxy.route_config.routes[0]
    assert route.DESCRIPTOR.fields_by_name["request_mutation"].number == 19


def test_supported_field_table_names_real_fields() -> None:
    """The bootstrap whitelist must name existing messages and fields (typos would silently
    reject a supported field)."""
    from aeraki.proxy.bootstrap_strict import SUPPORTED

    pool = descriptor_pool.Default()
    for name, fields in SUPPORTED.items():
        desc = pool.FindMessageTypeByName(name)
        assert fields <= set(desc.fields_by_name), (name, fields - set(desc.fields_by_name))


def test_generated_code_is_current() -> None:
    """The committed ``aeraki.xds.gen`` matches what ``proto/`` compiles to (dev-only tool)."""
    pytest.importorskip("grpc_tools")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "gen_protos.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
