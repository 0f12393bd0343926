"""Local rate limit (``aeraki.meta_protocol.filters.local_ratelimit``, reference §22.2).

Token buckets: an optional default bucket plus one bucket per condition. Per request the
conditions are tried in order against the request's metadata (route matcher semantics); the
first match takes a token from its own bucket and the default bucket is not consulted; no
match uses the default bucket, and no default bucket lets the request through. Over the
limit, the request gets a local OverLimit reply in its protocol's own format.

Buckets start full and gain ``tokens_per_fill`` every ``fill_interval`` after their start,
up to ``max_tokens``. The reference refills every bucket from a timer (and so rejects fill
intervals under 50 ms); here a bucket computes its refills lazily from the clock when a
request takes a token — no timer at all, exact for any interval, and an idle bucket costs
nothing. One limiter serves every connection of the listener, and survives a listener update
that keeps the filter's config (see :func:`~aeraki.proxy.filters.common.shared_state`).

Several proxy worker processes (``aeraki proxy --workers N``) share their buckets when the
worker attached the supervisor's bucket store
(:func:`~aeraki.proxy.filters.shared_buckets.attach_store`): the limiter a listener builds
then finds its buckets in the store by listener name, config and bucket index, so N workers
allow the configured rate, not N times it. Without a store (one process, the default) the
buckets are plain objects of this module, as cheap as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from aeraki.codec.api import ErrorType
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap_problems import Problems, duration_seconds, join
from aeraki.proxy.filters.api import ClusterRefs, FilterStatus, register_filter
from aeraki.proxy.filters.common import (
    Match,
    match_tests,
    problem_list,
    request_strings,
    shared_state,
)
from aeraki.proxy.filters.shared_buckets import DEFAULT_INDEX, Bucket, attached, bucket_key
from aeraki.proxy.stats import LocalRateLimitStats

if TYPE_CHECKING:
    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.request import ActiveRequest

__all__ = [
    "NAME",
    "BucketSpec",
    "LocalRateLimitFilter",
    "Limiter",
    "TokenBucket",
    "bucket_for",
    "check_config",
    "compile_conditions",
    "compile_limiter",
]

NAME = "aeraki.meta_protocol.filters.local_ratelimit"
#: The filter's counters: ``meta_protocol.<its stat_prefix>.local_rate_limit.<stat>`` in /stats
#: (§22.2, outside the listener's scope), listener-labelled in /stats/prometheus.
STAT_PREFIX = "local_rate_limit"

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """An ``envoy.type.v3.TokenBucket``, checked: seconds for the interval."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval: float


class TokenBucket:
    """One bucket; :meth:`take` refills lazily from ``now`` then takes a token if any."""

    __slots__ = ("fill_interval", "max_tokens", "next_fill", "tokens", "tokens_per_fill")

    def __init__(self, spec: BucketSpec, now: float) -> None:
        self.max_tokens = spec.max_tokens
        self.tokens_per_fill = spec.tokens_per_fill
        self.fill_interval = spec.fill_interval
        self.tokens = spec.max_tokens  # buckets start full
        #: when the next ``tokens_per_fill`` is due: fills happen at start + k * interval.
        self.next_fill = now + spec.fill_interval

    def take(self, now: float) -> bool:
        """Take one token at time ``now``; ``False`` if the bucket is empty."""
        if now >= self.next_fill:
            fills = int((now - self.next_fill) // self.fill_interval) + 1
            self.tokens = min(self.max_tokens, self.tokens + fills * self.tokens_per_fill)
            self.next_fill += fills * self.fill_interval
        if self.tokens > 0:
            self.tokens -= 1
            return True
        return False


#: Builds the bucket of index ``i`` (conditions 0, 1, …; the default bucket
#: :data:`~.shared_buckets.DEFAULT_INDEX`) of a limiter: ``make(spec, now, i)``.
BucketMaker = Callable[[BucketSpec, float, int], Bucket]


def _local_bucket(spec: BucketSpec, now: float, index: int) -> Bucket:
    return TokenBucket(spec, now)


def _bucket_maker(listener_name: str | None, config: Any) -> BucketMaker:
    """In-process buckets, or with ``listener_name`` and an attached store, buckets in the
    store keyed by the listener, the config and the bucket index."""
    store = attached()
    if store is None or listener_name is None:
        return _local_bucket
    identity = config.SerializeToString(deterministic=True)
    owner = f"the local rate limit of listener {listener_name!r}"

    def make(spec: BucketSpec, now: float, index: int) -> Bucket:
        key = bucket_key(listener_name, identity, index)
        return store.bucket(key, spec, now, partial(TokenBucket, spec), owner)

    return make


class Limiter:
    """The buckets and counters of one filter config, shared by all its connections."""

    __slots__ = ("__weakref__", "clock", "conditions", "default", "names", "stats")

    def __init__(
        self,
        conditions: tuple[tuple[Match, BucketSpec], ...],
        default: BucketSpec | None,
        clock: Clock,
        make: BucketMaker = _local_bucket,
    ) -> None:
        now = clock()
        self.clock = clock
        self.conditions = tuple(
            (match.tests, make(spec, now, i)) for i, (match, spec) in enumerate(conditions)
        )
        self.default = make(default, now, DEFAULT_INDEX) if default is not None else None
        #: every property a condition reads (deferred ones are loaded when one is absent).
        self.names = tuple(dict.fromkeys(n for match, _ in conditions for n in match.names))
        self.stats = LocalRateLimitStats()

    def allow(self, strings: dict[str, str]) -> bool:
        """Take a token for a request with metadata ``strings`` from the bucket that applies."""
        bucket = self.default
        for tests, candidate in self.conditions:
            for test in tests:
                if not test(strings):
                    break
            else:
                bucket = candidate
                break
        if bucket is None or bucket.take(self.clock()):
            self.stats.ok += 1
            return True
        self.stats.rate_limited += 1
        return False


class LocalRateLimitFilter:
    """The decoder filter: lets a request through or answers it OverLimit."""

    __slots__ = ("allow", "names")

    def __init__(self, limiter: Limiter) -> None:
        self.allow = limiter.allow
        self.names = limiter.names

    def on_request(self, request: ActiveRequest) -> FilterStatus:
        metadata = request.metadata
        strings = metadata.strings
        if metadata.deferred is not None and self.names:
            strings = request_strings(metadata, self.names)
        if self.allow(strings):
            return FilterStatus.CONTINUE
        request.local_reply(
            ErrorType.OVER_LIMIT,
            f"meta protocol local rate limit: request '{request.metadata.request_id}' "
            "has been rate limited",
        )
        return FilterStatus.STOP


# -- config -----------------------------------------------------------------------------------
def _bucket(proto: Any, path: str, problems: Problems) -> BucketSpec | None:
    """A ``TokenBucket`` checked as Envoy's validation rules say (all > 0, fill default 1)."""
    before = len(problems)
    if proto.max_tokens < 1:
        problems.add(join(path, "max_tokens"), "must be at least 1")
    per_fill = 1
    if proto.HasField("tokens_per_fill"):
        per_fill = proto.tokens_per_fill.value
        if per_fill < 1:
            problems.add(join(path, "tokens_per_fill"), "must be at least 1 (omit it for 1)")
    interval = duration_seconds(proto.fill_interval)
    if not proto.HasField("fill_interval"):
        problems.add(join(path, "fill_interval"), "required")
    elif interval <= 0:
        problems.add(join(path, "fill_interval"), f"must be positive, got {interval}s")
    if len(problems) != before:
        return None
    return BucketSpec(proto.max_tokens, per_fill, interval)


def _compile(
    config: Any, path: str, problems: Problems
) -> tuple[tuple[tuple[Match, BucketSpec], ...], BucketSpec | None]:
    if not config.stat_prefix:
        problems.add(join(path, "stat_prefix"), "required")
    default = None
    if config.HasField("token_bucket"):
        default = _bucket(config.token_bucket, join(path, "token_bucket"), problems)
    conditions: list[tuple[Match, BucketSpec]] = []
    for i, condition in enumerate(config.conditions):
        c_path = join(path, f"conditions[{i}]")
        # An absent match matches every request, like an empty one (a route's semantics).
        match = match_tests(condition.match, join(c_path, "match"), problems)
        if not condition.HasField("token_bucket"):
            problems.add(join(c_path, "token_bucket"), "required")
            continue
        spec = _bucket(condition.token_bucket, join(c_path, "token_bucket"), problems)
        if spec is not None:
            conditions.append((match, spec))
    if not config.HasField("token_bucket") and not config.conditions:
        problems.add(path, "token_bucket or conditions required (this limit limits nothing)")
    return tuple(conditions), default


def check_config(config: Any, path: str, refs: ClusterRefs) -> list[ConfigError]:
    """Every problem of a ``LocalRateLimit`` config (:data:`~.api.FilterCheck`)."""
    problems = Problems(NAME)
    _compile(config, path, problems)
    return problem_list(problems)


def compile_limiter(
    config: Any, clock: Clock = time.monotonic, listener_name: str | None = None
) -> Limiter:
    """A limiter for a ``LocalRateLimit`` config.

    With ``listener_name`` (the listener it serves) and a bucket store attached
    (:func:`~.shared_buckets.attach_store`), its buckets live in the store, shared with
    every limiter of that listener and config in the host's worker processes; ``clock``
    must then be ``time.monotonic`` (or agree with it in every process).

    Raises:
        ConfigErrors: the config is invalid (already reported by :func:`check_config` when
            it came through the bootstrap or xDS).
    """
    problems = Problems(NAME)
    conditions, default = _compile(config, "config", problems)
    problems.raise_if_any()
    return Limiter(conditions, default, clock, _bucket_maker(listener_name, config))


Conditions = tuple[tuple[Match, BucketSpec], ...]


def compile_conditions(config: Any) -> tuple[Conditions, BucketSpec | None]:
    """The conditions (compiled match, bucket spec) and the default bucket spec of a
    ``LocalRateLimit`` config, exactly as :func:`compile_limiter` gives them to its
    :class:`Limiter` — for tools that reason about a config without taking tokens
    (``aeraki explain``).

    Raises:
        ConfigErrors: the config is invalid.
    """
    problems = Problems(NAME)
    compiled = _compile(config, "config", problems)
    problems.raise_if_any()
    return compiled


def bucket_for(
    conditions: Conditions, default: BucketSpec | None, strings: dict[str, str]
) -> int | None:
    """Which bucket a request with metadata ``strings`` takes its token from, as
    :meth:`Limiter.allow` chooses: the index of the first condition whose match passes,
    :data:`~.shared_buckets.DEFAULT_INDEX` for the default bucket, ``None`` when no bucket
    applies (the request is always allowed). Pure: no bucket is touched. (``allow`` keeps its
    own inlined loop: it is on the request path.)"""
    for index, (match, _) in enumerate(conditions):
        if all(test(strings) for test in match.tests):
            return index
    return DEFAULT_INDEX if default is not None else None


def _factory(config: Any, listener: ListenerRuntime) -> LocalRateLimitFilter:
    limiter = shared_state(
        listener, NAME, config, lambda: compile_limiter(config, listener_name=listener.name)
    )
    full_prefix = f"meta_protocol.{config.stat_prefix}.{STAT_PREFIX}"  # §22.2's names
    listener.stats.add_filter_stats(STAT_PREFIX, limiter.stats, full_prefix)
    return LocalRateLimitFilter(limiter)


register_filter(NAME, _factory, check_config)
