"""Listener stats: filters' counters under the listener's prefix, or named in full."""

from __future__ import annotations

from aeraki.proxy.stats import ListenerStats, LocalRateLimitStats, RateLimitStats


def test_filter_stats_named_in_full_leave_the_listener_scope() -> None:
    stats = ListenerStats()
    local, rls = LocalRateLimitStats(), RateLimitStats()
    stats.add_filter_stats("local_rate_limit", local, "meta_protocol.svc.local_rate_limit")
    stats.add_filter_stats("ratelimit", rls)
    local.ok, local.rate_limited, rls.over_limit = 5, 2, 1
    scoped = stats.snapshot()
    assert scoped["ratelimit.over_limit"] == 1
    assert not [name for name in scoped if name.startswith("local_rate_limit")]
    assert stats.full_snapshot() == {
        "meta_protocol.svc.local_rate_limit.ok": 5,
        "meta_protocol.svc.local_rate_limit.rate_limited": 2,
    }
