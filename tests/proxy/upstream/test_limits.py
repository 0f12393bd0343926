"""Circuit-breaker bookkeeping: requests, pending requests, connections and retries."""

from __future__ import annotations

import pytest

from aeraki.errors import UpstreamError
from aeraki.proxy.config import CircuitBreakerConfig, RetryBudgetConfig
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.limits import ClusterLimits, PoolOverflow


def _limits(**values: object) -> ClusterLimits:
    return ClusterLimits(CircuitBreakerConfig(**values), ClusterStats())  # type: ignore[arg-type]


def test_defaults_are_envoys() -> None:
    limits = _limits()
    assert (limits.max_connections, limits.max_pending_requests, limits.max_requests) == (
        1024,
        1024,
        1024,
    )
    assert limits.retry_limit == 3
    assert limits.max_requests_per_connection == 0


def test_overflow_is_an_upstream_error_naming_the_limit() -> None:
    limits = _limits(max_requests=0, max_pending_requests=0)
    with pytest.raises(UpstreamError, match="too many requests"):
        limits.admit_request()
    with pytest.raises(PoolOverflow, match="too many pending requests"):
        limits.admit_pending()
    assert limits.stats.upstream_rq_pending_overflow == 2


def test_requests_and_pending_read_the_cluster_gauges() -> None:
    limits = _limits(max_requests=2, max_pending_requests=1)
    limits.stats.upstream_rq_active = 1
    limits.admit_request()
    limits.stats.upstream_rq_active = 2
    with pytest.raises(PoolOverflow):
        limits.admit_request()
    limits.admit_pending()
    limits.stats.upstream_rq_pending_active = 1
    with pytest.raises(PoolOverflow):
        limits.admit_pending()


def test_connections_count_refusals() -> None:
    limits = _limits(max_connections=1)
    assert limits.can_connect()
    limits.connections = 1
    assert not limits.can_connect()
    assert not limits.can_connect()
    assert limits.stats.upstream_cx_overflow == 2


def test_max_retries_bounds_concurrent_retries() -> None:
    limits = _limits(max_retries=2)
    assert limits.try_start_retry()
    assert limits.try_start_retry()
    assert not limits.try_start_retry()
    assert limits.stats.upstream_rq_retry_overflow == 1
    limits.end_retry()
    assert limits.try_start_retry()
    for _ in range(5):
        limits.end_retry()
    assert limits.retries == 0  # never negative


def test_retry_budget_follows_the_load_with_a_floor() -> None:
    budget = RetryBudgetConfig(budget_percent=25.0, min_retry_concurrency=2)
    limits = _limits(max_retries=100, retry_budget=budget)
    assert limits.retry_limit == 2  # no load: the floor
    limits.stats.upstream_rq_active = 30
    limits.stats.upstream_rq_pending_active = 10
    assert limits.retry_limit == 10  # 25 % of 40
    for _ in range(10):
        assert limits.try_start_retry()
    assert not limits.try_start_retry()
    assert limits.stats.upstream_rq_retry_overflow == 1
