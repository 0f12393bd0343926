# ruff: noqa: F811  (pytest fixtures imported from the e2e harness are parameters here)
"""Rate limits (issue 4 items 1–2) with real Thrift and Dubbo peers, configured from MetaRouter
manifests through the control plane (the e2e harness of ``test_control_e2e``), and the test
RLS (:mod:`tests.integration.peers.rls`) also limiting a real Envoy.

Rates are checked without trusting the machine's speed: the client calls faster than the
limit, the allowed count is compared with the tokens the bucket can have produced during the
interval the test measured (initial tokens plus fills), and the measurement ends on a refused
call, so the bucket is known to be empty at both ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import EnvoyFactory
from tests.integration.peers.dubbo import (
    STATUS_OK,
    DubboCall,
    DubboFrame,
    dubbo_calls,
    request_frame,
)
from tests.integration.peers.procs import LOOPBACK, free_port
from tests.integration.peers.rls import Descriptor, RateLimitServer
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class
from tests.integration.peers.thrift_peer import ThriftServer
from tests.integration.test_control_e2e import (
    DUBBO,
    THRIFT,
    Mesh,
    dubbo_pair,  # noqa: F401  (a fixture ``mesh`` uses)
    mesh,  # noqa: F401
    route,
    string_value,
    thrift_pair,  # noqa: F401
)

#: The Dubbo status of an OverLimit local reply (SERVER_THREADPOOL_EXHAUSTED, reference §14).
DUBBO_OVER_LIMIT = 100
RLS_HOST = "rate-limit-server.metaprotocol.svc.cluster.local"
RLS_CLUSTER = f"outbound|8081||{RLS_HOST}"
SAY_HELLO: Descriptor = (("method", "sayHello"),)
TApplicationException = application_exception_class("thriftpy2")


def metarouter(namespace: str, host: str, routes: str = "", limits: str = "") -> str:
    """A MetaRouter for ``host``: ``routes`` under ``spec.routes`` (indented 4, may be empty:
    the default route then applies), ``limits`` at ``spec`` level (indented 2)."""
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: limits, namespace: {namespace}}}
spec:
  hosts: [{host}]
  routes:
{routes or "    []"}
{limits}"""


def rls_service(port: int) -> str:
    """The rate limit service as a ServiceEntry (its cluster is what the filter names)."""
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: rate-limit-server, namespace: metaprotocol}}
spec:
  hosts: [{RLS_HOST}]
  ports: [{{number: 8081, name: grpc-rls, protocol: GRPC}}]
  resolution: STATIC
  endpoints:
    - {{address: 127.0.0.1, ports: {{grpc-rls: {port}}}}}
"""


def global_limit(match: str, *, deny: bool = True, timeout: str = "2s") -> str:
    return f"""\
  globalRateLimit:
    domain: production
    match: {{attributes: {match}}}
    rateLimitService: "{RLS_CLUSTER}"
    requestTimeout: {timeout}
    denyOnFail: {str(deny).lower()}
    descriptors: [{{property: method, descriptorKey: method}}]
"""


async def dubbo(mesh: Mesh, frames: list[bytes]) -> list[DubboFrame]:
    """Send ``frames`` pipelined on one connection; the replies by request id (refusals come
    back before the calls that went to the provider)."""
    replies = await asyncio.to_thread(mesh.dubbo, frames)
    return sorted(replies, key=lambda f: f.request_id)


def local_stats(mesh: Mesh, host: str) -> dict[str, int]:
    """The proxy's local rate limit counters for the MetaRouter of ``host``: Aeraki's names,
    ``meta_protocol.<the filter's stat_prefix: the host>.local_rate_limit.<stat>``."""
    stats = mesh.proxy.stats()
    head = f"meta_protocol.{host}.local_rate_limit."
    return {k.removeprefix(head): v for k, v in stats.items() if k.startswith(head)}


# -- local --------------------------------------------------------------------------------------
def thrift_calls_until_limited(
    port: int, min_seconds: float, max_calls: int
) -> tuple[int, int, float, str]:
    """Call ``whoami`` for at least ``min_seconds``, then until a call is refused.

    Returns (allowed, refused, seconds from the first call's start to the last call's end,
    the message of a refusal).
    """
    allowed = refused = 0
    message = ""
    with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
        start = time.monotonic()
        for _ in range(max_calls):  # bounded; ends on the first refusal after min_seconds
            try:
                client.whoami()
                allowed += 1
            except TApplicationException as exc:
                refused += 1
                message = str(exc)
                if time.monotonic() - start >= min_seconds:
                    break
        return allowed, refused, time.monotonic() - start, message


async def test_local_limit_holds_the_configured_rate(mesh: Mesh) -> None:
    """50 requests/s (5 tokens every 100 ms) after a burst of 100, within ±10 %."""
    limits = """\
  localRateLimit:
    tokenBucket: {maxTokens: 100, tokensPerFill: 5, fillInterval: 100ms}
"""
    await mesh.apply(
        "thrift-route.yaml",
        metarouter("meta-thrift", THRIFT, route("all", (THRIFT, "v1", None)), limits),
    )
    allowed, refused, seconds, message = await asyncio.to_thread(
        thrift_calls_until_limited, mesh.thrift_port, 3.0, 200_000
    )
    assert "rate limited" in message
    assert refused > allowed  # the client called well above the limit all along
    # The bucket was full at the first call (nothing used it before) and empty at the last:
    # every token produced in between was taken. Fills in the interval: seconds / 100 ms.
    rate = (allowed - 100) / seconds
    print(f"local limit: {allowed} allowed, {refused} refused in {seconds:.3f}s: {rate:.1f}/s")
    assert abs(rate - 50.0) <= 5.0, (allowed, refused, seconds)
    assert local_stats(mesh, THRIFT) == {
        "ok": allowed,
        "rate_limited": refused,
    }


async def test_condition_bucket_and_default_bucket_dubbo(mesh: Mesh) -> None:
    """Aeraki's TestLocalRateLimit: ``sayHello`` has its own 2 tokens, the rest share 5."""
    limits = """\
  localRateLimit:
    tokenBucket: {fillInterval: 60s, maxTokens: 5, tokensPerFill: 5}
    conditions:
      - tokenBucket: {fillInterval: 60s, maxTokens: 2, tokensPerFill: 2}
        match: {attributes: {method: {exact: sayHello}}}
"""
    routes = route("all", (DUBBO, "v1", None))
    await mesh.apply("dubbo-route.yaml", metarouter("meta-dubbo", DUBBO, routes, limits))
    hello = [request_frame(i + 1, "sayHello", ["Aeraki"]) for i in range(10)]
    frames = await dubbo(mesh, hello)
    assert [f.status for f in frames] == [STATUS_OK] * 2 + [DUBBO_OVER_LIMIT] * 8
    assert string_value(frames[0]) == "Hello Aeraki, response from v1"
    frames = await dubbo(mesh, [request_frame(i, "whoami") for i in range(7)])
    assert [f.status for f in frames] == [STATUS_OK] * 5 + [DUBBO_OVER_LIMIT] * 2
    # A real Dubbo consumer sees the refusal as a failed call.
    (result,) = await asyncio.to_thread(
        dubbo_calls, "node", LOOPBACK, mesh.dubbo_port, [DubboCall("whoami")]
    )
    assert not result.ok
    assert "rate limited" in result.error, result


# -- global -------------------------------------------------------------------------------------
async def test_global_limit_over_limit_in_both_protocols(mesh: Mesh) -> None:
    """Aeraki's TestGlobalRateLimit (no routes, 5 allowed), plus the same for Thrift."""
    limits: dict[tuple[str, Descriptor], int] = {
        ("production", SAY_HELLO): 5,
        ("production", (("method", "whoami"),)): 3,
    }
    async with RateLimitServer(limits) as rls:
        await mesh.apply("rls.yaml", rls_service(rls.port))
        match = "{method: {exact: sayHello}}"
        await mesh.apply(
            "dubbo-route.yaml", metarouter("meta-dubbo", DUBBO, "", global_limit(match))
        )
        frames = await dubbo(mesh, [request_frame(i + 1, "sayHello", ["x"]) for i in range(10)])
        # Pipelined calls reach the service concurrently: which 5 pass is theirs to race.
        assert Counter(f.status for f in frames) == {STATUS_OK: 5, DUBBO_OVER_LIMIT: 5}
        # Not matched: no call to the service, never limited.
        frames = await dubbo(mesh, [request_frame(1, "whoami")] * 4)
        assert [f.status for f in frames] == [STATUS_OK] * 4
        assert rls.seen() == [("production", [SAY_HELLO])] * 10

        thrift = metarouter(
            "meta-thrift",
            THRIFT,
            route("all", (THRIFT, "v1", None)),
            global_limit("{method: {exact: whoami}}"),
        )
        await mesh.apply("thrift-route.yaml", thrift)
        outcomes = await asyncio.to_thread(thrift_outcomes, mesh.thrift_port, 5)
        assert outcomes[:3] == ["v1"] * 3
        assert all("has been rate limited" in o for o in outcomes[3:]), outcomes
        assert rls.seen()[10:] == [("production", [(("method", "whoami"),)])] * 5


def thrift_outcomes(port: int, calls: int, *, reconnect: bool = False) -> list[str]:
    """``whoami`` ``calls`` times: the label, or the text of the exception the client raised.

    ``reconnect``: a new connection per call (Envoy 1.40's thrift_proxy stops reading a
    connection after its rate limit filter refused a request on it: the next call hangs).
    """
    out: list[str] = []
    for _ in range(calls if reconnect else 1):
        with make_thrift_client("thriftpy2", "framed", "binary", LOOPBACK, port) as client:
            for _ in range(1 if reconnect else calls):
                try:
                    out.append(client.whoami())
                except TApplicationException as exc:
                    out.append(str(exc))
    return out


@pytest.mark.parametrize("deny", [True, False])
async def test_global_limit_unreachable_service(mesh: Mesh, deny: bool) -> None:
    await mesh.apply("rls.yaml", rls_service(free_port()))  # nothing listens there
    match = "{method: {exact: sayHello}}"
    await mesh.apply(
        "dubbo-route.yaml", metarouter("meta-dubbo", DUBBO, "", global_limit(match, deny=deny))
    )
    frames = await dubbo(mesh, [request_frame(i + 1, "sayHello", ["x"]) for i in range(3)])
    assert [f.status for f in frames] == [DUBBO_OVER_LIMIT if deny else STATUS_OK] * 3
    stats = mesh.proxy.stats()
    prefix = f"meta_protocol.dubbo.outbound|{mesh.dubbo_port}||{DUBBO}.ratelimit."
    assert stats[prefix + "error"] == 3
    assert stats[prefix + "failure_mode_allowed"] == (0 if deny else 3)


@pytest.mark.parametrize("deny", [True, False])
async def test_global_limit_service_slower_than_the_timeout(mesh: Mesh, deny: bool) -> None:
    """The service holds every answer: the request is decided at the deadline, without it."""
    async with RateLimitServer({("production", SAY_HELLO): 0}) as rls:
        rls.hold()
        await mesh.apply("rls.yaml", rls_service(rls.port))
        limit = global_limit("{method: {exact: sayHello}}", deny=deny, timeout="200ms")
        await mesh.apply("dubbo-route.yaml", metarouter("meta-dubbo", DUBBO, "", limit))
        (frame,) = await dubbo(mesh, [request_frame(1, "sayHello", ["x"])])
        assert len(rls.requests) == 1  # asked ...
        assert rls.answered == 0  # ... and still unanswered
        assert frame.status == (DUBBO_OVER_LIMIT if deny else STATUS_OK)
        rls.release()


# -- the same RLS limits a real Envoy -------------------------------------------------------------
THRIFT_FILTERS = "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy."
ENVOY_THRIFT_RATELIMIT = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {{admin_port}}}}}}
static_resources:
  listeners:
  - name: thrift
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{listener}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.thrift_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy
          stat_prefix: thrift
          transport: FRAMED
          protocol: BINARY
          route_config:
            name: local
            routes:
            - match: {{method_name: whoami}}
              route:
                cluster: backend
                rate_limits:
                - actions:
                  - generic_key: {{descriptor_value: whoami-calls}}
                  - destination_cluster: {{}}
            - match: {{method_name: ""}}
              route: {{cluster: backend}}
          thrift_filters:
          - name: envoy.filters.thrift.rate_limit
            typed_config:
              "@type": {rate_limit_type}
              domain: envoy-thrift
              timeout: 2s
              failure_mode_deny: true
              rate_limit_service:
                grpc_service: {{envoy_grpc: {{cluster_name: rls}}}}
                transport_api_version: V3
          - name: envoy.filters.thrift.router
            typed_config:
              "@type": {router_type}
  clusters:
  - name: backend
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}
  - name: rls
    connect_timeout: 2s
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: rls
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {rls}}}}}}}
"""


async def test_the_test_rls_limits_a_real_envoy(
    envoy_factory: EnvoyFactory, thrift_servers_v1: ThriftServer, tmp_path: Path
) -> None:
    """Envoy's thrift_proxy rate limit filter against our RLS: the server sees Envoy's
    descriptors (generic_key, destination_cluster) and Envoy refuses what it says is over."""
    whoami = (("generic_key", "whoami-calls"), ("destination_cluster", "backend"))
    async with RateLimitServer({("envoy-thrift", whoami): 3}) as rls:
        bootstrap = ENVOY_THRIFT_RATELIMIT.format(
            backend=thrift_servers_v1.port,
            rls=rls.port,
            rate_limit_type=THRIFT_FILTERS + "filters.ratelimit.v3.RateLimit",
            router_type=THRIFT_FILTERS + "router.v3.Router",
        )
        envoy = await asyncio.to_thread(envoy_factory, bootstrap, port_names=("listener",))
        outcomes = await asyncio.to_thread(
            thrift_outcomes, envoy.ports["listener"], 5, reconnect=True
        )
        assert outcomes[:3] == ["v1"] * 3
        assert all("over limit" in o for o in outcomes[3:]), outcomes  # Envoy's refusal
        assert rls.seen() == [("envoy-thrift", [whoami])] * 5
        stats = await asyncio.to_thread(envoy.stats, "ratelimit")
        assert stats.get("cluster.backend.ratelimit.over_limit") == 2, stats
        assert stats.get("cluster.backend.ratelimit.ok") == 3, stats


@pytest.fixture
def thrift_servers_v1(thrift_pair: tuple[ThriftServer, ThriftServer]) -> ThriftServer:
    return thrift_pair[0]
