# ruff: noqa: F811  (store_path: a pytest fixture imported from test_shared_buckets)
"""Local rate limit: bucket arithmetic on an injected clock, condition matching, config
errors, and the filter in a running proxy (shared by connections, kept across updates)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

import aeraki.xds
from aeraki.codec.api import ErrorType, Metadata
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap import ConfigErrors, bootstrap_from_dict
from aeraki.proxy.config import SocketAddress
from aeraki.proxy.filters.api import FilterStatus
from aeraki.proxy.filters.local_ratelimit import (
    BucketSpec,
    LocalRateLimitFilter,
    TokenBucket,
    check_config,
    compile_limiter,
)
from aeraki.proxy.filters.shared_buckets import (
    SharedBucket,
    attach_store,
)
from aeraki.proxy.xds_apply import listeners_from_resources
from aeraki.xds import pack
from aeraki.xds.gen.meta_protocol_proxy.v1alpha.meta_protocol_proxy_pb2 import MetaProtocolFilter
from tests.proxy.filters.helpers import (
    LOCAL,
    local_config,
    local_limit_stats,
    running,
    with_filters,
)
from tests.proxy.filters.test_shared_buckets import (
    run_in_processes,
    store_path,  # noqa: F401
)
from tests.proxy.harness import FakeClient, FakeUpstream, cluster, is_error, listener, route
from tests.proxy.test_bootstrap import TC, base, tc


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def takes(bucket: TokenBucket, now: float, n: int) -> int:
    """How many of ``n`` takes at ``now`` succeed."""
    return sum(bucket.take(now) for _ in range(n))


# -- buckets ----------------------------------------------------------------------------------
def test_bucket_starts_full_and_empties() -> None:
    bucket = TokenBucket(BucketSpec(max_tokens=3, tokens_per_fill=1, fill_interval=1.0), 0.0)
    assert takes(bucket, 0.0, 5) == 3
    assert takes(bucket, 0.999, 1) == 0


def test_bucket_refills_per_interval_up_to_max() -> None:
    bucket = TokenBucket(BucketSpec(max_tokens=5, tokens_per_fill=2, fill_interval=1.0), 0.0)
    assert takes(bucket, 0.0, 5) == 5
    assert takes(bucket, 1.0, 5) == 2  # one fill at t=1
    assert takes(bucket, 3.5, 5) == 4  # fills at t=2 and t=3
    assert takes(bucket, 100.0, 10) == 5  # 96 fills, capped at max_tokens


def test_bucket_fills_keep_their_phase() -> None:
    """Fills are due at start + k * interval, whatever the times of the takes."""
    bucket = TokenBucket(BucketSpec(max_tokens=1, tokens_per_fill=1, fill_interval=10.0), 0.0)
    assert takes(bucket, 0.0, 1) == 1
    assert takes(bucket, 19.0, 1) == 1  # the fill of t=10
    assert takes(bucket, 20.0, 1) == 1  # the fill of t=20, not t=29
    assert takes(bucket, 29.9, 1) == 0


def test_bucket_intervals_below_the_reference_50ms_floor_work() -> None:
    """No timer, so no 50 ms minimum: ~1 ms fills are exact (binary fractions: exact floats)."""
    interval = 2.0**-10
    bucket = TokenBucket(BucketSpec(max_tokens=1, tokens_per_fill=1, fill_interval=interval), 0.0)
    allowed = sum(bucket.take(i * interval / 2) for i in range(2049))  # takes over 1 s
    assert allowed == 1 + 1024  # the initial token plus one per fill


# -- conditions -------------------------------------------------------------------------------
CONFIG: dict[str, Any] = {
    "stat_prefix": "svc",
    "token_bucket": {"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "60s"},
    "conditions": [
        {
            "match": {"metadata": [{"name": "method", "exact_match": "sayHello"}]},
            "token_bucket": {"max_tokens": 1, "fill_interval": "60s"},
        },
        {
            "match": {"metadata": [{"name": "method", "prefix_match": "say"}]},
            "token_bucket": {"max_tokens": 2, "fill_interval": "60s"},
        },
    ],
}


def test_first_matching_condition_decides_and_the_default_is_not_consulted() -> None:
    clock = Clock()
    limiter = compile_limiter(local_config(CONFIG), clock)
    hello = {"method": "sayHello"}
    assert [limiter.allow(hello) for _ in range(2)] == [True, False]
    # "sayBye" skips the first condition, matches the second: its own two tokens.
    assert [limiter.allow({"method": "sayBye"}) for _ in range(3)] == [True, True, False]
    # Neither condition: the default bucket, untouched so far.
    assert [limiter.allow({"method": "other"}) for _ in range(4)] == [True] * 3 + [False]
    assert limiter.stats.snapshot() == {"ok": 6, "rate_limited": 3}
    clock.now += 60.0
    assert limiter.allow(hello)


def test_no_default_bucket_lets_unmatched_requests_through() -> None:
    limiter = compile_limiter(
        local_config({"stat_prefix": "svc", "conditions": CONFIG["conditions"][:1]}), Clock()
    )
    assert all(limiter.allow({"method": "other"}) for _ in range(100))
    assert all(limiter.allow({}) for _ in range(100))
    assert [limiter.allow({"method": "sayHello"}) for _ in range(2)] == [True, False]


def test_condition_without_match_matches_every_request() -> None:
    config = {
        "stat_prefix": "svc",
        "conditions": [{"token_bucket": {"max_tokens": 2, "fill_interval": "1s"}}],
    }
    limiter = compile_limiter(local_config(config), Clock())
    assert [limiter.allow({"k": str(i)}) for i in range(3)] == [True, True, False]


class Deferred:
    """A codec's deferred properties (``Metadata.deferred``), counting its loads."""

    def __init__(self, extra: dict[str, str]) -> None:
        self.extra = extra
        self.loads = 0

    def load_strings(self, metadata: Metadata) -> None:
        self.loads += 1
        for key, value in self.extra.items():
            metadata.strings.setdefault(key, value)


class Request:
    """What the filter uses of an ``ActiveRequest``."""

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self.replies: list[tuple[ErrorType, str]] = []

    def local_reply(self, error_type: ErrorType, message: str) -> None:
        self.replies.append((error_type, message))


def deferred_request(deferred: Deferred, **strings: str) -> Request:
    md = Metadata(request_id=7)
    md.strings.update(strings)
    md.deferred = deferred
    return Request(md)


def test_conditions_load_deferred_properties_only_when_they_read_an_absent_one() -> None:
    """A condition on a deferred property (e.g. a Dubbo attachment) sees it; conditions on
    properties decode found eagerly cost no load."""
    by_user = {
        "stat_prefix": "svc",
        "conditions": [
            {
                "match": {"metadata": [{"name": "User", "exact_match": "alice"}]},
                "token_bucket": {"max_tokens": 1, "fill_interval": "60s"},
            }
        ],
    }
    limiter = compile_limiter(local_config(by_user), Clock())
    limit = LocalRateLimitFilter(limiter)
    outcomes = []
    for _ in range(2):
        deferred = Deferred({"user": "alice"})
        request = deferred_request(deferred, method="m")
        outcomes.append(limit.on_request(cast(Any, request)))
        assert deferred.loads == 1
    assert outcomes == [FilterStatus.CONTINUE, FilterStatus.STOP]
    assert request.replies == [
        (ErrorType.OVER_LIMIT, "meta protocol local rate limit: request '7' has been rate limited")
    ]

    by_method = compile_limiter(local_config(CONFIG), Clock())
    deferred = Deferred({"method": "ignored"})
    request = deferred_request(deferred, method="sayHello")
    assert LocalRateLimitFilter(by_method).on_request(cast(Any, request)) is FilterStatus.CONTINUE
    assert deferred.loads == 0


# -- config errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "path", "text"),
    [
        ({"token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}, "c.stat_prefix", "required"),
        (
            {"stat_prefix": "s", "token_bucket": {"fill_interval": "1s"}},
            "c.token_bucket.max_tokens",
            "at least 1",
        ),
        (
            {"stat_prefix": "s", "token_bucket": {"max_tokens": 1}},
            "c.token_bucket.fill_interval",
            "required",
        ),
        (
            {"stat_prefix": "s", "token_bucket": {"max_tokens": 1, "fill_interval": "-1s"}},
            "c.token_bucket.fill_interval",
            "positive",
        ),
        (
            {
                "stat_prefix": "s",
                "token_bucket": {"max_tokens": 1, "fill_interval": "1s", "tokens_per_fill": 0},
            },
            "c.token_bucket.tokens_per_fill",
            "at least 1",
        ),
        ({"stat_prefix": "s"}, "c", "token_bucket or conditions required"),
        (
            {"stat_prefix": "s", "conditions": [{"match": {}}]},
            "c.conditions[0].token_bucket",
            "required",
        ),
        (
            {
                "stat_prefix": "s",
                "conditions": [
                    {
                        "match": {"metadata": [{"name": "m", "safe_regex_match": {"regex": "("}}]},
                        "token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
                    }
                ],
            },
            "c.conditions[0].match.metadata[0].safe_regex_match.regex",
            "invalid regex",
        ),
    ],
)
def test_config_errors_name_their_path(config: dict[str, Any], path: str, text: str) -> None:
    errors = {e.path: e.message for e in check_config(local_config(config), "c", [])}
    assert path in errors, errors
    assert text in errors[path]
    with pytest.raises(ConfigError):
        compile_limiter(local_config(config))


def test_bootstrap_accepts_the_filter_and_reports_its_errors() -> None:
    url = "type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha."
    good = base()
    tc(good)["meta_protocol_filters"] = [
        {"name": LOCAL, "config": {"@type": url + "LocalRateLimit", **CONFIG}},
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    proxy = bootstrap_from_dict(good, "test.yaml").listeners[0].proxy
    assert [f.name for f in proxy.filters] == [LOCAL, "aeraki.meta_protocol.filters.router"]
    assert proxy.filters[0].config == local_config(CONFIG)

    bad = base()
    tc(bad)["meta_protocol_filters"] = [
        {
            "name": LOCAL,
            "config": {
                "@type": url + "LocalRateLimit",
                "token_bucket": {"max_tokens": 0, "fill_interval": "1s"},
            },
        },
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(bad, "test.yaml")
    where = TC + ".meta_protocol_filters[0].config"
    assert set(info.value.paths) == {where + ".stat_prefix", where + ".token_bucket.max_tokens"}


# -- in a running proxy -----------------------------------------------------------------------
async def test_limit_is_shared_by_every_connection_and_counted() -> None:
    up = await FakeUpstream("v1").start()
    try:
        config = {
            "stat_prefix": "svc",
            "token_bucket": {"max_tokens": 3, "fill_interval": "3600s"},
        }
        proxy_config = with_filters(
            listener(route("c1"), clusters=[cluster("c1", up.port)]), (LOCAL, local_config(config))
        )
        async with running(proxy_config) as server:
            port = server.listeners[0].port
            clients = [await FakeClient().connect(port) for _ in range(3)]
            replies = [
                await c.call(i * 10 + j, {"method": "m"})
                for j in range(2)
                for i, c in enumerate(clients)
            ]
            for c in clients:
                await c.close()
        limited = [r for r in replies if is_error(r, ErrorType.OVER_LIMIT.name)]
        assert len(limited) == 3
        assert all(r.get_string("server") == "v1" for r in replies if r not in limited)
        assert len(up.received) == 3
        assert local_limit_stats(server, "svc") == {
            "ok": 3,
            "rate_limited": 3,
        }
    finally:
        up.close()


async def test_buckets_survive_a_listener_update_that_keeps_the_filter_config() -> None:
    up = await FakeUpstream("v1").start()
    try:
        one = local_config(
            {"stat_prefix": "svc", "token_bucket": {"max_tokens": 2, "fill_interval": "3600s"}}
        )
        base_config = with_filters(
            listener(route("c1"), clusters=[cluster("c1", up.port)]), (LOCAL, one)
        )
        async with running(dataclasses.replace(base_config, listeners=())) as server:
            first = base_config.listeners[0]
            assert await server.apply_listeners([first]) == []
            port = server.listeners[0].port

            async def call() -> bool:
                client = await FakeClient().connect(port)
                reply = await client.call(1, {"method": "m"})
                await client.close()
                return not is_error(reply, ErrorType.OVER_LIMIT.name)

            assert await call()
            # Another idle timeout: a new listener runtime, the same filter config.
            changed = dataclasses.replace(
                first, proxy=dataclasses.replace(first.proxy, idle_timeout=30.0)
            )
            assert await server.apply_listeners([changed]) == []
            port = server.listeners[0].port
            assert server.listeners[0].runtime.config == changed
            assert [await call(), await call()] == [True, False]  # one token was left
            # A changed limit starts with full buckets.
            two = local_config(
                {"stat_prefix": "svc", "token_bucket": {"max_tokens": 3, "fill_interval": "3600s"}}
            )
            fresh = with_filters(
                dataclasses.replace(base_config, listeners=(changed,)), (LOCAL, two)
            )
            assert await server.apply_listeners(list(fresh.listeners)) == []
            port = server.listeners[0].port
            assert [await call() for _ in range(4)] == [True, True, True, False]
    finally:
        up.close()


def test_aeraki_typed_struct_form_and_lds_rejection_name_the_filter_config() -> None:
    """Aeraki's EnvoyFilters carry the proxy config as a TypedStruct (JSON value): the rate
    limit config inside loads the same; over LDS a bad one is rejected (a NACK) with its path."""
    url = "type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha."
    value = {k: v for k, v in tc(base()).items() if k != "@type"}
    value["meta_protocol_filters"] = [
        {"name": LOCAL, "config": {"@type": url + "LocalRateLimit", **CONFIG}},
        {"name": "aeraki.meta_protocol.filters.router"},
    ]
    d = base()
    d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0] = {
        "name": "envoy.filters.network.meta_protocol_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy",
            "value": value,
        },
    }
    proxy = bootstrap_from_dict(d, "ts").listeners[0].proxy
    assert proxy.filters[0].config == local_config(CONFIG)

    listener = bootstrap_listener_proto(base())
    mpp = listener.filter_chains[0].filters[0]
    config: Any = aeraki.xds.unpack(mpp.typed_config)
    bad = local_config({"stat_prefix": "svc", "conditions": [{"match": {}}]})
    config.meta_protocol_filters.extend(
        [
            MetaProtocolFilter(name=LOCAL, config=pack(bad)),
            MetaProtocolFilter(name="aeraki.meta_protocol.filters.router"),
        ]
    )
    mpp.typed_config.Pack(config)
    with pytest.raises(ConfigErrors) as info:
        listeners_from_resources([pack(listener)])
    assert info.value.paths == (
        f"listener {listener.name}.filter_chains[0].filters[0].typed_config"
        ".meta_protocol_filters[0].config.conditions[0].token_bucket",
    )


def bootstrap_listener_proto(data: dict[str, Any]) -> Any:
    """The first listener of a bootstrap dict as an Envoy ``Listener`` proto."""
    listener = data["static_resources"]["listeners"][0]
    return json_format.ParseDict(listener, listener_pb2.Listener())


# -- buckets shared by worker processes (a bucket store attached) ------------------------------
def test_without_a_store_buckets_are_the_in_process_ones() -> None:
    """One process (the default, benchmarked path): the same objects as ever."""
    limiter = compile_limiter(local_config(CONFIG), listener_name="l")
    assert type(limiter.default) is TokenBucket
    assert all(type(bucket) is TokenBucket for _, bucket in limiter.conditions)


def test_with_a_store_a_listener_limiter_keeps_its_buckets_there(store_path: Path) -> None:
    limiter = compile_limiter(local_config(CONFIG), listener_name="l")
    assert type(limiter.default) is SharedBucket
    assert all(type(bucket) is SharedBucket for _, bucket in limiter.conditions)
    # No listener name, no identity to share under: in-process buckets.
    alone = compile_limiter(local_config(CONFIG))
    assert type(alone.default) is TokenBucket


def test_limiters_of_one_listener_and_config_share_buckets_another_does_not(
    store_path: Path,
) -> None:
    one, two = (compile_limiter(local_config(CONFIG), listener_name="l") for _ in range(2))
    hello = {"method": "sayHello"}
    assert [one.allow(hello), two.allow(hello)] == [True, False]  # max_tokens 1
    other_listener = compile_limiter(local_config(CONFIG), listener_name="m")
    assert other_listener.allow(hello)
    # Other limits on the same listener: other buckets (a changed config starts full).
    changed = dict(CONFIG, stat_prefix="other")
    assert compile_limiter(local_config(changed), listener_name="l").allow(hello)
    # Each bucket of the config is its own: the default one still has its 3 tokens.
    assert [two.allow({"method": "other"}) for _ in range(4)] == [True] * 3 + [False]


def _limiter_allows(path: str, listener_name: str, methods: list[str]) -> list[bool]:
    """A worker: attach the store, build the limiter of CONFIG, let ``methods`` through."""
    attach_store(path)
    limiter = compile_limiter(local_config(CONFIG), listener_name=listener_name)
    return [limiter.allow({"method": m}) for m in methods]


def test_limiters_built_in_two_processes_share_tokens(store_path: Path) -> None:
    """Two worker processes build the limiter of one config: one set of buckets. Then a
    third (a restarted worker) finds them as the first two left them."""
    methods = ["sayHello", "other", "other"]
    outcomes = run_in_processes(_limiter_allows, *[(str(store_path), "l", methods)] * 2)
    # sayHello's bucket has 1 token, the default 3: between them, the two got that many.
    assert sorted(o[0] for o in outcomes) == [False, True]
    assert sum(o[1] + o[2] for o in outcomes) == 3
    assert run_in_processes(_limiter_allows, (str(store_path), "l", ["sayHello", "other"])) == [
        [False, False]
    ]
    assert run_in_processes(_limiter_allows, (str(store_path), "m", ["sayHello", "other"])) == [
        [True, True]
    ]


async def test_two_proxies_with_a_store_share_the_limit_of_their_listener(store_path: Path) -> None:
    """Two proxies in this process stand in for two workers: the listener's limit is the
    host's, not each proxy's (without the store, each would allow 3)."""
    up = await FakeUpstream("v1").start()
    try:
        config = {"stat_prefix": "svc", "token_bucket": {"max_tokens": 3, "fill_interval": "3600s"}}
        proxy_config = with_filters(
            listener(route("c1"), clusters=[cluster("c1", up.port)]), (LOCAL, local_config(config))
        )
        async with running(proxy_config) as first, running(proxy_config) as second:
            ports = [first.listeners[0].port, second.listeners[0].port]
            clients = [await FakeClient().connect(port) for port in ports]
            replies = [await c.call(i, {"method": "m"}) for i in range(3) for c in clients]
            for c in clients:
                await c.close()
        limited = [r for r in replies if is_error(r, ErrorType.OVER_LIMIT.name)]
        assert len(limited) == 3
        assert len(up.received) == 3
        # Each proxy counts its own requests.
        assert local_limit_stats(first, "svc") == {
            "ok": 2,
            "rate_limited": 1,
        }
        assert local_limit_stats(second, "svc") == {
            "ok": 1,
            "rate_limited": 2,
        }
    finally:
        up.close()


async def test_listeners_whose_limits_share_a_stat_prefix_add_up() -> None:
    """Envoy keeps one counter per name: two listeners' limits named ``svc`` count together
    (each still has its own bucket)."""
    up = await FakeUpstream("v1").start()
    try:
        config = {"stat_prefix": "svc", "token_bucket": {"max_tokens": 1, "fill_interval": "3600s"}}
        one = with_filters(
            listener(route("c1"), clusters=[cluster("c1", up.port)]), (LOCAL, local_config(config))
        )
        first = one.listeners[0]
        second = dataclasses.replace(first, name="second", address=SocketAddress("127.0.0.1", 0))
        async with running(dataclasses.replace(one, listeners=(first, second))) as server:
            for each in server.listeners:
                client = await FakeClient().connect(each.port)
                for i in range(2):
                    await client.call(i, {"method": "m"})
                await client.close()
        assert local_limit_stats(server, "svc") == {"ok": 2, "rate_limited": 2}
    finally:
        up.close()
