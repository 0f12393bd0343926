"""Per-route traffic policy end to end over loopback TCP: retries, per-try and route
timeouts, fault injection, idempotency, and the outcomes reported to hosts."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pytest

from aeraki.codec.api import ResponseStatus
from aeraki.proxy.config import (
    CircuitBreakerConfig,
    FaultAbortConfig,
    FaultConfig,
    FaultDelayConfig,
    LbPolicy,
    RetryOn,
    RetryPolicyConfig,
)
from aeraki.proxy.request import ActiveRequest
from aeraki.proxy.server import ProxyServer
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.outcome import Outcome
from tests.proxy.harness import cluster, exact, is_error, listener, route
from tests.proxy.test_server import client_of, running, stat, upstreams

ALL = (
    RetryOn.CONNECT_FAILURE
    | RetryOn.RESET
    | RetryOn.TIMEOUT
    | RetryOn.RETRIABLE_ERROR
    | RetryOn.ERROR_RESPONSE
    | RetryOn.OVERFLOW
)


def retries(
    n: int = 2, *, on: RetryOn = ALL, per_try: float | None = None, non_idempotent: bool = False
) -> RetryPolicyConfig:
    return RetryPolicyConfig(
        num_retries=n,
        per_try_timeout=per_try,
        retry_on=on,
        base_interval=0.001,
        max_interval=0.005,
        retry_non_idempotent=non_idempotent,
    )


def cluster_stat(server: ProxyServer, name: str, cluster_name: str = "c1") -> int:
    return server.stats()[f"cluster.{cluster_name}.{name}"]


class Recorder:
    """An outcome monitor that records what the request path reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Outcome]] = []

    def report(self, host: Host, outcome: Outcome) -> None:
        self.seen.append((host.key, outcome))


def record_outcomes(server: ProxyServer, cluster_name: str = "c1") -> Recorder:
    recorder = Recorder()
    for host in server.clusters.clusters[cluster_name].hosts:
        host.monitor = recorder
    return recorder


# ------------------------------------------------------------------------------- retries
async def test_connect_failure_is_retried_on_the_live_host(free_port: int) -> None:
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", retry_policy=retries(2, on=RetryOn.CONNECT_FAILURE)),
            clusters=[cluster("c1", free_port, v1.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            replies = [await client.call(i) for i in range(10)]
            assert [r.get_string("server") for r in replies] == ["v1"] * 10
            # Round robin sent about half of the first attempts to the dead host.
            assert cluster_stat(server, "upstream_rq_retry") >= 1
            assert cluster_stat(server, "upstream_rq_retry_success") >= 1
            await client.close()


async def test_without_a_retry_policy_the_dead_host_costs_calls(free_port: int) -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1"), clusters=[cluster("c1", free_port, v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            replies = [await client.call(i) for i in range(10)]
            assert sum(is_error(r, "UNSPECIFIED") for r in replies) >= 1
            await client.close()


async def test_reset_is_retried_on_another_host_and_outcomes_are_reported() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route("c1", retry_policy=retries(1, on=RetryOn.RESET)),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(config) as server:
            recorder = record_outcomes(server)
            client = await client_of(server)
            for i in range(6):
                reply = await client.call(i, {"close-on": "v1"})
                assert reply.get_string("server") == "v2"
            outcomes = {outcome for _, outcome in recorder.seen}
            assert outcomes == {Outcome.RESET, Outcome.SUCCESS}
            v1_key = f"127.0.0.1:{v1.port}"
            assert all(o is Outcome.RESET for key, o in recorder.seen if key == v1_key)
            await client.close()


async def test_retries_are_bounded_and_the_last_failure_is_answered() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route("c1", retry_policy=retries(2, on=RetryOn.RESET)),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"close-on": "v1,v2"})
            assert is_error(reply, "UNSPECIFIED")
            assert len(v1.received) + len(v2.received) == 3  # the first try + 2 retries
            assert cluster_stat(server, "upstream_rq_retry") == 2
            await client.close()


async def test_non_idempotent_requests_are_not_retried_once_sent() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        by_route = listener(
            route("c1", retry_policy=retries(1, on=RetryOn.RESET), idempotent=False),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(by_route) as server:
            client = await client_of(server)
            replies = [await client.call(i, {"close-on": "v1"}) for i in range(4)]
            assert sum(is_error(r, "UNSPECIFIED") for r in replies) == 2  # v1's share
            assert cluster_stat(server, "upstream_rq_retry") == 0
            await client.close()
        by_codec = listener(
            route("c1", retry_policy=retries(1, on=RetryOn.RESET)),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(by_codec) as server:
            client = await client_of(server)
            headers = {"close-on": "v1", "idempotent": "false"}
            replies = [await client.call(i, headers) for i in range(4)]
            assert sum(is_error(r, "UNSPECIFIED") for r in replies) == 2
            await client.close()


async def test_retry_non_idempotent_overrides_the_codec() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        policy = retries(1, on=RetryOn.RESET, non_idempotent=True)
        config = listener(
            route("c1", retry_policy=policy), clusters=[cluster("c1", v1.port, v2.port)]
        )
        async with running(config) as server:
            client = await client_of(server)
            headers = {"close-on": "v1", "idempotent": "false"}
            replies = [await client.call(i, headers) for i in range(4)]
            assert [r.get_string("server") for r in replies] == ["v2"] * 4
            await client.close()


async def test_non_idempotent_requests_are_still_retried_on_connect_failure(
    free_port: int,
) -> None:
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", retry_policy=retries(2), idempotent=False),
            clusters=[cluster("c1", free_port, v1.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            replies = [await client.call(i) for i in range(6)]
            assert [r.get_string("server") for r in replies] == ["v1"] * 6
            await client.close()


@pytest.mark.parametrize(
    ("retry_on", "status", "retried"),
    [
        (RetryOn.ERROR_RESPONSE, ResponseStatus.ERROR, True),
        (RetryOn.ERROR_RESPONSE, ResponseStatus.RETRIABLE_ERROR, True),
        (RetryOn.RETRIABLE_ERROR, ResponseStatus.RETRIABLE_ERROR, True),
        (RetryOn.RETRIABLE_ERROR, ResponseStatus.ERROR, False),
        (RetryOn.RESET, ResponseStatus.ERROR, False),
    ],
)
async def test_error_responses_are_retried_per_retry_on(
    retry_on: RetryOn, status: ResponseStatus, retried: bool
) -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route("c1", retry_policy=retries(1, on=retry_on)),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(config) as server:
            recorder = record_outcomes(server)
            client = await client_of(server)
            headers = {"fail-on": "v1", "fail-status": str(int(status))}
            replies = [await client.call(i, headers) for i in range(4)]
            servers = [r.get_string("server") for r in replies]
            if retried:
                assert servers == ["v2"] * 4
            else:
                # v1's error reply is forwarded as the upstream wrote it.
                assert servers.count("v1") == 2
                errors = [r for r in replies if r.get_string("server") == "v1"]
                assert all(r.response_status is status for r in errors)
            assert Outcome.ERROR_RESPONSE in {o for _, o in recorder.seen}
            await client.close()


async def test_per_try_timeout_moves_the_request_to_another_host() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        policy = retries(1, on=RetryOn.TIMEOUT, per_try=0.1)
        config = listener(
            route("c1", retry_policy=policy), clusters=[cluster("c1", v1.port, v2.port)]
        )
        async with running(config) as server:
            recorder = record_outcomes(server)
            client = await client_of(server)
            replies = [await client.call(i, {"hang-on": "v1"}) for i in range(4)]
            assert [r.get_string("server") for r in replies] == ["v2"] * 4
            # Round robin advances on retries too, so every first attempt lands on v1.
            assert cluster_stat(server, "upstream_rq_per_try_timeout") == len(v1.received)
            assert (f"127.0.0.1:{v1.port}", Outcome.TIMEOUT) in recorder.seen
            await client.close()


async def test_per_try_timeout_without_retries_left_answers_timeout() -> None:
    async with upstreams("v1") as (v1,):
        policy = retries(1, on=RetryOn.TIMEOUT, per_try=0.05)
        config = listener(route("c1", retry_policy=policy), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"action": "hang"})
            assert is_error(reply, "TIMEOUT")
            assert "attempt 2" in reply.get_string("error-message")
            assert len(v1.received) == 2
            await client.close()


async def test_route_timeout_bounds_the_whole_request_including_retries() -> None:
    async with upstreams("v1") as (v1,):
        policy = retries(50, on=RetryOn.TIMEOUT, per_try=0.05)
        config = listener(
            route("c1", retry_policy=policy, timeout=0.3), clusters=[cluster("c1", v1.port)]
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"action": "hang"})
            assert is_error(reply, "TIMEOUT")
            assert "request timed out after 0.3s" in reply.get_string("error-message")
            assert 2 <= len(v1.received) < 51
            assert stat(server, "request_timeout") == 1
            await client.close()


# ------------------------------------------------------------------------- fault injection
def abort(error_type: str, numerator: int = 100, denominator: int = 100) -> FaultConfig:
    return FaultConfig(
        abort=FaultAbortConfig(
            error_type=error_type,
            message="injected by test",
            numerator=numerator,
            denominator=denominator,
        )
    )


async def test_fault_abort_answers_without_reaching_the_upstream() -> None:
    async with upstreams("v1") as (v1,):
        config = listener(route("c1", fault=abort("OVER_LIMIT")), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1)
            assert is_error(reply, "OVER_LIMIT")
            assert reply.get_string("error-message") == "injected by test"
            assert v1.received == []
            assert stat(server, "aborts_injected") == 1
            await client.close()


async def test_fault_abort_percentage_holds_statistically() -> None:
    calls, percent = 1000, 30
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", fault=abort("UNSPECIFIED", percent)), clusters=[cluster("c1", v1.port)]
        )
        async with running(config) as server:
            client = await client_of(server)
            for i in range(calls):
                client.send(i)
            replies = [await client.receive() for _ in range(calls)]
            aborted = sum(is_error(r, "UNSPECIFIED") for r in replies)
            # Binomial(1000, 0.3): sigma ~ 14.5; 5 sigma bounds fail by chance < 1e-6.
            sigma = math.sqrt(calls * percent / 100 * (1 - percent / 100))
            assert abs(aborted - calls * percent / 100) < 5 * sigma
            assert aborted == stat(server, "aborts_injected")
            assert len(v1.received) == calls - aborted
            await client.close()


async def test_fault_delay_holds_matching_requests_back() -> None:
    """A delayed request is overtaken by an undelayed one sent after it (ordering, not time)."""
    delay = FaultConfig(delay=FaultDelayConfig(fixed_delay=0.3))
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", match=[exact("method", "slow")], fault=delay, timeout=0.1),
            route("c1"),
            clusters=[cluster("c1", v1.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            client.send(1, {"method": "slow"})
            client.send(2, {"method": "fast"})
            first, second = await client.receive(), await client.receive()
            assert [first.request_id, second.request_id] == [2, 1]
            # The route timeout (0.1 s) starts after the delay, as in Envoy: no timeout.
            assert second.get_string("server") == "v1"
            assert stat(server, "delays_injected") == 1
            await client.close()


async def test_zero_percent_faults_never_fire() -> None:
    fault = FaultConfig(
        delay=FaultDelayConfig(fixed_delay=30.0, numerator=0),
        abort=FaultAbortConfig(numerator=0),
    )
    async with upstreams("v1") as (v1,):
        config = listener(route("c1", fault=fault), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            replies = [await client.call(i) for i in range(20)]
            assert all(r.get_string("server") == "v1" for r in replies)
            assert stat(server, "delays_injected") == stat(server, "aborts_injected") == 0
            await client.close()


async def test_unknown_abort_error_type_is_a_config_error() -> None:
    from aeraki.errors import ConfigError
    from aeraki.proxy.routing import Route

    with pytest.raises(ConfigError, match=r"fault\.abort\.error_type"):
        Route(route("c1", fault=abort("TEAPOT")), "routes[0]")


async def test_held_connection_keeps_working_after_retries() -> None:
    """Retries leave no stale state behind: a follow-up request on the same client works."""
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route("c1", retry_policy=retries(1, on=RetryOn.RESET)),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(config) as server:
            client = await client_of(server)
            await client.call(1, {"close-on": "v1"})
            await client.call(2, {"close-on": "v1"})
            follow = await asyncio.wait_for(client.call(3), 5)
            assert follow.get_string("server") in {"v1", "v2"}
            assert stat(server, "request_active") == 0
            await client.close()


async def test_fault_delay_percentage_holds_statistically() -> None:
    calls, percent = 1000, 40
    delay = FaultConfig(delay=FaultDelayConfig(fixed_delay=0.001, numerator=percent))
    async with upstreams("v1") as (v1,):
        config = listener(route("c1", fault=delay), clusters=[cluster("c1", v1.port)])
        async with running(config) as server:
            client = await client_of(server)
            for i in range(calls):
                client.send(i)
            replies = [await client.receive() for _ in range(calls)]
            assert all(r.get_string("server") == "v1" for r in replies)
            delayed = stat(server, "delays_injected")
            # Binomial(1000, 0.4): sigma ~ 15.5; 5-sigma bounds fail by chance < 1e-6.
            sigma = math.sqrt(calls * percent / 100 * (1 - percent / 100))
            assert abs(delayed - calls * percent / 100) < 5 * sigma
            await client.close()


async def test_the_retry_breaker_stops_retries_and_counts_the_overflow() -> None:
    """``max_retries: 0``: a failing attempt is answered at once instead of retried."""
    async with upstreams("v1", "v2") as (v1, v2):
        breaker = CircuitBreakerConfig(max_retries=0)
        config = listener(
            route("c1", retry_policy=retries(2, on=RetryOn.RESET)),
            clusters=[replace(cluster("c1", v1.port, v2.port), circuit_breakers=breaker)],
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"close-on": "v1,v2"})
            assert is_error(reply, "UNSPECIFIED")
            assert len(v1.received) + len(v2.received) == 1
            assert cluster_stat(server, "upstream_rq_retry_overflow") == 1
            await client.close()


async def test_a_retrying_request_holds_one_retry_slot_until_it_ends() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        breaker = CircuitBreakerConfig(max_retries=1)
        config = listener(
            route("c1", retry_policy=retries(3, on=RetryOn.RESET)),
            clusters=[replace(cluster("c1", v1.port, v2.port), circuit_breakers=breaker)],
        )
        async with running(config) as server:
            client = await client_of(server)
            reply = await client.call(1, {"close-on": "v1,v2"})
            assert is_error(reply, "UNSPECIFIED")
            assert len(v1.received) + len(v2.received) == 4  # one slot, three retries
            assert server.clusters.clusters["c1"].limits.retries == 0  # given back
            assert cluster_stat(server, "upstream_rq_retry_overflow") == 0
            await client.close()


@pytest.mark.parametrize("lb", [LbPolicy.LEAST_REQUEST, LbPolicy.RANDOM])
async def test_a_retry_never_returns_to_the_failed_host_when_another_is_healthy(
    free_port: int, lb: LbPolicy
) -> None:
    """Random pickers may draw the dead host again; one retry must still always succeed."""
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", retry_policy=retries(1, on=RetryOn.CONNECT_FAILURE)),
            clusters=[cluster("c1", free_port, v1.port, lb=lb)],
        )
        async with running(config) as server:
            client = await client_of(server)
            replies = [await client.call(i) for i in range(60)]
            assert [r.get_string("server") for r in replies] == ["v1"] * 60
            await client.close()


class Ended:
    """A request observer recording how each request ended."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str, int, bool]] = []

    def on_request_done(self, request: ActiveRequest) -> None:
        response = request.response
        error = request.local_error
        kind = "response" if response is not None else "local" if error is not None else "none"
        detail = error.type.name if error is not None else ""
        ordered = request.ended >= request.started > 0
        self.seen.append((request.metadata.request_id, kind, detail, request.attempts, ordered))


async def test_observers_see_every_ending_once() -> None:
    async with upstreams("v1", "v2") as (v1, v2):
        config = listener(
            route("c1", match=[exact("method", "retry")], retry_policy=retries(1)),
            route("c1", match=[exact("method", "drop")], fault=abort("OVER_LIMIT")),
            route("c1"),
            clusters=[cluster("c1", v1.port, v2.port)],
        )
        async with running(config) as server:
            ended = Ended()
            server.listeners[0].runtime.observers = (ended,)
            client = await client_of(server)
            await client.call(1)
            await client.call(2, {"method": "drop"})
            await client.call(3, {"method": "retry", "close-on": "v1"})
            await client.call(4, {"method": "retry", "close-on": "v1"})
            assert ended.seen[:2] == [
                (1, "response", "", 1, True),
                (2, "local", "OVER_LIMIT", 0, True),
            ]
            # Round robin: one of the two retried calls went to v1 first and needed 2 attempts.
            assert sorted(s[3] for s in ended.seen[2:]) == [1, 2]
            assert len(ended.seen) == 4
            await client.close()


async def test_observers_see_which_requests_a_fault_delay_held_back() -> None:
    held: list[tuple[int, bool]] = []

    class Delays:
        def on_request_done(self, request: ActiveRequest) -> None:
            held.append((request.metadata.request_id, request.delayed))

    delay = FaultConfig(delay=FaultDelayConfig(fixed_delay=0.001))
    async with upstreams("v1") as (v1,):
        config = listener(
            route("c1", match=[exact("method", "slow")], fault=delay),
            route("c1"),
            clusters=[cluster("c1", v1.port)],
        )
        async with running(config) as server:
            server.listeners[0].runtime.observers = (Delays(),)
            client = await client_of(server)
            await client.call(1, {"method": "slow"})
            await client.call(2)
            assert held == [(1, True), (2, False)]
            await client.close()
