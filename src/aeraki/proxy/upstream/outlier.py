"""Outlier detection: eject hosts that fail several requests in a row (Envoy's detectors).

Envoy's consecutive-error detectors, over the outcomes the request path reports for every
attempt (:mod:`.outcome`), mapped the way Envoy maps HTTP results:

* an error response (Dubbo non-OK status, Thrift exception) is a 5xx;
* a bad response (bytes the codec rejects, a response for another request) is a gateway
  error (HTTP 502), so it counts as 5xx *and* gateway failure;
* connect failure, reset and timeout are local-origin failures. Unless
  ``split_external_local_origin_errors``, they count as gateway errors (Envoy maps them to
  503/504); with the split they only feed ``consecutive_local_origin_failure``, and any
  response resets that counter (the connection worked).

A success resets every counter. When a counter reaches its threshold the host is ejected,
if ``enforcing_*`` percent says so and if ejecting it keeps the ejected share at most
``max_ejection_percent`` (Envoy's current rule: ``100 * (ejected + 1) / hosts``).

An ejected host is flagged ``failed_outlier_check`` (load balancers skip it, unless the
cluster is in panic) for ``base_ejection_time × ejections`` (capped by
``max_ejection_time``); a timer per ejection re-admits it. Envoy re-admits at the first
``interval`` sweep after that time; here it is exact. The multiplier decays by one for each
full ``interval`` the host then stays un-ejected (Envoy decrements it per sweep), computed
when the host is next ejected, so no periodic sweep runs. The per-request cost is one
method call; a success also resets three integers.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Callable, Iterable
from typing import Protocol

from aeraki.proxy.config import OutlierConfig
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.outcome import Outcome

__all__ = ["EjectionKind", "HostMonitor", "OutlierDetector", "Scheduler", "Timer"]

_SUCCESS = Outcome.SUCCESS
_BAD_RESPONSE = Outcome.BAD_RESPONSE


class Timer(Protocol):
    """A scheduled callback (``asyncio.TimerHandle``)."""

    def cancel(self) -> None:
        """Do not run it."""


class Scheduler(Protocol):
    """Time and timers (the running event loop; tests inject a fake clock)."""

    def time(self) -> float:
        """Monotonic seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` after ``delay`` seconds."""
        ...


class EjectionKind(enum.Enum):
    """Which detector fired; the value names its stat suffix (Envoy's ejection types)."""

    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    CONSECUTIVE_LOCAL_ORIGIN_FAILURE = "consecutive_local_origin_failure"


class HostMonitor:
    """Outlier state of one host; installed as ``host.monitor`` (an ``OutcomeMonitor``)."""

    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway",
        "consecutive_local",
        "detector",
        "ejected_at",
        "ejections",
        "host",
        "timer",
        "unejected_at",
    )

    def __init__(self, detector: OutlierDetector, host: Host) -> None:
        self.detector = detector
        self.host = host
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.consecutive_local = 0
        #: the ejection-time multiplier (ejections in a row, decayed while healthy).
        self.ejections = 0
        self.ejected_at: float | None = None
        self.unejected_at: float | None = None
        self.timer: Timer | None = None

    def report(self, host: Host, outcome: Outcome) -> None:
        """Account one attempt's outcome (called by ``host.report`` on the request path)."""
        if outcome is _SUCCESS:
            self.consecutive_5xx = self.consecutive_gateway = self.consecutive_local = 0
            return
        self.detector.on_failure(self, outcome)

    @property
    def is_ejected(self) -> bool:
        """Whether the host is ejected now."""
        return self.ejected_at is not None

    def reset_counters(self) -> None:
        """Forget the failures seen so far (on re-admission, as Envoy does)."""
        self.consecutive_5xx = self.consecutive_gateway = self.consecutive_local = 0


class OutlierDetector:
    """Outlier detection of one cluster; ``on_change`` is called after every ejection and
    re-admission (the cluster rebuilds its load balancer)."""

    def __init__(
        self,
        config: OutlierConfig,
        stats: ClusterStats,
        on_change: Callable[[], None],
        *,
        scheduler: Scheduler | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.stats = stats
        self.on_change = on_change
        self._scheduler = scheduler
        self._rng = rng
        self.monitors: dict[Host, HostMonitor] = {}
        self.ejected = 0
        self._thresholds = {
            EjectionKind.CONSECUTIVE_5XX: config.enforcing_consecutive_5xx,
            EjectionKind.CONSECUTIVE_GATEWAY_FAILURE: config.enforcing_consecutive_gateway_failure,
            EjectionKind.CONSECUTIVE_LOCAL_ORIGIN_FAILURE: (
                config.enforcing_consecutive_local_origin_failure
            ),
        }

    @property
    def scheduler(self) -> Scheduler:
        """The injected scheduler, else the running event loop (taken when first needed:
        clusters may be built before the loop runs)."""
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop()
        return self._scheduler

    # -- host set -----------------------------------------------------------------------
    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Watch exactly ``hosts``: new ones get a monitor, departed ones lose theirs."""
        wanted = set(hosts)
        for host in [h for h in self.monitors if h not in wanted]:
            self._forget(host)
        for host in wanted:
            if host not in self.monitors:
                monitor = HostMonitor(self, host)
                self.monitors[host] = monitor
                host.monitor = monitor

    def _forget(self, host: Host) -> None:
        monitor = self.monitors.pop(host)
        if monitor.timer is not None:
            monitor.timer.cancel()
        if monitor.is_ejected:
            self.ejected -= 1
            self.stats.outlier_detection_ejections_active -= 1
        if host.monitor is monitor:
            host.monitor = None

    def close(self) -> None:
        """Stop: cancel re-admission timers and detach every monitor."""
        for host in list(self.monitors):
            self._forget(host)

    # -- detection ----------------------------------------------------------------------
    def on_failure(self, monitor: HostMonitor, outcome: Outcome) -> None:
        """Count a failed attempt against the host's consecutive-error counters."""
        config = self.config
        is_local = outcome.is_local_origin
        if config.split_external_local_origin_errors:
            if is_local:
                monitor.consecutive_local += 1
                if monitor.consecutive_local == config.consecutive_local_origin_failure:
                    monitor.consecutive_local = 0
                    self._detected(monitor, EjectionKind.CONSECUTIVE_LOCAL_ORIGIN_FAILURE)
                return
            monitor.consecutive_local = 0  # a response came back: the connection worked
        if is_local or outcome is _BAD_RESPONSE:
            monitor.consecutive_gateway += 1
            if monitor.consecutive_gateway == config.consecutive_gateway_failure:
                monitor.consecutive_gateway = 0
                self._detected(monitor, EjectionKind.CONSECUTIVE_GATEWAY_FAILURE)
        else:
            monitor.consecutive_gateway = 0
        monitor.consecutive_5xx += 1
        if monitor.consecutive_5xx == config.consecutive_5xx:
            monitor.consecutive_5xx = 0
            self._detected(monitor, EjectionKind.CONSECUTIVE_5XX)

    def _detected(self, monitor: HostMonitor, kind: EjectionKind) -> None:
        if monitor.is_ejected or monitor.host not in self.monitors:
            return
        if 100.0 * (self.ejected + 1) / len(self.monitors) > self.config.max_ejection_percent:
            self.stats.outlier_detection_ejections_overflow += 1
            return
        enforcing = self._thresholds[kind]
        if enforcing < 100 and self._rng() * 100.0 >= enforcing:
            return
        self._eject(monitor, kind)

    # -- ejection -----------------------------------------------------------------------
    def ejection_time(self, monitor: HostMonitor, now: float) -> float:
        """Advance the host's multiplier (after decay) and return its ejection time."""
        config = self.config
        base = config.base_ejection_time
        cap = max(config.max_ejection_time, base)
        if monitor.unejected_at is not None and config.interval > 0:
            decay = int((now - monitor.unejected_at) / config.interval)
            monitor.ejections = max(0, monitor.ejections - decay)
        if base * monitor.ejections < cap:
            monitor.ejections += 1
        return min(base * monitor.ejections, cap)

    def _eject(self, monitor: HostMonitor, kind: EjectionKind) -> None:
        scheduler = self.scheduler
        now = scheduler.time()
        duration = self.ejection_time(monitor, now)
        monitor.ejected_at = now
        monitor.timer = scheduler.call_later(duration, lambda: self.uneject(monitor.host))
        self.ejected += 1
        stats = self.stats
        stats.outlier_detection_ejections_active += 1
        stats.outlier_detection_ejections_enforced_total += 1
        name = f"outlier_detection_ejections_enforced_{kind.value}"
        setattr(stats, name, getattr(stats, name) + 1)
        monitor.host.set_failed_outlier_check(True)
        self.on_change()

    def uneject(self, host: Host) -> None:
        """Re-admit ``host`` now (its ejection time is over, or an active health check
        passed); a no-op when it is not ejected."""
        monitor = self.monitors.get(host)
        if monitor is None or not monitor.is_ejected:
            return
        if monitor.timer is not None:
            monitor.timer.cancel()
            monitor.timer = None
        monitor.ejected_at = None
        monitor.unejected_at = self.scheduler.time()
        monitor.reset_counters()
        self.ejected -= 1
        self.stats.outlier_detection_ejections_active -= 1
        host.set_failed_outlier_check(False)
        self.on_change()
