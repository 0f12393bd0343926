"""Every modelled field parsed from realistic YAML: Aeraki's e2e manifests (reference §15)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aeraki.control.model import (
    ApplicationProtocolSpec,
    ConsistentHash,
    Destination,
    DestinationRuleSpec,
    GlobalRateLimit,
    KeyValue,
    LocalRateLimit,
    LocalRateLimitCondition,
    MatchKind,
    MetaRoute,
    MetaRouteDestination,
    MetaRouteMatch,
    MetaRouterSpec,
    RateLimitDescriptor,
    ServiceEntrySpec,
    ServicePort,
    StringMatch,
    Subset,
    TokenBucket,
    VirtualServiceSpec,
    WorkloadEntry,
)
from aeraki.control.validation import load_config
from tests.control.helpers import DATA, parse_one

H = "org.apache.dubbo.samples.basic.api.demoservice"
BASE = DATA / "metaprotocol" / "base"
MRS = DATA / "metaprotocol" / "metarouters"


def _mr(name: str) -> MetaRouterSpec:
    snap = load_config([BASE, MRS / name])
    assert snap.errors == ()
    (mr,) = snap.meta_routers
    assert mr.meta.name == "test-metaprotocol-route"
    assert mr.meta.namespace == "metaprotocol"
    assert mr.meta.origin.file == str(MRS / name)
    assert mr.meta.origin.line == 1
    spec: MetaRouterSpec = mr.spec
    return spec


def _to(subset: str, weight: int = 0) -> MetaRouteDestination:
    return MetaRouteDestination(destination=Destination(host=H, subset=subset), weight=weight)


def _exact_method(value: str, kind: MatchKind = MatchKind.EXACT) -> MetaRouteMatch:
    return MetaRouteMatch(attributes={"method": StringMatch(kind=kind, value=value)})


def test_base_manifests_load_with_unread_kinds_as_warnings() -> None:
    snap = load_config([BASE])
    assert snap.errors == ()
    assert [w.message for w in snap.warnings] == [
        'kind "ConfigMap" (v1) is not read by Aeraki; skipped',
        'kind "Deployment" (apps/v1) is not read by Aeraki; skipped',
    ]
    assert [w.line for w in snap.warnings] == [2, 11]
    assert [r.meta.name for r in snap.service_entries] == [
        "dubbo-demoservice",
        "dubbo-secondservice",
    ]
    assert [r.meta.name for r in snap.application_protocols] == ["dubbo", "thrift"]


def test_service_entry_fields() -> None:
    se = load_config([BASE]).service_entries[0]
    assert se.meta.annotations == {"interface": "org.apache.dubbo.samples.basic.api.DemoService"}
    assert se.meta.api_version == "networking.istio.io/v1alpha3"
    assert se.spec == ServiceEntrySpec(
        hosts=(H,),
        ports=(ServicePort(number=20880, name="tcp-metaprotocol-dubbo", protocol="TCP"),),
        workload_selector={"app": "dubbo-sample-provider"},
        resolution="STATIC",
    )
    assert se.spec.location == "MESH_EXTERNAL"  # proto3 zero value


def test_service_entry_every_field() -> None:
    parsed = parse_one(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ext, namespace: ns1, labels: {app: x}, resourceVersion: "42"}
        spec:
          hosts: [ext.example.com]
          addresses: [240.240.0.1]
          ports:
            - {number: 9090, name: tcp-metaprotocol-thrift-hello, protocol: TCP, targetPort: 19090}
          location: MESH_INTERNAL
          resolution: STATIC
          endpoints:
            - address: 10.0.0.1
              ports: {tcp-metaprotocol-thrift-hello: 19091}
              labels: {version: v1}
              weight: 3
              network: n1
              locality: us/a
              serviceAccount: sa
          exportTo: [".", ns2]
          subjectAltNames: [spiffe://x]
        """
    )
    assert parsed.is_valid, parsed.problems
    assert parsed.resource is not None
    assert parsed.resource.meta.labels == {"app": "x"}
    assert parsed.resource.meta.resource_version == "42"
    assert parsed.resource.spec == ServiceEntrySpec(
        hosts=("ext.example.com",),
        addresses=("240.240.0.1",),
        ports=(
            ServicePort(
                number=9090, name="tcp-metaprotocol-thrift-hello", protocol="TCP", target_port=19090
            ),
        ),
        location="MESH_INTERNAL",
        resolution="STATIC",
        endpoints=(
            WorkloadEntry(
                address="10.0.0.1",
                ports={"tcp-metaprotocol-thrift-hello": 19091},
                labels={"version": "v1"},
                weight=3,
                network="n1",
                locality="us/a",
                service_account="sa",
            ),
        ),
        export_to=(".", "ns2"),
        subject_alt_names=("spiffe://x",),
    )


def test_destination_rule_subsets() -> None:
    dr = load_config([BASE]).destination_rules[0]
    assert dr.spec == DestinationRuleSpec(
        host=H,
        subsets=(
            Subset(name="v1", labels={"version": "v1"}),
            Subset(name="v2", labels={"version": "v2"}),
            Subset(name="batchjob", labels={"service_group": "batchjob"}),
            Subset(name="user", labels={"service_group": "user"}),
        ),
    )


def test_destination_rule_consistent_hash_per_subset() -> None:
    snap = load_config([BASE / "serviceentry.yaml", DATA / "metaprotocol" / "consistent-hash-lb"])
    assert snap.errors == ()
    (subset,) = snap.destination_rules[0].spec.subsets
    assert subset.traffic_policy is not None
    assert subset.traffic_policy.load_balancer is not None
    assert subset.traffic_policy.load_balancer.consistent_hash == ConsistentHash(
        http_header_name="method"
    )
    assert snap.meta_routers[0].spec.routes[0].route == (_to("sample"),)


def test_destination_rule_traffic_policy_every_field() -> None:
    parsed = parse_one(
        """
        apiVersion: networking.istio.io/v1beta1
        kind: DestinationRule
        metadata: {name: dr}
        spec:
          host: svc
          exportTo: ["*"]
          workloadSelector: {matchLabels: {app: a}}
          trafficPolicy:
            loadBalancer:
              consistentHash:
                httpHeaderName: x-user
                ringHash: {minimumRingSize: 1024}
              warmupDurationSecs: 10s
            connectionPool: {tcp: {maxConnections: 10}}
            outlierDetection: {consecutive5xxErrors: 3}
            tls: {mode: ISTIO_MUTUAL}
            portLevelSettings: [{port: {number: 80}}]
          subsets:
            - name: v1
              labels: {version: v1}
              trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
        """
    )
    assert parsed.is_valid, parsed.problems
    assert parsed.resource is not None
    spec = parsed.resource.spec
    assert parsed.resource.meta.namespace == "default"  # no namespace: kubectl's default
    assert spec.export_to == ("*",)
    assert spec.workload_selector == {"app": "a"}
    policy = spec.traffic_policy
    assert policy.load_balancer.consistent_hash.http_header_name == "x-user"
    assert policy.load_balancer.consistent_hash.ring_hash == {"minimumRingSize": 1024}
    assert policy.load_balancer.warmup_duration_secs == timedelta(seconds=10)
    assert policy.connection_pool == {"tcp": {"maxConnections": 10}}
    assert policy.outlier_detection == {"consecutive5xxErrors": 3}
    assert policy.tls == {"mode": "ISTIO_MUTUAL"}
    assert policy.port_level_settings == ({"port": {"number": 80}},)
    assert spec.subsets[0].traffic_policy.load_balancer.simple == "LEAST_REQUEST"


def test_application_protocol_is_cluster_scoped() -> None:
    ap = load_config([BASE]).application_protocols[0]
    assert ap.meta.namespace == ""
    assert ap.spec == ApplicationProtocolSpec(
        protocol="dubbo", codec="aeraki.meta_protocol.codec.dubbo"
    )


def test_metarouter_v1_with_export_to() -> None:
    spec = _mr("metarouter-v1.yaml")
    assert spec == MetaRouterSpec(
        hosts=(H,),
        export_to=("metaprotocol", "default"),
        routes=(MetaRoute(name="v1", route=(_to("v1"),)),),
    )


def test_metarouter_v2() -> None:
    assert _mr("metarouter-v2.yaml").routes == (MetaRoute(name="v2", route=(_to("v2"),)),)


def test_metarouter_traffic_splitting() -> None:
    assert _mr("metarouter-traffic-splitting.yaml").routes == (
        MetaRoute(name="traffic-spilt", route=(_to("v1", 20), _to("v2", 80))),
    )


@pytest.mark.parametrize(
    ("name", "kind", "first", "second"),
    [
        ("exact", MatchKind.EXACT, "sayHello01", "sayHello"),
        ("prefix", MatchKind.PREFIX, "sayHello01", "say"),
        ("regex", MatchKind.REGEX, "sayHello01", "^s.*o$"),
    ],
)
def test_metarouter_attribute_matches(name: str, kind: MatchKind, first: str, second: str) -> None:
    assert _mr(f"metarouter-attribute-{name}.yaml").routes == (
        MetaRoute(name="v1", match=_exact_method(first, kind), route=(_to("v1"),)),
        MetaRoute(name="v2", match=_exact_method(second, kind), route=(_to("v2"),)),
    )


def test_metarouter_local_rate_limit() -> None:
    spec = _mr("metarouter-local-ratelimit.yaml")
    assert spec.local_rate_limit == LocalRateLimit(
        token_bucket=TokenBucket(
            max_tokens=5, tokens_per_fill=5, fill_interval=timedelta(seconds=60)
        ),
        conditions=(
            LocalRateLimitCondition(
                match=_exact_method("sayHello"),
                token_bucket=TokenBucket(
                    max_tokens=2, tokens_per_fill=2, fill_interval=timedelta(seconds=60)
                ),
            ),
        ),
    )
    assert spec.routes == (
        MetaRoute(name="default", match=_exact_method("sayHello"), route=(_to("v1"),)),
    )


def test_metarouter_global_rate_limit_without_routes() -> None:
    spec = _mr("metarouter-global-ratelimit.yaml")
    assert spec.routes == ()
    assert spec.global_rate_limit == GlobalRateLimit(
        match=_exact_method("sayHello"),
        domain="production",
        request_timeout=timedelta(milliseconds=100),
        deny_on_fail=True,
        rate_limit_service="outbound|8081||rate-limit-server.metaprotocol.svc.cluster.local",
        descriptors=(RateLimitDescriptor(property="method", descriptor_key="method"),),
    )


def test_metarouter_mirror() -> None:
    (route,) = _mr("traffic-mirroring.yaml").routes
    assert route.mirror == Destination(host=H, subset="v2")
    assert route.mirror_percentage == 50.0


def test_metarouter_request_mutation() -> None:
    (route,) = _mr("metarouter-header-mutation.yaml").routes
    assert route.request_mutation == (
        KeyValue(key="foo", value="bar"),
        KeyValue(key="foo1", value="bar1"),
    )
    assert route.response_mutation == ()


def test_gateway_metarouter_empty_exact_and_port() -> None:
    gw = DATA / "gateway"
    snap = load_config([gw])
    assert snap.errors == ()
    (mr,) = snap.meta_routers
    assert mr.spec.gateways == ("istio-system/istio-ingressgateway",)
    (route,) = mr.spec.routes
    assert route.name == ""
    assert route.match == _exact_method("")  # empty exact: presence at the data plane (§15.2)
    host = "thrift-sample-server.meta-thrift.svc.cluster.local"
    assert route.route == (MetaRouteDestination(destination=Destination(host=host, port=9090)),)
    snap_v1 = load_config(
        [gw / "serviceentry.yaml", gw / "destinationrule.yaml", gw / "metarouter-v1.yaml.txt"]
    )
    assert snap_v1.errors == ()
    assert snap_v1.meta_routers[0].spec.routes[0].route[0].destination.subset == "v1"


def test_virtual_service_native_dubbo() -> None:
    snap = load_config(
        [DATA / "dubbo" / "serviceentry.yaml", DATA / "dubbo" / "virtualservice-header-exact.yaml"]
    )
    assert snap.errors == ()
    (vs,) = snap.virtual_services
    first = vs.spec.http[0]
    assert first.name == "route-batchjob"
    assert first.match[0].headers == {"batchJob": StringMatch(kind=MatchKind.EXACT, value="true")}
    assert first.route[0].destination == Destination(host=H, subset="batchjob")


def test_virtual_service_method_regex_and_split() -> None:
    regex = load_config(
        [DATA / "dubbo" / "serviceentry.yaml", DATA / "dubbo" / "virtualservice-method-regex.yaml"]
    )
    assert regex.errors == ()
    assert regex.virtual_services[0].spec.http[1].match[0].method == StringMatch(
        kind=MatchKind.REGEX, value="^s.*o$"
    )
    split = load_config(
        [
            DATA / "dubbo" / "serviceentry.yaml",
            DATA / "dubbo" / "virtualservice-traffic-splitting.yaml",
        ]
    )
    assert [d.weight for d in split.virtual_services[0].spec.http[0].route] == [20, 80]


def test_thrift_short_destination_rule_host_matches_fqdn_subsets() -> None:
    snap = load_config([DATA / "thrift"])
    assert snap.problems == ()
    (vs,) = snap.virtual_services
    assert isinstance(vs.spec, VirtualServiceSpec)
    assert [d.weight for d in vs.spec.http[0].route] == [30, 70]
    assert snap.destination_rules[0].spec.host == "thrift-sample-server"


def test_presence_forms() -> None:
    parsed = parse_one(
        """
        apiVersion: metaprotocol.aeraki.io/v1alpha1
        kind: MetaRouter
        metadata: {name: p, namespace: ns}
        spec:
          hosts: [a.b]
          routes:
            - match: {attributes: {b: {regex: "*"}, a: {}}}
              route: [{destination: {host: a.b}}]
        """
    )
    assert parsed.is_valid, parsed.problems
    assert parsed.resource is not None
    attributes = parsed.resource.spec.routes[0].match.attributes
    assert list(attributes) == ["a", "b"]  # sorted by name (§16.7)
    assert set(attributes.values()) == {StringMatch(kind=MatchKind.PRESENT)}
