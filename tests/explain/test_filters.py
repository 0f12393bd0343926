"""``aeraki explain``: the filters before the router (:mod:`aeraki.explain.filters`).

Rate limits come from Aeraki's e2e MetaRouters (``tests/control/data/metaprotocol``:
``localRateLimit`` with a condition, ``globalRateLimit``) and the integration suite's shapes,
explained through the control plane's translation; every filter at once from a bootstrap
(``tests/test_explain_data/filters.yaml``). Nothing may take a token or call a service: the
helpers the explanation uses are checked against the filters' own behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aeraki.cli import main
from aeraki.explain.filters import FRESH_TOKENS, UNKNOWN_EFFECT, FilterStep, explain_filters
from aeraki.explain.view import ConfigView, from_bootstrap
from aeraki.proxy.config import FilterConfig, ListenerConfig, MetaProtocolConfig, SocketAddress
from aeraki.proxy.filters.api import ROUTER_FILTER
from aeraki.proxy.filters.local_ratelimit import bucket_for, compile_conditions, compile_limiter
from aeraki.proxy.filters.ratelimit import compile_settings, rls_request
from aeraki.proxy.filters.shared_buckets import DEFAULT_INDEX
from tests.integration.test_ratelimit import RLS_CLUSTER, rls_service
from tests.test_explain import DUBBO_FRAME, DUBBO_LISTENER, E2E, FRAMES, THRIFT_FRAME, H, e2e_mesh

LOCAL = "aeraki.meta_protocol.filters.local_ratelimit"
GLOBAL = "aeraki.meta_protocol.filters.ratelimit"
EXCHANGE = "aeraki.meta_protocol.filters.metadata_exchange"
STATS = "aeraki.meta_protocol.filters.istio_stats"
BOOTSTRAP = FRAMES / "filters.yaml"
#: The integration suite's rate limit service, on a port nothing listens on (never called).
RLS_SERVICE = rls_service(18081)


def limits_router(limits: str) -> str:
    """A MetaRouter for the e2e Dubbo service: every request to v1, ``limits`` at spec level."""
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: limits, namespace: metaprotocol}}
spec:
  hosts: [{H}]
  routes:
    - name: all
      route: [{{destination: {{host: {H}, subset: v1}}}}]
{limits}"""


def mesh(tmp_path: Path, *routers: Path, files: dict[str, str] | None = None) -> Path:
    root = e2e_mesh(tmp_path, *routers)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


def trace(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["explain", *argv, "--json", "--random", "7"]) == 0
    (listener,) = json.loads(capsys.readouterr().out)["listeners"]
    assert listener["skipped"] == ""
    return dict(listener)


def dubbo(capsys: pytest.CaptureFixture[str], root: Path, *request: str) -> dict[str, Any]:
    request = request or ("--frame", str(DUBBO_FRAME))
    return trace(capsys, "--manifests", str(root), "--listener", DUBBO_LISTENER, *request)


def by_name(listener: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in listener["filters"]}


# -- local rate limit -----------------------------------------------------------------------
def test_e2e_local_limit_the_condition_bucket_takes_saying_hello(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """metarouter-local-ratelimit.yaml: sayHello has its own bucket of 2 per 60 s."""
    root = mesh(tmp_path, E2E / "metarouters" / "metarouter-local-ratelimit.yaml")
    listener = dubbo(capsys, root)
    assert [f["name"] for f in listener["filters"]] == [LOCAL, ROUTER_FILTER]
    local = listener["filters"][0]
    details = local["details"]
    assert details["bucket"] == "conditions[0]"
    (condition,) = details["conditions"]
    assert condition["matched"] is True
    assert condition["matchers"] == [
        {"matcher": "method exact 'sayHello'", "ok": True, "seen": "sayHello"}
    ]
    assert condition["token_bucket"] == {
        "max_tokens": 2,
        "tokens_per_fill": 2,
        "fill_interval_s": 60.0,
    }
    assert details["default_bucket"]["max_tokens"] == 5
    assert details["tokens"] == FRESH_TOKENS
    assert local["effect"].startswith("takes a token from the bucket of conditions[0]")
    router = listener["filters"][1]
    assert router["effect"] == listener["outcome"]
    assert listener["outcome"].startswith("forwarded to 127.0.0.1:20881")


def test_e2e_local_limit_other_methods_use_the_default_bucket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = mesh(tmp_path, E2E / "metarouters" / "metarouter-local-ratelimit.yaml")
    local = by_name(dubbo(capsys, root, "method=whoami"))[LOCAL]
    assert local["details"]["bucket"] == "default"
    (condition,) = local["details"]["conditions"]
    assert condition["matched"] is False
    assert condition["matchers"][0] == {
        "matcher": "method exact 'sayHello'",
        "ok": False,
        "seen": "whoami",
    }
    assert "default bucket (max 5 tokens, +5 every 60s)" in local["effect"]
    # the text form, for a terminal
    assert main(["explain", "--manifests", str(root), "method=whoami"]) == 0
    text = capsys.readouterr().out
    assert "  filters, in order:\n    1. local_ratelimit: no condition matches" in text
    assert "miss  conditions[0]: max 2 tokens, +2 every 60s" in text
    assert "FAIL method exact 'sayHello': value 'whoami'" in text
    assert "default bucket: max 5 tokens, +5 every 60s  <- this bucket" in text
    # the e2e MetaRouter routes only sayHello: the router's step says so too
    assert "    2. router: no route matched: RouteNotFound" in text


def test_a_limit_without_default_bucket_lets_unmatched_requests_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = """\
  localRateLimit:
    conditions:
      - tokenBucket: {fillInterval: 60s, maxTokens: 2, tokensPerFill: 2}
        match: {attributes: {method: {exact: sayHello}}}
"""
    root = mesh(tmp_path, files={"limits.yaml": limits_router(limits)})
    local = by_name(dubbo(capsys, root, "method=whoami"))[LOCAL]
    assert local["details"]["bucket"] is None
    assert local["details"]["default_bucket"] is None
    assert local["effect"] == "no condition matches and there is no default bucket: always allowed"


def test_bucket_for_picks_the_bucket_the_limiter_takes_from() -> None:
    """The explanation's choice and ``Limiter.allow``'s are the same bucket: take a token
    for each request and see which bucket lost it."""
    from aeraki.xds.gen.meta_protocol_proxy.filters.local_ratelimit.v1alpha import (
        local_ratelimit_pb2 as pb,
    )

    config = pb.LocalRateLimit(stat_prefix="x")
    config.token_bucket.max_tokens = 100
    config.token_bucket.fill_interval.seconds = 60
    for method, op in (("sayHello", "exact_match"), ("say", "prefix_match")):
        condition = config.conditions.add()
        setattr(condition.match.metadata.add(name="method"), op, method)
        condition.token_bucket.max_tokens = 100
        condition.token_bucket.fill_interval.seconds = 60
    conditions, default = compile_conditions(config)
    limiter = compile_limiter(config, clock=lambda: 0.0)
    buckets = [b for _, b in limiter.conditions]
    assert limiter.default is not None
    buckets_by_index = {0: buckets[0], 1: buckets[1], DEFAULT_INDEX: limiter.default}
    for method, expected in (("sayHello", 0), ("sayBye", 1), ("whoami", DEFAULT_INDEX)):
        strings = {"method": method}
        chosen = bucket_for(conditions, default, strings)
        assert chosen == expected
        before = {i: b.tokens for i, b in buckets_by_index.items()}  # type: ignore[attr-defined]
        assert limiter.allow(strings)
        after = {i: b.tokens for i, b in buckets_by_index.items()}  # type: ignore[attr-defined]
        assert [i for i in before if before[i] != after[i]] == [chosen]
    config.ClearField("token_bucket")
    conditions, default = compile_conditions(config)
    assert bucket_for(conditions, default, {"method": "whoami"}) is None


# -- global rate limit ----------------------------------------------------------------------
def test_e2e_global_limit_without_its_service_refuses_before_routing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """metarouter-global-ratelimit.yaml names an RLS cluster no manifest defines, with
    denyOnFail: the proxy answers OverLimit without asking, and the router is not reached."""
    root = mesh(tmp_path, E2E / "metarouters" / "metarouter-global-ratelimit.yaml")
    listener = dubbo(capsys, root)
    rate, router = listener["filters"]
    assert rate["name"] == GLOBAL
    details = rate["details"]
    assert details["applies"] is True
    assert details["domain"] == "production"
    assert details["descriptors"] == [[{"key": "method", "value": "sayHello"}]]
    assert details["rls_cluster"] == RLS_CLUSTER
    assert details["rls_host"] is None
    assert details["timeout_s"] == 0.1
    assert details["failure_mode_deny"] is True
    assert "not configured" in rate["effect"]
    assert "refused with OverLimit" in rate["effect"]
    assert router["name"] == ROUTER_FILTER
    assert router["effect"].startswith("not reached: ")
    assert router["details"]["would"].startswith("forwarded to")
    assert listener["outcome"].startswith(f"refused before routing: {GLOBAL} answers OverLimit")
    assert listener["route"] is not None  # the route explanation is still there


def test_global_limit_with_its_service_shows_the_request_it_would_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = f"""\
  globalRateLimit:
    domain: production
    match: {{attributes: {{method: {{exact: sayHello}}}}}}
    rateLimitService: "{RLS_CLUSTER}"
    requestTimeout: 2s
    denyOnFail: true
    descriptors:
      - {{property: method, descriptorKey: method}}
      - {{property: user, descriptorKey: user}}
      - {{property: tenant, descriptorKey: tenant}}
"""
    files = {"limits.yaml": limits_router(limits), "rls.yaml": RLS_SERVICE}
    root = mesh(tmp_path, files=files)
    listener = dubbo(capsys, root)
    rate = by_name(listener)[GLOBAL]
    assert rate["details"]["rls_host"] == "127.0.0.1:18081"
    assert rate["details"]["descriptors"] == [
        [{"key": "method", "value": "sayHello"}],
        [{"key": "user", "value": "alice"}],  # an attachment of the captured frame
        [{"key": "tenant", "value": ""}],  # absent: sent empty, as the filter does
    ]
    assert rate["effect"].startswith(f"asks the rate limit service ({RLS_CLUSTER}, timeout 2s)")
    assert rate["details"]["verdict"].startswith("not asked")
    assert listener["outcome"].startswith("forwarded to 127.0.0.1:20881")
    # a method the match does not take: no call at all
    other = by_name(dubbo(capsys, root, "method=whoami"))[GLOBAL]
    assert other["details"]["applies"] is False
    assert other["effect"] == "its match fails: no rate limit call, the request goes on"


def test_global_limit_failing_open_lets_the_request_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (E2E / "metarouters" / "metarouter-global-ratelimit.yaml").read_text()
    root = mesh(
        tmp_path, files={"limits.yaml": text.replace("denyOnFail: true", "denyOnFail: false")}
    )
    listener = dubbo(capsys, root)
    rate = by_name(listener)[GLOBAL]
    assert "let through (failure_mode_deny is off)" in rate["effect"]
    assert listener["outcome"].startswith("forwarded to")
    assert by_name(listener)[ROUTER_FILTER]["effect"] == listener["outcome"]


def test_rls_request_is_what_the_filter_sends() -> None:
    from aeraki.xds.gen.meta_protocol_proxy.filters.ratelimit.v1alpha import ratelimit_pb2 as pb

    config = pb.RateLimit(domain="d")
    config.descriptors.add(property="Method", descriptor_key="m")
    config.descriptors.add(property="absent", descriptor_key="a")
    config.rate_limit_service.grpc_service.envoy_grpc.cluster_name = "rls"
    message = rls_request(compile_settings(config), {"method": "sayHello"})
    assert message.domain == "d"
    assert [[(e.key, e.value) for e in d.entries] for d in message.descriptors] == [
        [("m", "sayHello")],
        [("a", "")],
    ]


# -- every filter, from a bootstrap -----------------------------------------------------------
def test_a_bootstrap_chain_is_explained_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    listener = trace(capsys, "-c", str(BOOTSTRAP), "--frame", str(THRIFT_FRAME))
    assert [f["name"] for f in listener["filters"]] == [
        EXCHANGE,
        LOCAL,
        GLOBAL,
        STATS,
        ROUTER_FILTER,
    ]
    steps = by_name(listener)
    node = "sidecar~10.0.0.7~thrift-client-1.meta-thrift~meta-thrift.svc.cluster.local"
    exchange = steps[EXCHANGE]
    assert exchange["details"]["adds_to"] == "request"
    assert exchange["details"]["properties"]["x-envoy-peer-metadata-id"] == node
    assert exchange["details"]["node_keys"] == ["NAMESPACE", "WORKLOAD_NAME", "LABELS"]
    assert exchange["effect"].endswith(f"x-envoy-peer-metadata-id={node!r} to the request")
    # whoami: not the local condition's (prefix say), no default bucket
    assert steps[LOCAL]["details"]["bucket"] is None
    assert steps[GLOBAL]["details"]["applies"] is True
    assert steps[GLOBAL]["details"]["rls_host"] == "127.0.0.1:8081"
    assert steps[GLOBAL]["details"]["descriptors"] == [
        [{"key": "method", "value": "whoami"}],
        [{"key": "tenant", "value": ""}],
    ]
    assert steps[STATS]["details"]["reporter"] == "source"
    assert steps[STATS]["details"]["destination_service"] == (
        "thrift-sample-server.meta-thrift.svc.cluster.local"
    )
    assert steps[STATS]["details"]["metrics"][0] == "istio_requests_total"
    assert steps[ROUTER_FILTER]["effect"] == "forwarded to 127.0.0.1:9091 in thrift-server"
    hello = by_name(trace(capsys, "-c", str(BOOTSTRAP), "method=sayHello"))
    assert hello[LOCAL]["details"]["bucket"] == "conditions[0]"
    assert hello[GLOBAL]["details"]["applies"] is False


def _view_with(filters: tuple[FilterConfig, ...], direction: str = "INBOUND") -> ConfigView:
    proxy = MetaProtocolConfig(
        stat_prefix="p", application_protocol="dubbo", codec="c", filters=filters
    )
    listener = ListenerConfig(
        name="l", address=SocketAddress("127.0.0.1", 1), proxy=proxy, traffic_direction=direction
    )
    return ConfigView("test", (listener,), {}, node_id="n", node_metadata={"NAMESPACE": "ns"})


ROUTER_STEP = FilterStep(ROUTER_FILTER, "forwarded")


def test_an_unknown_filter_is_named_and_the_router_is_always_last() -> None:
    view = _view_with((FilterConfig(name="example.user_filter", config={"a": 1}),))
    steps, refusal = explain_filters(view, view.listeners[0], {}, ROUTER_STEP)
    assert steps == (FilterStep("example.user_filter", UNKNOWN_EFFECT), ROUTER_STEP)
    assert refusal == ""


def test_inbound_telemetry_adds_to_responses_and_reads_the_peer_from_the_request() -> None:
    from aeraki.proxy.filters.metadata_exchange import PEER_METADATA, encode_local_metadata
    from aeraki.xds.registry import FILTER_CONFIG_TYPES, message_class

    stats = message_class(FILTER_CONFIG_TYPES[STATS])()
    view = _view_with((FilterConfig(name=EXCHANGE), FilterConfig(name=STATS, config=stats)))
    peer = encode_local_metadata({"WORKLOAD_NAME": "client", "NAMESPACE": "web"})
    steps, _ = explain_filters(view, view.listeners[0], {PEER_METADATA: peer}, ROUTER_STEP)
    exchange, istio, _ = steps
    assert exchange.details["adds_to"] == "forwarded response"
    assert istio.details["reporter"] == "destination"
    assert istio.details["peer_workload"] == "client.web"
    bare = _view_with((FilterConfig(name=EXCHANGE),), direction="UNSPECIFIED")
    (step, _), _ = explain_filters(bare, bare.listeners[0], {}, ROUTER_STEP)
    assert step.effect.startswith("nothing: the listener's traffic direction is UNSPECIFIED")


def test_the_bootstrap_view_carries_the_node() -> None:
    view = from_bootstrap(str(BOOTSTRAP))
    assert view.node_id.startswith("sidecar~10.0.0.7~")
    assert view.node_metadata["WORKLOAD_NAME"] == "thrift-client"
    assert view.live is False


def test_manifests_with_istio_telemetry_get_the_telemetry_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = mesh(tmp_path, E2E / "metarouters" / "metarouter-v1.yaml")
    plain = dubbo(capsys, root)
    assert [f["name"] for f in plain["filters"]] == [ROUTER_FILTER]
    telemetry = dubbo(capsys, root, "method=sayHello", "--istio-telemetry")
    assert [f["name"] for f in telemetry["filters"]] == [EXCHANGE, STATS, ROUTER_FILTER]
    assert by_name(telemetry)[EXCHANGE]["details"]["adds_to"] == "request"
