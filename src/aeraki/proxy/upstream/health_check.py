"""Active TCP health checking, and the health of a cluster's hosts as one object.

:class:`TcpHealthChecker` follows Envoy's TCP health checker: every ``interval`` each host
gets a fresh connection (connect only, or ``send`` then every ``receive`` payload found in
the reply, in order, Envoy's fuzzy match), bounded by ``timeout``. ``unhealthy_threshold``
failures in a row flag a healthy host ``failed_active_hc``; ``healthy_threshold`` successes
in a row clear it. As in Envoy a new host starts flagged and its first check alone decides
(one success is enough); meanwhile the load balancers' panic mode keeps traffic flowing
when most hosts are still unchecked. Differences, deliberately: checks run at ``interval``
whether the cluster has traffic or not (Envoy waits ``no_traffic_interval``, 60 s by
default, until it has), and each check opens its own connection.

:class:`ClusterHealth` is what a cluster holds: outlier detection and active checking when
configured (nothing at all otherwise), both told about host-set changes, both reporting
flag flips to the cluster so it rebuilds its load balancer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aeraki.proxy.config import ClusterConfig, HealthCheckConfig
from aeraki.proxy.stats import ClusterStats
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.outlier import OutlierDetector, Scheduler

__all__ = ["ClusterHealth", "TcpHealthChecker", "check_tcp"]

log = logging.getLogger(__name__)

_READ_SIZE = 4096


async def check_tcp(host: str, port: int, config: HealthCheckConfig) -> bool:
    """One TCP health check of ``host:port``: ``True`` when it passes within the timeout."""
    try:
        async with asyncio.timeout(config.timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                if config.send:
                    writer.write(config.send)
                return not config.receive or await _received(reader, config.receive)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False


async def _received(reader: asyncio.StreamReader, payloads: tuple[bytes, ...]) -> bool:
    """Read until every payload was found in order (each after the previous match)."""
    data = b""
    position = 0
    index = 0
    while True:
        while index < len(payloads):
            found = data.find(payloads[index], position)
            if found < 0:
                break
            position = found + len(payloads[index])
            index += 1
        if index == len(payloads):
            return True
        chunk = await reader.read(_READ_SIZE)
        if not chunk:
            return False  # closed before the expected reply
        data += chunk


class _HostCheck:
    """Consecutive results of one host and the task checking it."""

    __slots__ = ("failures", "host", "is_first", "successes", "task")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.successes = 0
        self.failures = 0
        self.is_first = True
        self.task: asyncio.Task[None] | None = None


class TcpHealthChecker:
    """Active TCP checks of a cluster's hosts (module docstring).

    ``on_change`` is called after a host's flag flips; ``on_success(host)`` after every
    passed check (outlier detection re-admits an ejected host on it, Envoy's
    ``successful_active_health_check_uneject_host``). ``check`` is the probe (injectable).
    """

    def __init__(
        self,
        config: HealthCheckConfig,
        stats: ClusterStats,
        on_change: Callable[[], None],
        *,
        on_success: Callable[[Host], None] | None = None,
        check: Callable[[str, int, HealthCheckConfig], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.on_change = on_change
        self.on_success = on_success
        self._check = check or check_tcp
        self.checks: dict[Host, _HostCheck] = {}
        self.is_running = False

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Check exactly ``hosts``; a new host starts flagged until its first check."""
        wanted = set(hosts)
        for host in [h for h in self.checks if h not in wanted]:
            self._forget(host)
        for host in wanted:
            if host not in self.checks:
                state = _HostCheck(host)
                self.checks[host] = state
                host.set_failed_active_hc(True)
                if self.is_running:
                    self._launch(state)

    def start(self) -> None:
        """Begin checking (needs the running loop)."""
        if not self.is_running:
            self.is_running = True
            for state in self.checks.values():
                self._launch(state)

    def stop(self) -> None:
        """Stop every check."""
        self.is_running = False
        for host in list(self.checks):
            self._forget(host)

    def _forget(self, host: Host) -> None:
        state = self.checks.pop(host)
        if state.task is not None:
            state.task.cancel()
        if not host.failed_active_hc:
            self.stats.health_check_healthy -= 1

    def _launch(self, state: _HostCheck) -> None:
        state.task = asyncio.get_running_loop().create_task(self._run(state))

    async def _run(self, state: _HostCheck) -> None:
        address = state.host.address
        while True:
            passed = await self._check(address.host, address.port, self.config)
            if self.checks.get(state.host) is not state:
                return  # removed while the check ran
            self.record(state.host, passed)
            await asyncio.sleep(self.config.interval)

    def record(self, host: Host, passed: bool) -> None:
        """Account one check result of ``host`` and flip its flag at the thresholds."""
        state = self.checks[host]
        stats = self.stats
        stats.health_check_attempt += 1
        config = self.config
        flipped = False
        if passed:
            stats.health_check_success += 1
            state.failures = 0
            state.successes += 1
            if host.failed_active_hc and (
                state.is_first or state.successes >= config.healthy_threshold
            ):
                host.set_failed_active_hc(False)
                stats.health_check_healthy += 1
                flipped = True
        else:
            stats.health_check_failure += 1
            state.successes = 0
            state.failures += 1
            if not host.failed_active_hc and state.failures >= config.unhealthy_threshold:
                host.set_failed_active_hc(True)
                stats.health_check_healthy -= 1
                flipped = True
                log.info("host %s failed %d health checks", host.key, state.failures)
        state.is_first = False
        if flipped:
            self.on_change()
        if passed and self.on_success is not None:
            self.on_success(host)


class ClusterHealth:
    """Outlier detection and active health checking of one cluster, each when configured."""

    def __init__(
        self,
        config: ClusterConfig,
        stats: ClusterStats,
        on_change: Callable[[], None],
        *,
        scheduler: Scheduler | None = None,
    ) -> None:
        outlier = config.outlier_detection
        self.detector: OutlierDetector | None = None
        if outlier is not None:
            self.detector = OutlierDetector(outlier, stats, on_change, scheduler=scheduler)
        self.checker: TcpHealthChecker | None = None
        if config.health_check is not None:
            uneject = None
            if (
                self.detector is not None
                and outlier
                and (outlier.successful_active_health_check_uneject_host)
            ):
                uneject = self.detector.uneject
            self.checker = TcpHealthChecker(
                config.health_check, stats, on_change, on_success=uneject
            )

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """The cluster's host set changed (call before rebuilding the load balancer)."""
        hosts = list(hosts)
        if self.detector is not None:
            self.detector.set_hosts(hosts)
        if self.checker is not None:
            self.checker.set_hosts(hosts)

    def start(self) -> None:
        """Begin active checking (needs the running loop)."""
        if self.checker is not None:
            self.checker.start()

    def stop(self) -> None:
        """Stop checking and cancel re-admission timers (the cluster is going away)."""
        if self.checker is not None:
            self.checker.stop()
        if self.detector is not None:
            self.detector.close()
