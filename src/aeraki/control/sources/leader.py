"""Lease-based leader election (``coordination.k8s.io/v1`` Lease), client-go's algorithm.

Every replica serves xDS; only a *writer* role (EnvoyFilter reconciliation, VIP allocation)
must run once, so it runs under this election (reference aeraki-control-plane.md §13.5).

The algorithm, as client-go's ``leaderelection`` package does it:
- ``try_acquire_or_renew``: GET the Lease; create it if absent. If another identity holds it and
  the lease has not expired, give up this round. Expiry is judged with the *local* monotonic
  clock from when this replica last saw the record change (``observed_time``), never from the
  ``renewTime`` written by another machine — clocks of two nodes need not agree. Otherwise PUT
  the new record carrying the ``resourceVersion`` that was read: two candidates racing for an
  expired lease both PUT, the API server accepts one and answers 409 Conflict to the other.
- Candidates retry every ``retry_period`` (× up to 1.2 jitter). The leader renews every
  ``retry_period`` and steps down when it could not renew for ``renew_deadline`` — before the
  lease (``lease_duration``) expires for the others, so two leaders never overlap if clocks run
  at the same rate — or as soon as it reads another holder.
- On cancellation the leader releases the lease (holder ``""``, duration 1 s) so a successor
  need not wait for expiry (``release_on_cancel``, on by default as in Aeraki).
Defaults 15 s / 10 s / 2 s are controller-runtime's, used by Aeraki's singleton manager.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import aiohttp

from aeraki.control.sources.api import JsonDict
from aeraki.control.sources.kubeclient import ApiError, KubeClient

log = logging.getLogger(__name__)

_JITTER = 1.2  # client-go's JitterFactor


class Clock(Protocol):
    """Time for the elector, injectable: ``monotonic`` for expiry, ``now`` for Lease fields."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def micro_time(moment: datetime) -> str:
    """Kubernetes ``MicroTime``: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = True,
        clock: Clock | None = None,
    ) -> None:
        """``on_started_leading`` runs as a task while leading and is cancelled on loss."""
        if not lease_duration > renew_deadline > _JITTER * retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > 1.2 * retry_period > 0")
        if not identity:
            raise ValueError("identity must not be empty")
        self.client = client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.clock: Clock = clock or SystemClock()
        self.is_leader = False
        self.leader: str | None = None  # the holder last observed
        self.conflicts = 0  # 409s seen (lost races); for tests and metrics
        self._observed: JsonDict | None = None  # the Lease object last read or written
        self._observed_time = 0.0

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing; returns only by cancellation."""
        while True:
            await self._acquire()
            await self._lead()

    async def _acquire(self) -> None:
        while not await self._attempt():
            await self.clock.sleep(self.retry_period * (1.0 + random.random() * (_JITTER - 1.0)))

    async def _lead(self) -> None:
        log.info("%s: became leader of %s/%s", self.identity, self.namespace, self.name)
        self.is_leader = True
        task = asyncio.create_task(self._run_leading())
        last_renew = self.clock.monotonic()
        try:
            while True:
                await self.clock.sleep(self.retry_period)
                left = self.renew_deadline - (self.clock.monotonic() - last_renew)
                renewed = False
                if left > 0:
                    try:
                        async with asyncio.timeout(left):
                            renewed = await self._attempt()
                    except TimeoutError:
                        renewed = False
                if renewed:
                    last_renew = self.clock.monotonic()
                    continue
                if self.leader not in (None, self.identity):
                    break  # someone else holds a valid lease: step down now
                if self.clock.monotonic() - last_renew >= self.renew_deadline:
                    break
            log.warning("%s: lost leadership of %s/%s", self.identity, self.namespace, self.name)
        except asyncio.CancelledError:
            if self.release_on_cancel:
                await self._stop(task)
                await asyncio.shield(self.release())
                raise
            raise
        finally:
            await self._stop(task)

    async def _run_leading(self) -> None:
        try:
            await self.on_started_leading()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad callback must not kill the elector
            log.exception("on_started_leading failed")

    async def _stop(self, task: asyncio.Task[None]) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self.on_stopped_leading is not None:
            self.on_stopped_leading()

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except (ApiError, aiohttp.ClientError, ValueError, KeyError) as exc:
            log.warning("%s: leader election attempt failed: %r", self.identity, exc)
            return False

    async def try_acquire_or_renew(self) -> bool:
        """One round: True if this candidate holds the lease afterwards."""
        now, moment = self.clock.monotonic(), micro_time(self.clock.now())
        spec: JsonDict = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": moment,
            "renewTime": moment,
            "leaseTransitions": 0,
        }
        try:
            lease = await self.client.request("GET", f"{self._collection}/{self.name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            body: JsonDict = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            return await self._write("POST", self._collection, body, now)
        old = lease.get("spec") or {}
        if self._observed is None or self._observed.get("spec") != old:
            self._observed, self._observed_time = lease, now
        holder = str(old.get("holderIdentity") or "")
        self._set_leader(holder or None)
        duration = float(old.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_time + duration > now:
            return False
        if holder == self.identity:
            spec["acquireTime"] = old.get("acquireTime") or moment
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
        body = dict(lease)
        body["spec"] = spec
        return await self._write("PUT", f"{self._collection}/{self.name}", body, now)

    async def _write(self, method: str, path: str, body: JsonDict, now: float) -> bool:
        try:
            written = await self.client.request(method, path, body=body)
        except ApiError as exc:
            if exc.status == 409:  # lost the race (Conflict) or someone created it first
                self.conflicts += 1
                return False
            raise
        self._observed, self._observed_time = written, now
        self._set_leader(self.identity)
        return True

    async def release(self) -> bool:
        """Give the lease up if we hold it (holder ``""``, 1 s), so a successor starts at once."""
        if self._observed is None:
            return False
        spec = self._observed.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        moment = micro_time(self.clock.now())
        new_spec: JsonDict = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": moment,
            "renewTime": moment,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0),
        }
        try:
            await self.client.request(
                "PUT", f"{self._collection}/{self.name}", body=self._observed | {"spec": new_spec}
            )
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s: could not release the lease: %r", self.identity, exc)
            return False
        return True

    def _set_leader(self, holder: str | None) -> None:
        if holder != self.leader:
            self.leader = holder
            if holder and self.on_new_leader is not None:
                self.on_new_leader(holder)
