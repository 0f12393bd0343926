"""Bootstrap loading: examples, field mapping, strictness and error paths."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

import aeraki.xds
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap import (
    ConfigErrors,
    bootstrap_from_dict,
    load_bootstrap,
    route_table_from_http_rds,
    route_table_from_meta,
)
from aeraki.proxy.config import (
    ClusterConfig,
    DiscoveryType,
    EndpointConfig,
    HeaderMatch,
    LbPolicy,
    MatchKind,
    MirrorPolicy,
    ProxyConfig,
    RouteConfig,
    SocketAddress,
    WeightedCluster,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "bootstraps"
MPP_URL = "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy"
ROUTER_URL = "type.googleapis.com/aeraki.meta_protocol_proxy.filters.router.v1alpha.Router"
TC = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
ROUTE0 = TC + ".route_config.routes[0]"
CL0 = "static_resources.clusters[0]"

Data = dict[str, Any]


def base() -> Data:
    """A minimal valid bootstrap: one Thrift listener routing everything to cluster ``c``."""
    return {
        "node": {"id": "n1", "cluster": "nc"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 9090}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "aeraki.meta_protocol_proxy",
                                    "typed_config": {
                                        "@type": MPP_URL,
                                        "stat_prefix": "sp",
                                        "protocol": {
                                            "name": "thrift",
                                            "codec": {"name": "aeraki.meta_protocol.codec.thrift"},
                                        },
                                        "route_config": {
                                            "name": "rc",
                                            "routes": [{"name": "r0", "route": {"cluster": "c"}}],
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "c",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "c",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": 9091,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                },
                {"name": "m", "type": "STRICT_DNS"},
            ],
        },
    }


def tc(d: Data) -> Data:
    config: Data = d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    return config


def route0(d: Data) -> Data:
    r: Data = tc(d)["route_config"]["routes"][0]
    return r


def cluster0(d: Data) -> Data:
    c: Data = d["static_resources"]["clusters"][0]
    return c


def with_(mutate: Callable[[Data], object]) -> ProxyConfig:
    d = base()
    mutate(d)
    return bootstrap_from_dict(d, "test.yaml")


def problems_of(mutate: Callable[[Data], object]) -> dict[str, str]:
    d = base()
    mutate(d)
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(d, "test.yaml")
    assert isinstance(info.value, ConfigError)
    return {p.path: p.message for p in info.value.problems}


# --- examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    config = load_bootstrap(path)
    assert config.listeners
    assert config.admin is not None


def test_examples_match_reference_tests() -> None:
    thrift = load_bootstrap(EXAMPLES / "thrift.yaml").listeners[0]
    assert thrift.address == SocketAddress("0.0.0.0", 9090)
    assert thrift.proxy.application_protocol == "thrift"
    assert thrift.proxy.codec == "aeraki.meta_protocol.codec.thrift"
    assert thrift.proxy.route_table is not None
    route = thrift.proxy.route_table.routes[0]
    assert route.match == (HeaderMatch(name="method", kind=MatchKind.EXACT, value="sayHello"),)
    assert route.request_mutation == (("foo", "bar"), ("foo1", "bar1"))

    dubbo = load_bootstrap(EXAMPLES / "dubbo.yaml").listeners[0].proxy
    assert dubbo.multiplexing
    assert dubbo.route_table is not None
    assert [m.name for m in dubbo.route_table.routes[0].match] == ["interface", "method", "foo"]
    mirror = dubbo.route_table.routes[0].mirror_policies[0]
    assert (mirror.numerator, mirror.denominator) == (50, 100)

    hashed = load_bootstrap(EXAMPLES / "hash_policy.yaml")
    assert hashed.clusters[0].lb_policy is LbPolicy.MAGLEV
    assert hashed.listeners[0].proxy.route_table is not None
    assert hashed.listeners[0].proxy.route_table.routes[0].hash_policy == ("method",)

    assert load_bootstrap(EXAMPLES / "idle_timeout.yaml").listeners[0].proxy.idle_timeout == 5.0

    rds = load_bootstrap(EXAMPLES / "rds.yaml").listeners[0].proxy
    assert rds.rds_name == "test"
    assert rds.route_table is None


# --- field mapping ------------------------------------------------------------------------


def test_base_mapping() -> None:
    config = bootstrap_from_dict(base(), "b")
    assert (config.node_id, config.node_cluster) == ("n1", "nc")
    assert config.admin is not None
    assert config.admin.address == SocketAddress("127.0.0.1", 8080)
    listener = config.listeners[0]
    assert listener.name == "l"
    proxy = listener.proxy
    assert proxy.stat_prefix == "sp"
    assert not proxy.multiplexing
    assert proxy.idle_timeout is None
    # empty meta_protocol_filters => router only
    assert [f.name for f in proxy.filters] == ["aeraki.meta_protocol.filters.router"]
    assert proxy.filters[0].config == aeraki.xds.message_class(ROUTER_URL)()
    assert config.clusters[0] == ClusterConfig(
        name="c",
        connect_timeout=1.0,
        endpoints=(EndpointConfig(address=SocketAddress("127.0.0.1", 9091)),),
    )
    assert config.clusters[1].discovery is DiscoveryType.STRICT_DNS


def _set_match(matcher: Data) -> Callable[[Data], None]:
    def mutate(d: Data) -> None:
        route0(d)["match"] = {"metadata": [{"name": "k", **matcher}]}

    return mutate


MATCHERS: list[tuple[Data, HeaderMatch]] = [
    ({}, HeaderMatch(name="k", kind=MatchKind.PRESENT)),
    ({"exact_match": "v"}, HeaderMatch(name="k", kind=MatchKind.EXACT, value="v")),
    ({"prefix_match": "v"}, HeaderMatch(name="k", kind=MatchKind.PREFIX, value="v")),
    ({"suffix_match": "v"}, HeaderMatch(name="k", kind=MatchKind.SUFFIX, value="v")),
    ({"contains_match": "v"}, HeaderMatch(name="k", kind=MatchKind.CONTAINS, value="v")),
    (
        {"safe_regex_match": {"regex": "a.*"}},
        HeaderMatch(name="k", kind=MatchKind.REGEX, value="a.*"),
    ),
    ({"present_match": False}, HeaderMatch(name="k", kind=MatchKind.PRESENT, present=False)),
    (
        {"range_match": {"start": "-3", "end": "10"}},
        HeaderMatch(name="k", kind=MatchKind.RANGE, range_start=-3, range_end=10),
    ),
    (
        {"string_match": {"exact": "V", "ignore_case": True}},
        HeaderMatch(name="k", kind=MatchKind.EXACT, value="V", ignore_case=True),
    ),
    ({"string_match": {"prefix": "p"}}, HeaderMatch(name="k", kind=MatchKind.PREFIX, value="p")),
    ({"string_match": {"suffix": "s"}}, HeaderMatch(name="k", kind=MatchKind.SUFFIX, value="s")),
    (
        {"string_match": {"contains": "c"}},
        HeaderMatch(name="k", kind=MatchKind.CONTAINS, value="c"),
    ),
    (
        {"string_match": {"safe_regex": {"regex": "x+"}}},
        HeaderMatch(name="k", kind=MatchKind.REGEX, value="x+"),
    ),
    (
        {"exact_match": "v", "invert_match": True, "treat_missing_header_as_empty": True},
        HeaderMatch(
            name="k", kind=MatchKind.EXACT, value="v", invert=True, treat_missing_as_empty=True
        ),
    ),
]


@pytest.mark.parametrize(("matcher", "expected"), MATCHERS, ids=lambda v: str(v)[:40])
def test_header_matchers(matcher: Data, expected: HeaderMatch) -> None:
    config = with_(_set_match(matcher))
    table = config.listeners[0].proxy.route_table
    assert table is not None
    assert table.routes[0].match == (expected,)


def _route(config: ProxyConfig) -> RouteConfig:
    table = config.listeners[0].proxy.route_table
    assert table is not None
    return table.routes[0]


ROUTE_FIELDS: list[
    tuple[str, Callable[[Data], object], Callable[[ProxyConfig], object], object]
] = [
    (
        "weighted_clusters",
        lambda d: route0(d).update(
            route={
                "weighted_clusters": {
                    "clusters": [{"name": "c", "weight": 3}, {"name": "m", "weight": 1}]
                }
            }
        ),
        lambda c: (_route(c).cluster, _route(c).weighted_clusters),
        ("", (WeightedCluster("c", 3), WeightedCluster("m", 1))),
    ),
    (
        "hash_policy",
        lambda d: route0(d)["route"].update(hash_policy=["method", "interface"]),
        lambda c: _route(c).hash_policy,
        ("method", "interface"),
    ),
    (
        "mirror default 100%",
        lambda d: route0(d)["route"].update(request_mirror_policies=[{"cluster": "m"}]),
        lambda c: _route(c).mirror_policies,
        (MirrorPolicy("m", 100, 100),),
    ),
    (
        "mirror TEN_THOUSAND",
        lambda d: route0(d)["route"].update(
            request_mirror_policies=[
                {
                    "cluster": "m",
                    "runtime_fraction": {
                        "default_value": {"numerator": 5, "denominator": "TEN_THOUSAND"}
                    },
                }
            ]
        ),
        lambda c: _route(c).mirror_policies,
        (MirrorPolicy("m", 5, 10_000),),
    ),
    (
        "mirror MILLION",
        lambda d: route0(d)["route"].update(
            request_mirror_policies=[
                {
                    "cluster": "m",
                    "runtime_fraction": {
                        "default_value": {"numerator": 7, "denominator": "MILLION"}
                    },
                }
            ]
        ),
        lambda c: _route(c).mirror_policies,
        (MirrorPolicy("m", 7, 1_000_000),),
    ),
    (
        "mutations",
        lambda d: route0(d).update(
            request_mutation=[{"key": "a", "value": "1"}],
            response_mutation=[{"key": "b", "value": "2"}],
        ),
        lambda c: (_route(c).request_mutation, _route(c).response_mutation),
        ((("a", "1"),), (("b", "2"),)),
    ),
    (
        "deprecated application_protocol and codec",
        lambda d: (
            tc(d).pop("protocol"),
            tc(d).update(
                application_protocol="dubbo", codec={"name": "aeraki.meta_protocol.codec.dubbo"}
            ),
        ),
        lambda c: (c.listeners[0].proxy.application_protocol, c.listeners[0].proxy.codec),
        ("dubbo", "aeraki.meta_protocol.codec.dubbo"),
    ),
    (
        "protocol wins over deprecated fields",
        lambda d: tc(d).update(
            application_protocol="dubbo", codec={"name": "aeraki.meta_protocol.codec.dubbo"}
        ),
        lambda c: (c.listeners[0].proxy.application_protocol, c.listeners[0].proxy.codec),
        ("thrift", "aeraki.meta_protocol.codec.thrift"),
    ),
    (
        "protocol without codec falls back to deprecated codec",
        lambda d: (
            tc(d)["protocol"].pop("codec"),
            tc(d).update(codec={"name": "aeraki.meta_protocol.codec.dubbo"}),
        ),
        lambda c: c.listeners[0].proxy.codec,
        "aeraki.meta_protocol.codec.dubbo",
    ),
    (
        "codec import path",
        lambda d: tc(d)["protocol"]["codec"].update(name="aeraki.testing.fake_codec:FakeCodec"),
        lambda c: c.listeners[0].proxy.codec,
        "aeraki.testing.fake_codec:FakeCodec",
    ),
    (
        "multiplexing and idle_timeout",
        lambda d: (tc(d)["protocol"].update(multiplexing=True), tc(d).update(idle_timeout="1.5s")),
        lambda c: (c.listeners[0].proxy.multiplexing, c.listeners[0].proxy.idle_timeout),
        (True, 1.5),
    ),
    (
        "explicit router filter",
        lambda d: tc(d).update(
            meta_protocol_filters=[
                {"name": "aeraki.meta_protocol.filters.router", "config": {"@type": ROUTER_URL}}
            ]
        ),
        lambda c: [f.name for f in c.listeners[0].proxy.filters],
        ["aeraki.meta_protocol.filters.router"],
    ),
    (
        "listener without name",
        lambda d: d["static_resources"]["listeners"][0].pop("name"),
        lambda c: c.listeners[0].name,
        "0.0.0.0:9090",
    ),
    (
        "cluster lb and timers",
        lambda d: cluster0(d).update(
            type="STRICT_DNS",
            lb_policy="RING_HASH",
            ring_hash_lb_config={"minimum_ring_size": "64", "maximum_ring_size": "4096"},
            dns_refresh_rate="10s",
            connect_timeout="0.25s",
        ),
        lambda c: (
            c.clusters[0].discovery,
            c.clusters[0].lb_policy,
            c.clusters[0].ring_min_size,
            c.clusters[0].ring_max_size,
            c.clusters[0].dns_refresh_rate,
            c.clusters[0].connect_timeout,
        ),
        (DiscoveryType.STRICT_DNS, LbPolicy.RING_HASH, 64, 4096, 10.0, 0.25),
    ),
    (
        "maglev table size",
        lambda d: cluster0(d).update(lb_policy="MAGLEV", maglev_lb_config={"table_size": "251"}),
        lambda c: (c.clusters[0].lb_policy, c.clusters[0].maglev_table_size),
        (LbPolicy.MAGLEV, 251),
    ),
    (
        "least request choice count",
        lambda d: cluster0(d).update(
            lb_policy="LEAST_REQUEST", least_request_lb_config={"choice_count": 3}
        ),
        lambda c: (c.clusters[0].lb_policy, c.clusters[0].choice_count),
        (LbPolicy.LEAST_REQUEST, 3),
    ),
    (
        "random",
        lambda d: cluster0(d).update(lb_policy="RANDOM"),
        lambda c: c.clusters[0].lb_policy,
        LbPolicy.RANDOM,
    ),
    (
        "endpoint weight and metadata",
        lambda d: cluster0(d)["load_assignment"]["endpoints"][0]["lb_endpoints"][0].update(
            load_balancing_weight=7,
            metadata={"filter_metadata": {"istio": {"version": "v1", "n": 2}}},
        ),
        lambda c: (c.clusters[0].endpoints[0].weight, c.clusters[0].endpoints[0].metadata),
        (7, {"istio": {"version": "v1", "n": 2.0}}),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "get", "expected"),
    [case[1:] for case in ROUTE_FIELDS],
    ids=[case[0] for case in ROUTE_FIELDS],
)
def test_field_mapping(
    mutate: Callable[[Data], object], get: Callable[[ProxyConfig], object], expected: object
) -> None:
    assert get(with_(mutate)) == expected


def test_eds_cluster_with_ads() -> None:
    def mutate(d: Data) -> None:
        d["dynamic_resources"] = {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "c"}}],
            }
        }
        d["static_resources"]["clusters"][1] = {
            "name": "m",
            "type": "EDS",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
        }

    config = with_(mutate)
    assert config.clusters[1].discovery is DiscoveryType.EDS
    assert config.clusters[1].endpoints == ()


# --- TypedStruct, JSON vs YAML -------------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"])
def test_typed_struct_equals_any(wrapper: str) -> None:
    d = base()
    d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0] = {
        "name": "envoy.filters.network.meta_protocol_proxy",
        "typed_config": {
            "@type": f"type.googleapis.com/{wrapper}",
            "type_url": MPP_URL,
            "value": {k: v for k, v in tc(base()).items() if k != "@type"},
        },
    }
    assert bootstrap_from_dict(d, "ts") == bootstrap_from_dict(base(), "any")


def test_typed_struct_errors_point_into_value() -> None:
    d = base()
    value = {k: v for k, v in tc(base()).items() if k != "@type"}
    value["tracing"] = {"verbose": True}
    value["route_config"]["routes"][0]["route"]["cluster"] = "nope"
    d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"] = {
        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
        "type_url": MPP_URL,
        "value": value,
    }
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(d, "ts")
    assert set(info.value.paths) == {
        TC + ".value.tracing.verbose",
        TC + ".value.route_config.routes[0].route.cluster",
    }


def test_json_and_yaml_files_load_the_same(tmp_path: Path) -> None:
    as_json = tmp_path / "b.json"
    as_json.write_text(json.dumps(base()))
    as_yaml = tmp_path / "b.yaml"
    as_yaml.write_text(yaml.safe_dump(base()))
    no_ext = tmp_path / "bootstrap"
    no_ext.write_text(json.dumps(base(), indent=2))
    assert load_bootstrap(as_json) == load_bootstrap(as_yaml) == load_bootstrap(no_ext)
    assert load_bootstrap(str(as_yaml)) == bootstrap_from_dict(base())


def test_unknown_yaml_field_is_a_protobuf_error_with_path(tmp_path: Path) -> None:
    d = base()
    d["static_resources"]["clusters"][1]["circuit_breakerz"] = {}
    d["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = "abc"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigErrors) as info:
        load_bootstrap(path)
    err = info.value
    assert err.paths == (
        "static_resources.listeners[0].address.socket_address.port_value",
        "static_resources.clusters[1].circuit_breakerz",
    )
    assert 'no field named "circuit_breakerz"' in err.problems[1].message
    assert str(path) in str(err)


def test_unknown_field_inside_typed_config() -> None:
    errors = problems_of(lambda d: route0(d).update(matchh={}))
    assert list(errors) == [ROUTE0 + ".matchh"]


def test_bad_files(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_bootstrap(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_bootstrap(bad_json)
    with pytest.raises(ConfigError, match="cannot read"):
        load_bootstrap(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        bootstrap_from_dict([1, 2])


# --- strictness and value errors ------------------------------------------------------------

ERRORS: list[tuple[str, Callable[[Data], object], str, str]] = [
    (
        "unsupported cluster field",
        lambda d: cluster0(d).update(upstream_connection_options={"tcp_keepalive": {}}),
        CL0 + ".upstream_connection_options",
        "not supported yet",
    ),
    (
        "unsupported listener field",
        lambda d: d["static_resources"]["listeners"][0].update(
            per_connection_buffer_limit_bytes=1024
        ),
        "static_resources.listeners[0].per_connection_buffer_limit_bytes",
        "not supported yet",
    ),
    (
        "unsupported top-level field",
        lambda d: d.update(stats_flush_interval="5s"),
        "stats_flush_interval",
        "not supported yet",
    ),
    (
        "unsupported node field",
        lambda d: d["node"].update(user_agent_name="x"),
        "node.user_agent_name",
        "not supported yet",
    ),
    (
        "tracing",
        lambda d: tc(d).update(tracing={"verbose": True}),
        TC + ".tracing.verbose",
        "not supported yet",
    ),
    (
        "access_log",
        lambda d: tc(d).update(access_log=[{"name": "x"}]),
        TC + ".access_log[0].typed_config",
        "required",
    ),
    (
        "deep unsupported matcher field",
        lambda d: route0(d).update(
            match={"metadata": [{"name": "k", "string_match": {"custom": {"name": "x"}}}]}
        ),
        ROUTE0 + ".match.metadata[0].string_match.custom",
        "not supported yet",
    ),
    (
        "filter after the router",
        lambda d: tc(d).update(
            meta_protocol_filters=[
                {"name": "aeraki.meta_protocol.filters.router"},
                {"name": "aeraki.meta_protocol.filters.metadata_exchange"},
            ]
        ),
        TC + ".meta_protocol_filters",
        "the last filter must be",
    ),
    (
        "unknown filter",
        lambda d: tc(d).update(meta_protocol_filters=[{"name": "my.filter"}]),
        TC + ".meta_protocol_filters[0].name",
        "unknown filter",
    ),
    (
        "wrong filter config type",
        lambda d: tc(d).update(
            meta_protocol_filters=[
                {
                    "name": "aeraki.meta_protocol.filters.router",
                    "config": {
                        "@type": "type.googleapis.com/aeraki.meta_protocol.codec.DubboCodec"
                    },
                }
            ]
        ),
        TC + ".meta_protocol_filters[0].config",
        "expected",
    ),
    (
        "port out of range",
        lambda d: d["static_resources"]["listeners"][0]["address"]["socket_address"].update(
            port_value=70000
        ),
        "static_resources.listeners[0].address.socket_address.port_value",
        "0..65535",
    ),
    (
        "endpoint port missing (port 0 is only for binding)",
        lambda d: d["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0][
            "lb_endpoints"
        ][0]["endpoint"]["address"]["socket_address"].pop("port_value"),
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]"
        ".endpoint.address.socket_address.port_value",
        "1..65535",
    ),
    (
        "zero total weight",
        lambda d: route0(d).update(
            route={"weighted_clusters": {"clusters": [{"name": "c", "weight": 0}]}}
        ),
        ROUTE0 + ".route.weighted_clusters.clusters",
        "total weight",
    ),
    (
        "bad regex",
        _set_match({"safe_regex_match": {"regex": "(["}}),
        ROUTE0 + ".match.metadata[0].safe_regex_match.regex",
        "invalid regex '(['",
    ),
    (
        "bad string_match regex",
        _set_match({"string_match": {"safe_regex": {"regex": "a)"}}}),
        ROUTE0 + ".match.metadata[0].string_match.safe_regex.regex",
        "invalid regex 'a)'",
    ),
    (
        "empty range",
        _set_match({"range_match": {"start": "5", "end": "5"}}),
        ROUTE0 + ".match.metadata[0].range_match",
        "less than end",
    ),
    (
        "duplicate cluster",
        lambda d: d["static_resources"]["clusters"].append({"name": "c"}),
        "static_resources.clusters[2].name",
        "duplicate cluster name 'c'",
    ),
    (
        "duplicate listener",
        lambda d: d["static_resources"]["listeners"].append(
            copy.deepcopy(d["static_resources"]["listeners"][0])
        ),
        "static_resources.listeners[1].name",
        "duplicate listener name 'l'",
    ),
    (
        "unknown route cluster",
        lambda d: route0(d)["route"].update(cluster="nope"),
        ROUTE0 + ".route.cluster",
        "unknown cluster 'nope'",
    ),
    (
        "unknown mirror cluster",
        lambda d: route0(d)["route"].update(request_mirror_policies=[{"cluster": "nope"}]),
        ROUTE0 + ".route.request_mirror_policies[0].cluster",
        "unknown cluster 'nope'",
    ),
    (
        "negative connect timeout",
        lambda d: cluster0(d).update(connect_timeout="-1s"),
        CL0 + ".connect_timeout",
        "greater than 0",
    ),
    (
        "zero idle timeout",
        lambda d: tc(d).update(idle_timeout="0s"),
        TC + ".idle_timeout",
        "greater than 0",
    ),
    (
        "unknown codec",
        lambda d: tc(d)["protocol"]["codec"].update(name="aeraki.meta_protocol.codec.nope"),
        TC + ".protocol.codec.name",
        "unknown codec",
    ),
    (
        "bad codec import path",
        lambda d: tc(d)["protocol"]["codec"].update(name="no_such_module_x:Codec"),
        TC + ".protocol.codec.name",
        "cannot import",
    ),
    (
        "missing codec",
        lambda d: tc(d)["protocol"].pop("codec"),
        TC + ".protocol.codec.name",
        "required",
    ),
    (
        "missing stat_prefix",
        lambda d: tc(d).pop("stat_prefix"),
        TC + ".stat_prefix",
        "required",
    ),
    (
        "missing routes specifier",
        lambda d: tc(d).pop("route_config"),
        TC,
        "one of route_config or rds",
    ),
    (
        "rds without ads",
        lambda d: (tc(d).pop("route_config"), tc(d).update(rds={"route_config_name": "x"})),
        TC + ".rds.config_source",
        "ads",
    ),
    (
        "unsupported cluster type",
        lambda d: cluster0(d).update(type="ORIGINAL_DST"),
        CL0 + ".type",
        "not supported yet",
    ),
    (
        "unsupported lb policy",
        lambda d: cluster0(d).update(lb_policy="CLUSTER_PROVIDED"),
        CL0 + ".lb_policy",
        "not supported yet",
    ),
    (
        "static endpoint by name",
        lambda d: cluster0(d)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
            "address"
        ]["socket_address"].update(address="example.com"),
        CL0 + ".load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address"
        ".address",
        "not an IP address",
    ),
    (
        "maglev table not prime",
        lambda d: cluster0(d).update(maglev_lb_config={"table_size": "100"}),
        CL0 + ".maglev_lb_config.table_size",
        "prime",
    ),
    (
        "network filter name",
        lambda d: d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0].update(
            name="envoy.filters.network.tcp_proxy"
        ),
        "static_resources.listeners[0].filter_chains[0].filters[0].name",
        "not supported yet",
    ),
    (
        "wrong typed_config type",
        lambda d: d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0].update(
            typed_config={"@type": "type.googleapis.com/aeraki.meta_protocol.codec.DubboCodec"}
        ),
        TC,
        "expected",
    ),
    (
        "mirror fraction above 100%",
        lambda d: route0(d)["route"].update(
            request_mirror_policies=[
                {"cluster": "m", "runtime_fraction": {"default_value": {"numerator": 101}}}
            ]
        ),
        ROUTE0 + ".route.request_mirror_policies[0].runtime_fraction.default_value.numerator",
        "exceeds",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "text"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_paths(mutate: Callable[[Data], object], path: str, text: str) -> None:
    errors = problems_of(mutate)
    assert path in errors, errors
    assert text in errors[path]


def test_all_problems_are_reported_at_once() -> None:
    def mutate(d: Data) -> None:
        cluster0(d).update(per_connection_buffer_limit_bytes=1024, connect_timeout="-1s")
        tc(d).update(tracing={"verbose": True})
        route0(d)["route"]["cluster"] = "nope"

    errors = problems_of(mutate)
    assert set(errors) == {
        CL0 + ".per_connection_buffer_limit_bytes",
        CL0 + ".connect_timeout",
        TC + ".tracing.verbose",
        ROUTE0 + ".route.cluster",
    }


def test_error_message_names_file_and_every_path() -> None:
    d = base()
    cluster0(d)["upstream_connection_options"] = {}
    tc(d)["tracing"] = {"verbose": True}
    with pytest.raises(ConfigError) as info:
        bootstrap_from_dict(d, "my.yaml")
    text = str(info.value)
    assert text.startswith("my.yaml: 2 configuration problems")
    assert CL0 + ".upstream_connection_options: not supported yet" in text
    assert TC + ".tracing.verbose: not supported yet" in text
    assert info.value.path == CL0 + ".upstream_connection_options"


def test_ads_cluster_must_exist() -> None:
    def mutate(d: Data) -> None:
        d["dynamic_resources"] = {
            "ads_config": {
                "api_type": "REST",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            }
        }

    errors = problems_of(mutate)
    assert errors["dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name"] == (
        "unknown cluster 'xds'"
    )
    assert "GRPC" in errors["dynamic_resources.ads_config.api_type"]


# --- route converters used by xDS --------------------------------------------------------------


def _http_rds(data: Data) -> Any:
    return json_format.ParseDict(data, route_pb2.RouteConfiguration())


def test_http_rds_conversion() -> None:
    rc = _http_rds(
        {
            "name": "test",
            "virtual_hosts": [
                {
                    "name": "vh",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": "r",
                            "match": {
                                "prefix": "/",
                                "headers": [{"name": "method", "exact_match": "sayHello"}],
                            },
                            "route": {
                                "cluster": "c",
                                "hash_policy": [{"header": {"header_name": "method"}}],
                                "request_mirror_policies": [{"cluster": "m"}],
                            },
                            "request_headers_to_add": [
                                {"header": {"key": "foo", "value": "bar"}, "append": False}
                            ],
                            "response_headers_to_add": [{"header": {"key": "x", "value": "y"}}],
                        },
                        {
                            "match": {"prefix": "/"},
                            "route": {
                                "weighted_clusters": {"clusters": [{"name": "c", "weight": 1}]}
                            },
                        },
                    ],
                }
            ],
        }
    )
    table = route_table_from_http_rds(rc, clusters={"c", "m"})
    assert table.name == "test"
    first, second = table.routes
    assert first == RouteConfig(
        name="r",
        match=(HeaderMatch(name="method", kind=MatchKind.EXACT, value="sayHello"),),
        cluster="c",
        hash_policy=("method",),
        mirror_policies=(MirrorPolicy("m", 100, 100),),  # absent fraction => 100% (fixed)
        request_mutation=(("foo", "bar"),),
        response_mutation=(("x", "y"),),
    )
    assert second.match == ()
    assert second.weighted_clusters == (WeightedCluster("c", 1),)


def test_http_rds_rejections() -> None:
    rc = _http_rds(
        {
            "name": "t",
            "virtual_hosts": [
                {
                    "name": "a",
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "c", "hash_policy": [{"cookie": {"name": "k"}}]},
                        }
                    ],
                },
                {"name": "b"},
            ],
        }
    )
    with pytest.raises(ConfigErrors) as info:
        route_table_from_http_rds(rc)
    assert set(info.value.paths) == {
        "virtual_hosts",
        "virtual_hosts[0].routes[0].route.hash_policy[0].cookie",
    }
    assert route_table_from_http_rds(_http_rds({"name": "empty"})).routes == ()


def test_http_rds_unknown_cluster_and_redirect() -> None:
    rc = _http_rds(
        {
            "virtual_hosts": [
                {
                    "name": "a",
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "zz"}},
                        {"match": {"prefix": "/"}, "redirect": {"host_redirect": "x"}},
                    ],
                }
            ]
        }
    )
    with pytest.raises(ConfigErrors) as info:
        route_table_from_http_rds(rc, clusters={"c"})
    assert set(info.value.paths) == {
        "virtual_hosts[0].routes[0].route.cluster",
        "virtual_hosts[0].routes[1].redirect",
        "virtual_hosts[0].routes[1].route",
    }


def test_route_table_from_meta() -> None:
    cls = aeraki.xds.message_class(
        "aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration"
    )
    rc: Any = json_format.ParseDict(
        {"name": "t", "routes": [{"route": {"cluster": "c"}}, {"name": "no-action"}]}, cls()
    )
    with pytest.raises(ConfigErrors) as info:
        route_table_from_meta(rc, path="rc", clusters={"x"})
    assert set(info.value.paths) == {"rc.routes[0].route.cluster", "rc.routes[1].route"}
    rc.routes.pop()
    assert route_table_from_meta(rc).routes[0].cluster == "c"
