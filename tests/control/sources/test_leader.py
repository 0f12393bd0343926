"""Lease leader election against the fake API server: hand-over, expiry, 409, step-down."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aeraki.control.sources.kubeclient import KubeClient
from aeraki.control.sources.leader import LeaderElector, micro_time
from tests.control.sources.fake_apiserver import FakeApiServer
from tests.control.sources.helpers import poll_until

LEASE = ("coordination.k8s.io/v1", "Lease", "istio-system", "aeraki-election")
# Short but ordered like the defaults (15/10/2): lease > renew deadline > 1.2 x retry.
SHORT: dict[str, float] = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}


class FakeClock:
    """Virtual time: nothing moves unless the test advances it."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


class Candidate:
    def __init__(self, kube: KubeClient, identity: str, **options: Any) -> None:
        self.leading = asyncio.Event()
        self.terms = 0
        self.stopped = 0
        self.elector = LeaderElector(
            kube,
            namespace="istio-system",
            name="aeraki-election",
            identity=identity,
            on_started_leading=self._lead,
            on_stopped_leading=self._stop,
            **(SHORT | options),
        )
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.terms += 1
        self.leading.set()
        await asyncio.Event().wait()  # the writer role runs until cancelled

    def _stop(self) -> None:
        self.stopped += 1
        self.leading.clear()

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run())
        return self

    async def cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def lease_reads(apiserver: FakeApiServer) -> int:
    return sum(1 for m, p, _ in apiserver.requests if m == "GET" and "/leases/" in p)


def lease_spec(apiserver: FakeApiServer) -> dict[str, Any]:
    lease = apiserver.get(*LEASE)
    assert lease is not None
    spec: dict[str, Any] = lease["spec"]
    return spec


async def test_one_leads_and_the_other_takes_over_after_expiry(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    a = Candidate(kube, "a", release_on_cancel=False).start()
    b = Candidate(kube, "b", release_on_cancel=False).start()
    both: list[bool] = []

    async def monitor() -> None:  # never two leaders at once, sampled every 5 ms
        while True:
            both.append(a.elector.is_leader and b.elector.is_leader)
            await asyncio.sleep(0.005)

    watchdog = asyncio.create_task(monitor())
    await poll_until(lambda: a.elector.is_leader or b.elector.is_leader)
    leader, follower = (a, b) if a.elector.is_leader else (b, a)
    # Several retry periods (counted in Lease reads, not slept): the follower keeps waiting.
    reads = lease_reads(apiserver)
    await poll_until(lambda: lease_reads(apiserver) >= reads + 6)
    assert not follower.elector.is_leader
    assert follower.elector.leader == leader.elector.identity
    assert leader.terms == 1
    spec = lease_spec(apiserver)
    assert spec["holderIdentity"] == leader.elector.identity
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0

    loop = asyncio.get_running_loop()
    await leader.cancel()  # stops renewing and does not release
    assert leader.stopped == 1
    gone_at = loop.time()
    await poll_until(lambda: follower.elector.is_leader, within=5)
    # It waited for the lease to expire as *it* observed it (≥ most of lease_duration).
    assert loop.time() - gone_at >= 0.5
    await asyncio.wait_for(follower.leading.wait(), 1)
    spec = lease_spec(apiserver)
    assert spec["holderIdentity"] == follower.elector.identity
    assert spec["leaseTransitions"] == 1
    await follower.cancel()
    watchdog.cancel()
    assert not any(both)


async def test_release_on_cancel_hands_over_at_once(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    a = Candidate(kube, "a", lease_duration=30.0, renew_deadline=20.0).start()
    await poll_until(lambda: a.elector.is_leader)
    b = Candidate(kube, "b", lease_duration=30.0, renew_deadline=20.0).start()
    await poll_until(lambda: b.elector.leader == "a")
    await a.cancel()
    assert lease_spec(apiserver)["holderIdentity"] == ""
    await poll_until(lambda: b.elector.is_leader, within=3)  # not 30 s
    await b.cancel()


async def test_conflict_on_stale_resource_version(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    clock = FakeClock()
    a = Candidate(kube, "a", clock=clock).elector
    assert await a.try_acquire_or_renew()

    def interfere(method: str, path: str, query: dict[str, str]) -> None:
        if method == "PUT":  # another writer updates the lease between a's GET and PUT
            apiserver.before_request = None
            lease = apiserver.get(*LEASE)
            assert lease is not None
            apiserver.update(
                lease | {"metadata": {"name": "aeraki-election", "namespace": "istio-system"}}
            )

    apiserver.before_request = interfere
    clock.t += 0.1
    assert not await a.try_acquire_or_renew()
    assert a.conflicts == 1
    assert await a.try_acquire_or_renew()  # the next round reads the new version and wins


async def test_expiry_is_judged_on_the_local_clock(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    clock = FakeClock()
    a = Candidate(kube, "a", clock=clock).elector
    b = Candidate(kube, "b", clock=clock).elector
    assert await a.try_acquire_or_renew()
    # Even a renewTime far in the past does not let b in before it has watched for a lease
    # duration itself: the two machines' wall clocks need not agree.
    lease = apiserver.get(*LEASE)
    assert lease is not None
    lease["spec"]["renewTime"] = micro_time(datetime(2000, 1, 1, tzinfo=UTC))
    apiserver.update(lease)
    assert not await b.try_acquire_or_renew()
    clock.t += 0.9
    assert not await b.try_acquire_or_renew()
    clock.t += 0.2
    assert await b.try_acquire_or_renew()
    assert lease_spec(apiserver)["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()  # a now sees b's valid lease
    assert a.leader == "b"


async def test_leader_steps_down_when_it_cannot_renew(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    a = Candidate(kube, "a").start()
    await asyncio.wait_for(a.leading.wait(), 5)
    apiserver.fail_next(500, count=1000, path_contains="/leases")
    await poll_until(lambda: a.stopped == 1, within=3)
    assert not a.elector.is_leader
    apiserver.clear_failures()
    await poll_until(lambda: a.elector.is_leader, within=5)  # and campaigns again
    assert a.terms == 2
    await a.cancel()


def test_timings_are_validated(kube: KubeClient) -> None:
    async def idle() -> None:
        return None

    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(
            kube,
            namespace="n",
            name="l",
            identity="a",
            on_started_leading=idle,
            lease_duration=10,
            renew_deadline=10,
            retry_period=2,
        )
