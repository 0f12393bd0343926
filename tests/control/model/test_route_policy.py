"""The MetaRoute extension (timeout, retries, fault, idempotent): parsing and every bad value,
each reported with file, line and field path as ``aeraki validate`` prints it."""

from __future__ import annotations

from datetime import timedelta

from aeraki.codec.api import ErrorType
from aeraki.control.model.metaprotocol import (
    ABORT_ERROR_TYPES,
    RETRY_ON,
    FaultAbort,
    FaultDelay,
    MetaFault,
    MetaRetries,
    MetaRoute,
    MetaRouterSpec,
    RetryBackoff,
)
from aeraki.proxy.config import RETRY_ON_NAMES
from tests.control.helpers import lines, parse_one
from tests.control.model.test_rules import MR

HEAD = MR  # the route's own fields continue at line 12


def _route(extra: str) -> tuple[MetaRoute | None, list[str]]:
    parsed = parse_one(HEAD + extra)
    route = None
    if parsed.resource is not None:
        spec = parsed.resource.spec
        assert isinstance(spec, MetaRouterSpec)
        route = spec.routes[0]
    return route, lines(parsed.problems)


def test_every_field_parses_into_the_model() -> None:
    route, problems = _route(
        """\
      timeout: 2s
      idempotent: false
      retries:
        attempts: 3
        perTryTimeout: 500ms
        retryOn: "connect-failure, reset,retriable-error"
        retryNonIdempotent: true
        backoff: {baseInterval: 10ms, maxInterval: 1s}
      fault:
        delay: {fixedDelay: 1.5s, percentage: {value: 12.5}}
        abort: {errorType: OVER_LIMIT, message: busy, percentage: {value: 5}}
"""
    )
    assert problems == []
    assert route is not None
    assert route.has_policy
    assert route.timeout == timedelta(seconds=2)
    assert route.idempotent is False
    assert route.retries == MetaRetries(
        attempts=3,
        per_try_timeout=timedelta(milliseconds=500),
        retry_on=("connect-failure", "reset", "retriable-error"),
        retry_non_idempotent=True,
        backoff=RetryBackoff(
            base_interval=timedelta(milliseconds=10), max_interval=timedelta(seconds=1)
        ),
    )
    assert route.fault == MetaFault(
        delay=FaultDelay(fixed_delay=timedelta(seconds=1.5), percentage=12.5),
        abort=FaultAbort(error_type="OVER_LIMIT", message="busy", percentage=5.0),
    )


def test_a_route_without_the_extension_has_no_policy() -> None:
    route, problems = _route("")
    assert problems == []
    assert route is not None
    assert not route.has_policy
    assert (route.timeout, route.retries, route.fault, route.idempotent) == (None, None, None, None)


def test_bad_values_are_reported_with_line_and_field_path() -> None:
    _, problems = _route(
        """\
      timeout: 0s
      idempotent: "no"
      retries:
        perTryTimeout: -1s
        retryOn: "reset,5xx,,timeout"
        backoff: {baseInterval: 100ms, maxInterval: 10ms}
      fault:
        delay: {percentage: {value: 150}}
        abort: {errorType: TEAPOT, percentage: {value: -1}}
"""
    )
    where = "error: MetaRouter ns/mr: spec.routes[0]"
    known = ", ".join(RETRY_ON)
    assert problems == [  # sorted by line, as validate prints them
        f"test.yaml:12: {where}.timeout: must be greater than 0",
        f'test.yaml:13: {where}.idempotent: expected true or false, got string "no"',
        f"test.yaml:14: {where}.retries.attempts: retries.attempts is required "
        "(0 disables retries)",
        f'test.yaml:15: {where}.retries.perTryTimeout: invalid duration "-1s" '
        '(expected e.g. "1s", "100ms", "1m30s")',
        f'test.yaml:16: {where}.retries.retryOn: "5xx" is not a retry condition (known: {known})',
        f"test.yaml:16: {where}.retries.retryOn: an empty condition is not a retry condition "
        f"(known: {known})",
        f"test.yaml:17: {where}.retries.backoff.maxInterval: must not be less than baseInterval",
        f"test.yaml:19: {where}.fault.delay.fixedDelay: fault delay fixedDelay is required",
        f"test.yaml:19: {where}.fault.delay.percentage.value: percentage must be in the range "
        "0..100 (it has 150)",
        f'test.yaml:20: {where}.fault.abort.errorType: "TEAPOT" is not one of '
        + ", ".join(ABORT_ERROR_TYPES),
        f"test.yaml:20: {where}.fault.abort.percentage.value: percentage must be in the range "
        "0..100 (it has -1)",
    ]


def test_empty_fault_unknown_field_and_per_try_timeout_warning() -> None:
    _, problems = _route(
        """\
      timeout: 1s
      retries: {attempts: 2, perTryTimeout: 1s, retryOnn: reset}
      fault: {}
"""
    )
    where = "MetaRouter ns/mr: spec.routes[0]"
    assert problems == [
        f'test.yaml:13: error: {where}.retries.retryOnn: unknown field (did you mean "retryOn"?)',
        f"test.yaml:13: warning: {where}.retries.perTryTimeout: perTryTimeout 1s is not shorter "
        "than the route timeout 1s: the request times out before a retry can start",
        f"test.yaml:14: error: {where}.fault: fault must have a delay or an abort",
    ]


def test_model_vocabularies_match_the_data_plane() -> None:
    """The control plane does not import the proxy; these lists must not drift from it."""
    assert set(RETRY_ON) == set(RETRY_ON_NAMES)
    assert set(ABORT_ERROR_TYPES) == set(ErrorType.__members__)
