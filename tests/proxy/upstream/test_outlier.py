"""Outlier detection with an injected clock: detectors, enforcement, ejection times, limits."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest

from aeraki.proxy.config import ClusterConfig, EndpointConfig, OutlierConfig, SocketAddress
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.cluster import Cluster
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.outcome import Outcome
from aeraki.proxy.upstream.outlier import HostMonitor, OutlierDetector


class FakeClock:
    """A scheduler whose time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(callback)
        heapq.heappush(self._timers, (self.now + delay, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer due on the way, in order."""
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            self.now = when
            if not timer.cancelled:
                timer.callback()
        self.now = end

    @property
    def pending(self) -> int:
        return sum(1 for _, _, t in self._timers if not t.cancelled)


class FakeTimer:
    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Setup:
    def __init__(self, config: OutlierConfig, hosts: int = 2, rng: float = 0.0) -> None:
        self.clock = FakeClock()
        self.stats = ClusterStats()
        self.changes = 0
        self.hosts = [Host(SocketAddress("127.0.0.1", 9000 + i)) for i in range(hosts)]
        self.detector = OutlierDetector(
            config, self.stats, self._changed, scheduler=self.clock, rng=lambda: rng
        )
        self.detector.set_hosts(self.hosts)

    def _changed(self) -> None:
        self.changes += 1

    def report(self, host: Host, outcome: Outcome, times: int = 1) -> None:
        for _ in range(times):
            host.report(outcome)


def _config(**values: object) -> OutlierConfig:
    base: dict[str, object] = {"max_ejection_percent": 100}
    return OutlierConfig(**(base | values))  # type: ignore[arg-type]


def test_consecutive_errors_eject_and_the_timer_readmits() -> None:
    s = Setup(_config(consecutive_5xx=3, base_ejection_time=30.0))
    host = s.hosts[0]
    s.report(host, Outcome.ERROR_RESPONSE, 2)
    assert host.healthy
    s.report(host, Outcome.ERROR_RESPONSE)
    assert not host.healthy
    assert host.failed_outlier_check
    assert host.health_flags == "/failed_outlier_check"
    assert s.changes == 1
    assert s.stats.outlier_detection_ejections_active == 1
    assert s.stats.outlier_detection_ejections_enforced_consecutive_5xx == 1
    s.clock.advance(29.9)
    assert not host.healthy
    s.clock.advance(0.1)
    assert host.healthy
    assert s.changes == 2
    assert s.stats.outlier_detection_ejections_active == 0


def test_a_success_resets_the_count() -> None:
    s = Setup(_config(consecutive_5xx=3))
    host = s.hosts[0]
    s.report(host, Outcome.TIMEOUT, 2)
    s.report(host, Outcome.SUCCESS)
    s.report(host, Outcome.TIMEOUT, 2)
    assert host.healthy
    s.report(host, Outcome.RESET)
    assert not host.healthy


def test_ejection_time_grows_with_ejections_up_to_the_cap_and_decays() -> None:
    s = Setup(_config(consecutive_5xx=1, base_ejection_time=10.0, max_ejection_time=25.0))
    host = s.hosts[0]
    durations = []
    for _ in range(4):
        s.report(host, Outcome.ERROR_RESPONSE)
        start = s.clock.now
        assert not host.healthy
        s.clock.advance(100.0)
        monitor = host.monitor
        assert isinstance(monitor, HostMonitor)
        assert monitor.unejected_at is not None
        durations.append(monitor.unejected_at - start)
        s.clock.now = monitor.unejected_at  # eject again right after re-admission
    assert durations == [10.0, 20.0, 25.0, 25.0]
    monitor = host.monitor
    assert isinstance(monitor, HostMonitor)
    s.clock.advance(2 * 10.0)  # two full intervals (Envoy's default 10 s) healthy
    s.report(host, Outcome.ERROR_RESPONSE)
    assert monitor.ejections == 2  # 3 (capped) - 2 decayed + 1


def test_gateway_failures_count_separately_and_are_off_by_default() -> None:
    s = Setup(_config(consecutive_5xx=100, consecutive_gateway_failure=2))
    host = s.hosts[0]
    s.report(host, Outcome.CONNECT_FAILURE, 2)
    assert host.healthy  # enforcing_consecutive_gateway_failure defaults to 0
    s2 = Setup(
        _config(
            consecutive_5xx=100,
            consecutive_gateway_failure=2,
            enforcing_consecutive_gateway_failure=100,
        )
    )
    host = s2.hosts[0]
    s2.report(host, Outcome.BAD_RESPONSE)
    s2.report(host, Outcome.ERROR_RESPONSE)  # a plain error resets the gateway count
    s2.report(host, Outcome.TIMEOUT)
    assert host.healthy
    s2.report(host, Outcome.RESET)
    assert not host.healthy
    assert s2.stats.outlier_detection_ejections_enforced_consecutive_gateway_failure == 1


def test_split_mode_keeps_local_failures_apart() -> None:
    s = Setup(
        _config(
            consecutive_5xx=2,
            consecutive_local_origin_failure=3,
            split_external_local_origin_errors=True,
        )
    )
    host = s.hosts[0]
    s.report(host, Outcome.CONNECT_FAILURE, 2)
    s.report(host, Outcome.ERROR_RESPONSE)  # a response: the local count restarts
    s.report(host, Outcome.CONNECT_FAILURE, 2)
    assert host.healthy  # 2 local (not 3), 1 external (not 2)
    s.report(host, Outcome.TIMEOUT)
    assert not host.healthy
    assert s.stats.outlier_detection_ejections_enforced_consecutive_local_origin_failure == 1


def test_max_ejection_percent_counts_the_next_ejection() -> None:
    s = Setup(_config(consecutive_5xx=1, max_ejection_percent=50), hosts=4)
    for host in s.hosts:
        s.report(host, Outcome.ERROR_RESPONSE)
    assert [h.healthy for h in s.hosts] == [False, False, True, True]
    assert s.stats.outlier_detection_ejections_overflow == 2
    one_of_two = Setup(_config(consecutive_5xx=1, max_ejection_percent=10))
    one_of_two.report(one_of_two.hosts[0], Outcome.ERROR_RESPONSE)
    assert one_of_two.hosts[0].healthy  # 1 of 2 = 50 % > 10 %: Envoy ejects nobody


@pytest.mark.parametrize(("draw", "ejected"), [(0.49, True), (0.5, False)])
def test_enforcing_percentage_is_a_chance(draw: float, ejected: bool) -> None:
    s = Setup(_config(consecutive_5xx=1, enforcing_consecutive_5xx=50), rng=draw)
    s.report(s.hosts[0], Outcome.ERROR_RESPONSE)
    assert s.hosts[0].healthy is not ejected


def test_removed_hosts_lose_their_monitor_and_timer() -> None:
    s = Setup(_config(consecutive_5xx=1))
    gone, kept = s.hosts
    s.report(gone, Outcome.ERROR_RESPONSE)
    assert s.clock.pending == 1
    s.detector.set_hosts([kept])
    assert gone.monitor is None
    assert s.clock.pending == 0
    assert s.stats.outlier_detection_ejections_active == 0
    s.detector.close()
    assert kept.monitor is None


def test_cluster_rebuilds_its_balancer_on_ejection() -> None:
    endpoints = tuple(
        EndpointConfig(address=SocketAddress("127.0.0.1", 9000 + i)) for i in range(3)
    )
    config = ClusterConfig(
        name="c",
        endpoints=endpoints,
        outlier_detection=_config(consecutive_5xx=1),
    )
    cluster = Cluster(config)
    clock = FakeClock()
    detector = cluster.health.detector
    assert detector is not None
    detector._scheduler = clock  # the loop's place, for this test
    sick = cluster.hosts[1]
    sick.report(Outcome.CONNECT_FAILURE)
    picks = {cluster.lb.choose(None) for _ in range(30)}
    assert sick not in picks
    assert len(picks) == 2
    clock.advance(30.0)
    assert sick in {cluster.lb.choose(None) for _ in range(30)}
    cluster.close()
    assert clock.pending == 0
