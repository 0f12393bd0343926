"""Bad input, one resource at a time: exact message, field path and line (reference §13.9)."""

from __future__ import annotations

import pytest

from aeraki.control.model import Severity
from tests.control.helpers import lines, parse_one

MR = """\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata:
  name: mr
  namespace: ns
spec:
  hosts: [svc.ns.svc.cluster.local]
  routes:
    - name: r
      route:
        - destination: {host: svc.ns.svc.cluster.local, subset: v1}
"""


def _mr_with(routes_yaml: str) -> list[str]:
    """Problems (formatted) of MR with its ``routes:`` block replaced (lines 8+)."""
    head = MR.split("  routes:\n")[0]
    return lines(parse_one(head + routes_yaml).problems)


def test_valid_metarouter_has_no_problem() -> None:
    parsed = parse_one(MR)
    assert parsed.problems == ()
    assert parsed.is_valid


def test_missing_required_fields() -> None:
    parsed = parse_one(
        "apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {}\n"
    )
    assert [(p.line, p.field_path, p.message) for p in parsed.problems] == [
        (1, "spec", "required field is missing"),
        (3, "metadata.name", "required field is missing"),
    ]
    assert parsed.resource is None
    assert not parsed.is_valid


def test_missing_kind_and_api_version() -> None:
    parsed = parse_one("metadata: {name: x}\nspec: {}\n")
    assert lines(parsed.problems) == [
        "test.yaml:1: error: kind: required field is missing",
        "test.yaml:1: error: apiVersion: required field is missing",
    ]


def test_not_a_mapping() -> None:
    parsed = parse_one("- a\n- b\n")
    assert lines(parsed.problems) == [
        "test.yaml:1: error: a manifest must be a mapping with apiVersion and kind, got list"
    ]


def test_unknown_kind_is_a_warning_and_skipped() -> None:
    parsed = parse_one("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
    assert parsed.resource is None
    assert [p.severity for p in parsed.problems] == [Severity.WARNING]
    assert lines(parsed.problems) == [
        'test.yaml:1: warning: kind "Deployment" (apps/v1) is not read by Aeraki; skipped'
    ]


def test_wrong_api_version() -> None:
    parsed = parse_one(MR.replace("metaprotocol.aeraki.io/v1alpha1", "networking.istio.io/v1"))
    assert lines(parsed.problems) == [
        'test.yaml:1: error: MetaRouter ns/mr: apiVersion: "networking.istio.io/v1" is not an '
        "apiVersion of MetaRouter (use metaprotocol.aeraki.io/v1alpha1, metaprotocol.aeraki.io/v1)"
    ]


def test_unknown_top_level_and_spec_fields() -> None:
    text = MR.replace("spec:\n", "extra: 1\nspec:\n  hostz: []\n")
    assert lines(parse_one(text).problems) == [
        'test.yaml:6: error: MetaRouter ns/mr: extra: unknown field "extra" on MetaRouter resource ns/mr',  # noqa: E501
        'test.yaml:8: error: MetaRouter ns/mr: spec.hostz: unknown field (did you mean "hosts"?)',
    ]


def test_wrong_types() -> None:
    problems = _mr_with(
        """\
  routes:
    - name: 7
      route:
        - destination: {host: a.b, subset: v1}
          weight: "20"
        - destination: {host: a.b, subset: v2, port: {number: true}}
          weight: -1
"""
    )
    assert problems == [
        "test.yaml:9: error: MetaRouter ns/mr: spec.routes[0].name: expected a string, got number 7 (quote it in YAML)",  # noqa: E501
        'test.yaml:12: error: MetaRouter ns/mr: spec.routes[0].route[0].weight: expected an integer, got string "20"',  # noqa: E501
        "test.yaml:13: error: MetaRouter ns/mr: spec.routes[0].route[1].destination.port.number: expected an integer, got boolean true",  # noqa: E501
        "test.yaml:14: error: MetaRouter ns/mr: spec.routes[0].route[1].weight: -1 is out of range 0..4294967295",  # noqa: E501
    ]


def test_routes_not_a_list() -> None:
    assert (
        _mr_with("  routes: {name: r}\n")
        == [
            "test.yaml:8: error: MetaRouter ns/mr: spec.routes: expected a list, got mapping",
            "test.yaml:6: error: MetaRouter ns/mr: spec: meta router must at least have one of "
            "routes, globalRateLimit, or LocalRateLimit",
        ][::-1]
    )


def test_hosts_rules() -> None:
    assert lines(
        parse_one(MR.replace("hosts: [svc.ns.svc.cluster.local]", "hosts: []")).problems
    ) == ["test.yaml:7: error: MetaRouter ns/mr: spec.hosts: meta router must have one host"]
    two = MR.replace("hosts: [svc.ns.svc.cluster.local]", "hosts: [a.b, c.d]")
    assert lines(parse_one(two).problems) == [
        "test.yaml:7: error: MetaRouter ns/mr: spec.hosts: meta router can only have one host"
    ]
    bad = MR.replace("hosts: [svc.ns.svc.cluster.local]", "hosts: [Svc.ns]")
    assert lines(parse_one(bad).problems) == [
        'test.yaml:7: error: MetaRouter ns/mr: spec.hosts[0]: domain name "Svc.ns" invalid (label "Svc" invalid)'  # noqa: E501
    ]
    numeric = MR.replace("hosts: [svc.ns.svc.cluster.local]", "hosts: [a.123]")
    assert parse_one(numeric).problems[0].message == (
        'domain name "a.123" invalid (top level domain "123" cannot be all-numeric)'
    )


def test_bad_regex() -> None:
    problems = _mr_with(
        """\
  routes:
    - match:
        attributes:
          method: {regex: "(a"}
          iface: {regex: ""}
          look: {regex: "a(?=b)"}
      route: [{destination: {host: a.b}}]
"""
    )
    hint = "Aeraki uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
    prefix = "error: MetaRouter ns/mr: spec.routes[0].match.attributes"
    assert problems == [
        f'test.yaml:11: {prefix}.method.regex: "attributes": error parsing regexp: '
        f"missing ), unterminated subpattern: `(a`; {hint}",
        f'test.yaml:12: {prefix}.iface.regex: "attributes": regex string match should not be empty',
        f'test.yaml:13: {prefix}.look.regex: "attributes": error parsing regexp: '
        f"invalid or unsupported Perl syntax: `(?=`; {hint}",
    ]


def test_bad_regex_sorted_by_line() -> None:
    problems = _mr_with(
        """\
  routes:
    - match:
        attributes:
          method: {regex: "(a"}
          iface: {regex: "x\\\\1"}
      route: [{destination: {host: a.b}}]
"""
    )
    assert [p.split(": ", 4)[3] for p in problems] == [
        "spec.routes[0].match.attributes.method.regex",
        "spec.routes[0].match.attributes.iface.regex",
    ]
    assert "invalid escape sequence: `\\1`" in problems[1]


def test_bad_weights() -> None:
    problems = _mr_with(
        """\
  routes:
    - route:
        - {destination: {host: a.b, subset: v1}, weight: 20}
        - {destination: {host: a.b, subset: v2}, weight: 70}
      match: {attributes: {a: {exact: b}}}
    - route:
        - {destination: {host: a.b, subset: v1}, weight: 150}
        - {destination: {host: a.b, subset: v2}, weight: 0}
"""
    )
    assert problems == [
        "test.yaml:9: error: MetaRouter ns/mr: spec.routes[0].route: total destination weight 90 != 100",  # noqa: E501
        "test.yaml:13: error: MetaRouter ns/mr: spec.routes[1].route: total destination weight 150 != 100",  # noqa: E501
        "test.yaml:14: error: MetaRouter ns/mr: spec.routes[1].route[0].weight: percentage 150 is not in range 0..100",  # noqa: E501
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("150", "mirrorPercentage must not be greater than 100 (it has 150.000000)"),
        ("0", "mirrorPercentage must not be less than or equal to 0 (it has 0.000000)"),
        ("-2.5", "mirrorPercentage must not be less than or equal to 0 (it has -2.500000)"),
    ],
)
def test_bad_mirror_percentage(value: str, message: str) -> None:
    problems = _mr_with(
        f"""\
  routes:
    - route: [{{destination: {{host: a.b}}}}]
      mirror: {{host: a.b, subset: v2}}
      mirrorPercentage: {{value: {value}}}
"""
    )
    assert problems == [
        f"test.yaml:11: error: MetaRouter ns/mr: spec.routes[0].mirrorPercentage.value: {message}"
    ]


def test_mirror_percentage_without_mirror() -> None:
    problems = _mr_with(
        """\
  routes:
    - route: [{destination: {host: a.b}}]
      mirrorPercentage: {value: 10}
"""
    )
    assert problems == [
        "test.yaml:10: error: MetaRouter ns/mr: spec.routes[0].mirrorPercentage.value: "
        "mirrorPercentage and mirror must be set together"
    ]


def test_destination_rules() -> None:
    problems = _mr_with(
        """\
  routes:
    - route: []
      match: {attributes: {a: {exact: b}}}
    - route:
        - null
        - weight: 100
        - destination: {host: a.b, subset: V_1, port: {number: 0}}
"""
    )
    assert problems == [
        "test.yaml:9: error: MetaRouter ns/mr: spec.routes[0].route: a route must has at least one destination",  # noqa: E501
        "test.yaml:12: error: MetaRouter ns/mr: spec.routes[1].route[0]: weight may not be nil",
        "test.yaml:13: error: MetaRouter ns/mr: spec.routes[1].route[1].destination: destination is required",  # noqa: E501
        "test.yaml:14: error: MetaRouter ns/mr: spec.routes[1].route[2].destination.subset: subset name is invalid: V_1",  # noqa: E501
        "test.yaml:14: error: MetaRouter ns/mr: spec.routes[1].route[2].destination.port.number: port number 0 must be in the range 1..65535",  # noqa: E501
    ]


def test_null_route_and_null_attribute_and_mutation() -> None:
    problems = _mr_with(
        """\
  routes:
    - null
    - match: {attributes: {method: null}}
      route: [{destination: {host: a.b}}]
      requestMutation: [{key: "", value: v}, {key: k}]
"""
    )
    assert problems == [
        "test.yaml:9: error: MetaRouter ns/mr: spec.routes[0]: meta route may not be null",
        "test.yaml:10: error: MetaRouter ns/mr: spec.routes[1].match.attributes.method: attribute match method cannot be null",  # noqa: E501
        "test.yaml:12: error: MetaRouter ns/mr: spec.routes[1].requestMutation[0].key: mutation key cannot be empty",  # noqa: E501
        "test.yaml:12: error: MetaRouter ns/mr: spec.routes[1].requestMutation[1].value: mutation value cannot be empty",  # noqa: E501
    ]


def test_unreachable_route_is_a_warning() -> None:
    parsed = parse_one(
        MR
        + """\
    - name: second
      route:
        - destination: {host: svc.ns.svc.cluster.local}
"""
    )
    assert parsed.is_valid
    assert lines(parsed.problems) == [
        "test.yaml:12: warning: MetaRouter ns/mr: spec.routes[1]: MetaRouter rule #1 not used "
        "(only the last rule can have no match)"
    ]


def test_export_to_rules() -> None:
    text = MR.replace("spec:\n", "spec:\n  exportTo: [., ns, '~', Bad, '*']\n")
    assert [(p.field_path, p.message) for p in parse_one(text).problems] == [
        ("spec.exportTo[1]", "duplicate entries in exportTo: . and current namespace ns"),
        ("spec.exportTo[2]", "exportTo ~ (none) is not allowed for Istio configuration objects"),
        ("spec.exportTo[3]", "only .,*,~, or a valid DNS 1123 label is allowed as exportTo entry"),
        (
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        ),
    ]


def test_rate_limit_rules() -> None:
    text = MR.split("  routes:\n")[0] + (
        """\
  localRateLimit:
    tokenBucket: {maxTokens: 0, tokensPerFill: 0}
    conditions:
      - {}
  globalRateLimit:
    descriptors: [{}]
"""
    )
    assert [(p.field_path, p.message) for p in parse_one(text).problems] == [
        (
            "spec.localRateLimit.tokenBucket.fillInterval",
            "localRateLimit tokenBucket fillInterval cannot be null",
        ),
        (
            "spec.localRateLimit.tokenBucket.tokensPerFill",
            "localRateLimit tokenBucket tokensPerFill must be greater than 0",
        ),
        (
            "spec.localRateLimit.tokenBucket.maxTokens",
            "localRateLimit tokenBucket maxTokens must be greater than 0",
        ),
        (
            "spec.localRateLimit.conditions[0].match",
            "localRateLimit condition match cannot be null",
        ),
        (
            "spec.localRateLimit.conditions[0].tokenBucket",
            "localRateLimit condition tokenBucket cannot be null",
        ),
        ("spec.globalRateLimit.domain", "globalRateLimit domain cannot be empty"),
        ("spec.globalRateLimit.rateLimitService", "globalRateLimit cluster cannot be empty"),
        (
            "spec.globalRateLimit.descriptors[0].descriptorKey",
            "globalRateLimit descriptor key cannot be empty",
        ),
        (
            "spec.globalRateLimit.descriptors[0].property",
            "globalRateLimit descriptor property cannot be empty",
        ),
    ]


def test_bad_duration() -> None:
    text = MR.split("  routes:\n")[0] + (
        "  localRateLimit:\n    tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 1 minute}\n"  # noqa: E501
    )
    assert [p.message for p in parse_one(text).problems] == [
        'invalid duration "1 minute" (expected e.g. "1s", "100ms", "1m30s")',
        "localRateLimit tokenBucket fillInterval cannot be null",
    ]


def test_application_protocol_rules() -> None:
    parsed = parse_one(
        "apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: ApplicationProtocol\n"
        "metadata: {name: ap, namespace: ignored}\nspec: {}\n"
    )
    assert lines(parsed.problems) == [
        "test.yaml:4: error: ApplicationProtocol ap: spec.protocol: application protocol must have protocol",  # noqa: E501
        "test.yaml:4: error: ApplicationProtocol ap: spec.codec: application protocol must have codec",  # noqa: E501
    ]


SE = """\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: se, namespace: ns}
spec:
  hosts: [a.b, c.d]
  resolution: STATIC
  ports:
    - {number: 80, name: tcp-metaprotocol}
    - {number: 80, name: http-x}
    - {name: nonumber}
    - number: 81
  endpoints:
    - {address: host.example, ports: {nope: 1}}
  location: SOMEWHERE
"""


def test_service_entry_rules() -> None:
    assert [
        (p.severity.value, p.line, p.field_path, p.message) for p in parse_one(SE).problems
    ] == [
        (
            "warning",
            5,
            "spec.hosts",
            'only the first host "a.b" is used by Aeraki; the others are ignored',
        ),
        (
            "error",
            8,
            "spec.ports[0].name",
            'port name "tcp-metaprotocol" has no application protocol (name MetaProtocol ports tcp-metaprotocol-<protocol>[-<suffix>])',  # noqa: E501
        ),
        ("error", 9, "spec.ports[1].number", "port number 80 is already defined by ports[0]"),
        ("error", 10, "spec.ports[2].number", "required field is missing"),
        (
            "warning",
            11,
            "spec.ports[3]",
            "port has no name: protocol detection by port name (§4) cannot apply",
        ),
        (
            "error",
            13,
            "spec.endpoints[0].address",
            'endpoint address "host.example" must be an IP address or unix:// socket when resolution is STATIC',  # noqa: E501
        ),
        (
            "error",
            13,
            "spec.endpoints[0].ports.nope",
            'endpoint port "nope" is not a port name of this service entry',
        ),
        ("error", 14, "spec.location", '"SOMEWHERE" is not one of MESH_EXTERNAL, MESH_INTERNAL'),
    ]


def test_destination_rule_rules() -> None:
    parsed = parse_one(
        """\
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: dr}
spec:
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      consistentHash: {httpHeaderName: a, useSourceIp: true}
  subsets:
    - {name: v1}
    - {name: v1}
    - {labels: {a: b}}
"""
    )
    assert [(p.line, p.field_path, p.message) for p in parsed.problems] == [
        (4, "spec.host", "required field is missing"),
        (6, "spec.trafficPolicy.loadBalancer", "only one of simple, consistentHash may be set"),
        (
            8,
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one hash key may be set (found httpHeaderName, useSourceIp)",
        ),
        (11, "spec.subsets[1].name", "duplicate subset name v1 (also subsets[0])"),
        (12, "spec.subsets[2].name", "required field is missing"),
    ]


def test_string_match_oneof() -> None:
    problems = _mr_with(
        """\
  routes:
    - match: {attributes: {m: {exact: a, prefix: b}, n: {exact: 1}, o: {suffix: x}}}
      route: [{destination: {host: a.b}}]
"""
    )
    assert [p.split(": ", 3)[3] for p in problems] == [
        "spec.routes[0].match.attributes.m: only one of exact, prefix, regex may be set (found exact, prefix)",  # noqa: E501
        "spec.routes[0].match.attributes.n.exact: expected a string, got number 1 (quote it in YAML)",  # noqa: E501
        "spec.routes[0].match.attributes.o.suffix: unknown field",
    ]
