"""Per-route traffic policy from protos: timeout, retries, fault injection, idempotency.

These are this project's extensions of Aeraki's MetaProtocol ``Route`` (field numbers from
100; see ``proto/…/route.proto`` and docs/traffic-policy.md). Every value is checked here,
once, so the request path only reads plain numbers.
"""

from __future__ import annotations

from typing import Any

from aeraki.codec.api import ErrorType
from aeraki.proxy.bootstrap_problems import Problems, duration_seconds, join
from aeraki.proxy.config import (
    RETRY_ON_NAMES,
    FaultAbortConfig,
    FaultConfig,
    FaultDelayConfig,
    RetryOn,
    RetryPolicyConfig,
)

__all__ = ["FRACTION_DENOMINATORS", "convert_fault", "convert_retry_policy", "convert_timeout"]

#: envoy.type.v3.FractionalPercent.DenominatorType -> denominator.
FRACTION_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}

_DEFAULT_RETRY_ON = RetryOn.CONNECT_FAILURE | RetryOn.RESET
#: Back-off defaults as in Envoy: 25 ms base, 10 x base cap.
_DEFAULT_BASE_INTERVAL = 0.025


def convert_timeout(route: Any, path: str, problems: Problems) -> float | None:
    """``Route.timeout`` in seconds, or ``None`` when unset."""
    if not route.HasField("timeout"):
        return None
    return _positive(route.timeout, join(path, "timeout"), problems)


def convert_retry_policy(route: Any, path: str, problems: Problems) -> RetryPolicyConfig | None:
    """``Route.retry_policy``, or ``None`` when unset."""
    if not route.HasField("retry_policy"):
        return None
    proto = route.retry_policy
    p_path = join(path, "retry_policy")
    retry_on = RetryOn.NONE
    for i, name in enumerate(proto.retry_on):
        for part in name.split(","):
            flag = RETRY_ON_NAMES.get(part.strip())
            if flag is None:
                known = ", ".join(RETRY_ON_NAMES)
                problems.add(join(p_path, f"retry_on[{i}]"), f"unknown {part!r} (known: {known})")
            else:
                retry_on |= flag
    per_try = None
    if proto.HasField("per_try_timeout"):
        per_try = _positive(proto.per_try_timeout, join(p_path, "per_try_timeout"), problems)
    base = _DEFAULT_BASE_INTERVAL
    if proto.HasField("base_interval"):
        base = _positive(proto.base_interval, join(p_path, "base_interval"), problems) or base
    max_interval = 10 * base
    if proto.HasField("max_interval"):
        max_path = join(p_path, "max_interval")
        max_interval = _positive(proto.max_interval, max_path, problems) or max_interval
        if max_interval < base:
            problems.add(max_path, f"must not be less than base_interval ({base}s)")
    return RetryPolicyConfig(
        num_retries=proto.num_retries,
        per_try_timeout=per_try,
        retry_on=retry_on or _DEFAULT_RETRY_ON,
        base_interval=base,
        max_interval=max_interval,
        retry_non_idempotent=proto.retry_non_idempotent,
    )


def convert_fault(route: Any, path: str, problems: Problems) -> FaultConfig | None:
    """``Route.fault``, or ``None`` when unset or empty."""
    if not route.HasField("fault"):
        return None
    proto = route.fault
    f_path = join(path, "fault")
    delay = abort = None
    if proto.HasField("delay"):
        d_path = join(f_path, "delay")
        if not proto.delay.HasField("fixed_delay"):
            problems.add(join(d_path, "fixed_delay"), "required")
        seconds = duration_seconds(proto.delay.fixed_delay)
        if seconds < 0:
            problems.add(join(d_path, "fixed_delay"), f"must not be negative, got {seconds}s")
        num, den = _fraction(proto.delay, join(d_path, "percentage"), problems)
        delay = FaultDelayConfig(fixed_delay=max(seconds, 0.0), numerator=num, denominator=den)
    if proto.HasField("abort"):
        a_path = join(f_path, "abort")
        error_type = proto.abort.error_type or "UNSPECIFIED"
        if error_type.upper() not in ErrorType.__members__:
            known = ", ".join(ErrorType.__members__)
            problems.add(join(a_path, "error_type"), f"unknown {error_type!r} (known: {known})")
        num, den = _fraction(proto.abort, join(a_path, "percentage"), problems)
        abort = FaultAbortConfig(
            error_type=error_type.upper(),
            message=proto.abort.message or "fault injected",
            numerator=num,
            denominator=den,
        )
    if delay is None and abort is None:
        return None
    return FaultConfig(delay=delay, abort=abort)


def _positive(value: Any, path: str, problems: Problems) -> float | None:
    seconds = duration_seconds(value)
    if seconds <= 0:
        problems.add(path, f"must be greater than 0, got {seconds}s")
        return None
    return seconds


def _fraction(parent: Any, path: str, problems: Problems) -> tuple[int, int]:
    """A FractionalPercent as (numerator, denominator); absent = 100 %."""
    if not parent.HasField("percentage"):
        return 100, 100
    fraction = parent.percentage
    denominator = FRACTION_DENOMINATORS.get(fraction.denominator)
    if denominator is None:
        problems.add(join(path, "denominator"), "unknown value")
        return 100, 100
    if fraction.numerator > denominator:
        problems.add(
            join(path, "numerator"), f"{fraction.numerator} exceeds the denominator {denominator}"
        )
    return min(fraction.numerator, denominator), denominator
