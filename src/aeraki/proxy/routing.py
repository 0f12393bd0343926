"""Compiled MetaProtocol route tables (reference §20.1, §20.3, §20.4).

A :class:`RouteTableConfig` is compiled once, when configuration arrives (DESIGN §4 rule 3):
matcher names are lower-cased, regexes precompiled, each matcher becomes one closure over the
metadata's ``strings`` dict, weighted clusters become a cumulative array searched by
``bisect``. ``RouteTable.match`` then allocates nothing but its result.

Deferred properties (``Metadata.deferred``, e.g. Dubbo attachments): a key present in
``strings`` is final, an absent one may appear once loaded. The table knows every key its
matchers read; only when one of them is absent and a load is pending does it match on the
slow path, which loads just before the first matcher that reads an absent key. Requests
routed on what the codec found eagerly (Dubbo interface and method) never pay for a load.

Defects of the reference fixed here (§33):

* 17 — the hash key is computed over real copies of the values (Python strings), exactly as
  §20.3 specifies: sorted values, chained XXH64 seeds.
* 18 — a mirror policy without a fraction mirrors 100% (``MirrorPolicy`` defaults), never 0%.
* 26 — a weighted cluster list whose total weight is 0 is rejected at compile time with a
  :class:`~aeraki.errors.ConfigError` instead of dividing by zero per request.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import xxhash

from aeraki.codec.api import ErrorType, Metadata
from aeraki.errors import ConfigError
from aeraki.proxy.config import (
    FaultConfig,
    HeaderMatch,
    MatchKind,
    MirrorPolicy,
    RetryPolicyConfig,
    RouteConfig,
    RouteTableConfig,
)

__all__ = ["CompiledMatcher", "Route", "RouteTable", "compile_matcher"]

_MASK64 = (1 << 64) - 1
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
#: absl::SimpleAtoi: optional ASCII whitespace around an optionally signed decimal integer.
_INT_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*", re.ASCII)

Test = Callable[[Mapping[str, str]], bool]


# -- matchers ---------------------------------------------------------------------------------
def _parse_int64(value: str) -> int | None:
    """``absl::SimpleAtoi`` into int64, as Envoy's ``range_match``; ``None`` if not an integer."""
    m = _INT_RE.fullmatch(value)
    if m is None:
        return None
    number = int(m.group(1))
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _value_test(spec: HeaderMatch, path: str) -> Callable[[str], bool]:
    """The specifier's test of a present (or missing-as-empty) value, before ``invert``."""
    kind, expected, fold = spec.kind, spec.value, spec.ignore_case
    if kind is MatchKind.REGEX:
        # StringMatcher's ignore_case has no effect on safe_regex (Envoy docs); RE2 full match.
        try:
            pattern = re.compile(expected)
        except re.error as exc:
            raise ConfigError(path, f"invalid regex {expected!r}: {exc}") from None
        return lambda v: pattern.fullmatch(v) is not None
    if kind is MatchKind.RANGE:
        start, end = spec.range_start, spec.range_end

        def in_range(v: str) -> bool:
            n = _parse_int64(v)
            return n is not None and start <= n < end

        return in_range
    if kind is MatchKind.PRESENT:
        result = spec.present
        return lambda v: result
    if kind is MatchKind.EXACT and not expected:
        return lambda v: True  # HeaderMatcher: an empty exact_match matches any value
    if fold:
        return _folded_test(kind, expected.lower())
    if kind is MatchKind.EXACT:
        return expected.__eq__
    if kind is MatchKind.PREFIX:
        return lambda v: v.startswith(expected)
    if kind is MatchKind.SUFFIX:
        return lambda v: v.endswith(expected)
    return lambda v: expected in v  # CONTAINS


def _folded_test(kind: MatchKind, expected: str) -> Callable[[str], bool]:
    """Case-insensitive string tests; ``expected`` is already lower-cased."""
    if kind is MatchKind.EXACT:
        return lambda v: v.lower() == expected
    if kind is MatchKind.PREFIX:
        return lambda v: v.lower().startswith(expected)
    if kind is MatchKind.SUFFIX:
        return lambda v: v.lower().endswith(expected)
    return lambda v: expected in v.lower()


def _missing_result(spec: HeaderMatch) -> bool:
    """Outcome for an absent key without ``treat_missing_as_empty`` (§20.1, Envoy ≈1.29).

    Only presence matchers can succeed: ``present_match: false`` when not inverted, and
    ``present_match: true`` when inverted; every other specifier fails, inverted or not.
    """
    if spec.kind is not MatchKind.PRESENT:
        return False
    return spec.present if spec.invert else not spec.present


def _build_test(spec: HeaderMatch, name: str, path: str) -> Test:
    """One closure over ``Metadata.strings`` implementing the full HeaderMatcher semantics."""
    value_test = _value_test(spec, path)
    invert, missing_as_empty = spec.invert, spec.treat_missing_as_empty
    if spec.kind is MatchKind.EXACT and spec.value and not spec.ignore_case and not invert:
        expected = spec.value
        if not missing_as_empty:
            return lambda s: s.get(name) == expected  # hot path: None != expected
        return lambda s: s.get(name, "") == expected
    missing = _missing_result(spec)

    def test(strings: Mapping[str, str]) -> bool:
        value = strings.get(name)
        if value is None:
            if not missing_as_empty:
                return missing
            value = ""
        return value_test(value) != invert

    return test


def _describe(spec: HeaderMatch) -> str:
    """A short human form of a matcher for ``explain``."""
    if spec.kind is MatchKind.RANGE:
        what = f"range [{spec.range_start}, {spec.range_end})"
    elif spec.kind is MatchKind.PRESENT:
        what = f"present={spec.present}"
    else:
        what = f"{spec.kind.value} {spec.value!r}"
    flags = [
        flag
        for flag, on in (
            ("ignore_case", spec.ignore_case and spec.kind is not MatchKind.REGEX),
            ("invert", spec.invert),
            ("missing_as_empty", spec.treat_missing_as_empty),
        )
        if on
    ]
    return f"{spec.name.lower()} {what}" + (f" [{', '.join(flags)}]" if flags else "")


@dataclass(frozen=True, slots=True)
class CompiledMatcher:
    """A compiled HeaderMatcher: ``test(md.strings)`` is the whole evaluation."""

    name: str  # lower-cased
    spec: HeaderMatch
    test: Test

    def matches(self, md: Metadata) -> bool:
        """The matcher on a request's metadata, loading deferred properties if its key is
        absent (what filters that reuse route matchers should call)."""
        strings = md.strings
        if md.deferred is not None and self.name not in strings:
            strings = md.load_strings()
        return self.test(strings)

    def describe(self) -> str:
        """The matcher in short human form (``method exact 'sayHello' [invert]``)."""
        return _describe(self.spec)

    def explain(self, strings: Mapping[str, str]) -> str:
        """Why this matcher succeeds or fails on ``strings`` (one line)."""
        ok = self.test(strings)
        value = strings.get(self.name)
        seen = "absent" if value is None else f"value {value!r}"
        return f"{'ok  ' if ok else 'FAIL'} {_describe(self.spec)}: {seen}"


def compile_matcher(spec: HeaderMatch, path: str = "") -> CompiledMatcher:
    """Compile one matcher; ``path`` locates it in :class:`ConfigError` messages."""
    if not spec.name:
        raise ConfigError(path + ".name", "a metadata matcher needs a non-empty name")
    if spec.kind is MatchKind.RANGE and spec.range_start >= spec.range_end:
        raise ConfigError(path + ".range_match", "range start must be below range end")
    name = spec.name.lower()
    return CompiledMatcher(name, spec, _build_test(spec, name, path))


# -- routes -----------------------------------------------------------------------------------
def _mix64(x: int) -> int:
    """SplitMix64 finaliser: derives independent-looking 64-bit draws from one random value."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class Route:
    """A compiled route: matchers (AND) plus the action the router filter executes."""

    __slots__ = (
        "_cumulative",
        "_hash_keys",
        "abort_type",
        "cluster",
        "config",
        "fault",
        "idempotent",
        "matchers",
        "mirror_policies",
        "name",
        "request_mutation",
        "response_mutation",
        "retry_policy",
        "tests",
        "timeout",
        "total_weight",
        "weighted_names",
    )

    def __init__(self, config: RouteConfig, path: str) -> None:
        #: the route as configured (for ``/config_dump`` and ``aeraki explain``).
        self.config = config
        self.name = config.name
        self.matchers = tuple(
            compile_matcher(m, f"{path}.match.metadata[{j}]") for j, m in enumerate(config.match)
        )
        self.tests: tuple[Test, ...] = tuple(m.test for m in self.matchers)
        self.cluster = config.cluster
        self.weighted_names, self._cumulative = _compile_weights(config, path)
        self.total_weight = self._cumulative[-1] if self._cumulative else 0
        self._hash_keys = tuple(k.lower() for k in config.hash_policy)
        self.mirror_policies = _check_mirrors(config.mirror_policies, path)
        self.request_mutation = _mutation(config.request_mutation, f"{path}.request_mutation")
        self.response_mutation = _mutation(config.response_mutation, f"{path}.response_mutation")
        if config.timeout is not None and config.timeout <= 0:
            raise ConfigError(f"{path}.timeout", "timeout must be positive")
        self.timeout: float | None = config.timeout
        self.retry_policy: RetryPolicyConfig | None = config.retry_policy
        if self.retry_policy is not None and self.retry_policy.num_retries == 0:
            self.retry_policy = None
        self.fault: FaultConfig | None = config.fault
        self.abort_type = _abort_type(config.fault, path)
        #: ``False`` when the route declares its requests non-idempotent.
        self.idempotent = config.idempotent is not False

    def __repr__(self) -> str:
        return f"<Route {self.name!r} -> {self.cluster or self.weighted_names}>"

    @property
    def has_hash_policy(self) -> bool:
        """Whether ``hash_key`` returns a value (so the LB context carries a hash)."""
        return bool(self._hash_keys)

    def matches(self, strings: Mapping[str, str]) -> bool:
        """All matchers succeed on ``strings`` (an empty list matches everything)."""
        return all(test(strings) for test in self.tests)

    def cluster_for(self, random_value: int) -> str:
        """The upstream cluster for a request whose random 64-bit value is ``random_value``.

        Weighted clusters (§20.1): ``v = random % total_weight``, then the entry whose
        cumulative interval ``[begin, begin + weight)`` contains ``v``.
        """
        if not self._cumulative:
            return self.cluster
        v = random_value % self.total_weight
        return self.weighted_names[bisect.bisect_right(self._cumulative, v)]

    def hash_key(self, md: Metadata) -> int | None:
        """The LB hash of §20.3, or ``None`` when the route has no hash policy.

        Values of the policy keys (missing ⇒ ``""``) are sorted so key order does not matter,
        then chained: ``h = 0; h = XXH64(v, seed=h)`` for each value.
        """
        keys = self._hash_keys
        if not keys:
            return None
        strings = md.strings
        if md.deferred is not None and not all(k in strings for k in keys):
            strings = md.load_strings()
        if len(keys) == 1:
            return xxhash.xxh64_intdigest(strings.get(keys[0], "").encode(), 0)
        h = 0
        for value in sorted([strings.get(k, "") for k in keys]):
            h = xxhash.xxh64_intdigest(value.encode(), h)
        return h

    def mirror_clusters(self, random_value: int) -> list[str]:
        """Clusters to shadow this request to (§20.4).

        Each policy mirrors iff ``draw % denominator < numerator``. Envoy draws a fresh random
        number per policy; here policy ``i`` draws ``mix64(random_value + i)`` (SplitMix64), so
        the draws are independent of each other and of the weighted-cluster pick, and the
        whole decision stays a pure function of the request's random value (testable).
        """
        chosen: list[str] = []
        for i, policy in enumerate(self.mirror_policies):
            if policy.numerator >= policy.denominator or (
                policy.numerator > 0
                and _mix64(random_value + i) % policy.denominator < policy.numerator
            ):
                chosen.append(policy.cluster)
        return chosen


def _abort_type(fault: FaultConfig | None, path: str) -> ErrorType:
    if fault is None or fault.abort is None:
        return ErrorType.UNSPECIFIED
    try:
        return ErrorType[fault.abort.error_type.upper()]
    except KeyError:
        raise ConfigError(
            f"{path}.fault.abort.error_type", f"unknown error type {fault.abort.error_type!r}"
        ) from None


def _compile_weights(config: RouteConfig, path: str) -> tuple[tuple[str, ...], list[int]]:
    """Validate the cluster specifier; cumulative interval ends for ``weighted_clusters``."""
    if config.cluster and config.weighted_clusters:
        raise ConfigError(f"{path}.route", "set either cluster or weighted_clusters, not both")
    if not config.weighted_clusters:
        if not config.cluster:
            raise ConfigError(f"{path}.route", "a route needs cluster or weighted_clusters")
        return (), []
    names: list[str] = []
    ends: list[int] = []
    total = 0
    for k, wc in enumerate(config.weighted_clusters):
        where = f"{path}.route.weighted_clusters.clusters[{k}]"
        if not wc.name:
            raise ConfigError(f"{where}.name", "a weighted cluster needs a name")
        if wc.weight < 0:
            raise ConfigError(f"{where}.weight", "weight must not be negative")
        total += wc.weight
        names.append(wc.name)
        ends.append(total)
    if total == 0:
        # §33 item 26: the reference divides by zero per request; reject the config instead.
        raise ConfigError(f"{path}.route.weighted_clusters", "total weight must be above 0")
    return tuple(names), ends


def _check_mirrors(policies: tuple[MirrorPolicy, ...], path: str) -> tuple[MirrorPolicy, ...]:
    for k, p in enumerate(policies):
        where = f"{path}.route.request_mirror_policies[{k}]"
        if not p.cluster:
            raise ConfigError(f"{where}.cluster", "a mirror policy needs a cluster")
        if p.denominator <= 0 or p.numerator < 0:
            raise ConfigError(f"{where}.runtime_fraction", "invalid fraction")
    return policies


def _mutation(pairs: tuple[tuple[str, str], ...], path: str) -> dict[str, str]:
    for k, (key, _value) in enumerate(pairs):
        if not key:
            raise ConfigError(f"{path}[{k}].key", "a mutation key must not be empty")
    return dict(pairs)


class RouteTable:
    """A compiled RouteConfiguration: ``match`` returns the first route whose matchers pass."""

    __slots__ = ("_names", "name", "routes")

    def __init__(self, name: str, routes: tuple[Route, ...]) -> None:
        self.name = name
        self.routes = routes
        #: every key a matcher of this table reads (deferred properties: see the module doc).
        self._names = tuple(dict.fromkeys(m.name for r in routes for m in r.matchers))

    @classmethod
    def compile(cls, config: RouteTableConfig) -> RouteTable:
        """Compile ``config``; every error is a :class:`ConfigError` with a ``routes[i]…`` path."""
        return cls(
            config.name, tuple(Route(r, f"routes[{i}]") for i, r in enumerate(config.routes))
        )

    def match(self, md: Metadata) -> Route | None:
        """The first matching route (§20.1), or ``None`` (the router replies RouteNotFound)."""
        strings = md.strings
        if md.deferred is not None:
            for name in self._names:
                if name not in strings:
                    return self._match_deferred(md)
        for route in self.routes:
            for test in route.tests:
                if not test(strings):
                    break
            else:
                return route
        return None

    def _match_deferred(self, md: Metadata) -> Route | None:
        """``match`` while some key is absent and a load is pending: load only once a matcher
        that reads an absent key is reached (a route failing before it needs no load)."""
        strings = md.strings
        for route in self.routes:
            for matcher in route.matchers:
                if md.deferred is not None and matcher.name not in strings:
                    strings = md.load_strings()
                if not matcher.test(strings):
                    break
            else:
                return route
        return None

    def explain(self, md: Metadata) -> list[str]:
        """Human-readable trace of matching ``md``: every route until the first match.

        One line per route ("MATCH"/"miss") followed by one indented line per matcher saying
        why it succeeded or failed; used by ``aeraki explain``.
        """
        lines: list[str] = []
        strings = md.load_strings()
        for i, route in enumerate(self.routes):
            ok = route.matches(strings)
            target = route.cluster or "weighted " + ",".join(route.weighted_names)
            label = route.name or f"routes[{i}]"
            lines.append(f"{'MATCH' if ok else 'miss '} route {label} -> {target}")
            if not route.matchers:
                lines.append("    ok   (no matchers: matches everything)")
            lines.extend("    " + m.explain(strings) for m in route.matchers)
            if ok:
                return lines
        lines.append("no route matched: RouteNotFound")
        return lines
