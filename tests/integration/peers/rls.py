"""An Envoy rate limit service (RLS v3) for tests: grpc.aio, the real ``envoy.service.ratelimit.v3``
proto from xds-protos, on 127.0.0.1, in the test's event loop.

The policy is a fixed quota per descriptor, like ``envoyproxy/ratelimit`` with one rule per
descriptor and a unit longer than the test: ``limits[(domain, ((key, value), ...))] = n`` lets
the first ``n`` hits of that descriptor through and answers ``OVER_LIMIT`` after; a descriptor
with no rule is always ``OK``. The overall code is ``OVER_LIMIT`` when any descriptor is.

Every request is recorded (:attr:`RateLimitServer.requests`) so tests can assert what a proxy
sent; :meth:`hold` makes answers wait until :meth:`release`, for deadline and pause tests
without sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.integration.peers.procs import LOOPBACK

__all__ = ["Descriptor", "RateLimitServer", "descriptor_entries"]

#: One descriptor as ``((key, value), ...)``.
Descriptor = tuple[tuple[str, str], ...]

WAIT = 10.0


def descriptor_entries(descriptor: Any) -> Descriptor:
    """A ``RateLimitDescriptor`` proto as plain ``((key, value), ...)``."""
    return tuple((e.key, e.value) for e in descriptor.entries)


class _Servicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    def __init__(self, owner: RateLimitServer) -> None:
        self.owner = owner

    async def ShouldRateLimit(  # the gRPC method's name
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> rls_pb2.RateLimitResponse:
        return await self.owner.decide(request)


class RateLimitServer:
    """A running RLS with a quota per descriptor (module docstring)."""

    def __init__(self, limits: Mapping[tuple[str, Descriptor], int] | None = None) -> None:
        self.limits = dict(limits or {})
        self.hits: Counter[tuple[str, Descriptor]] = Counter()
        self.requests: list[rls_pb2.RateLimitRequest] = []
        #: requests answered so far (a held request counts once released).
        self.answered = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._gate: asyncio.Event | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> RateLimitServer:
        server = grpc.aio.server()
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(_Servicer(self), server)
        self.port = server.add_insecure_port(f"{LOOPBACK}:0")
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self.release()
            await self._server.stop(grace=None)
            self._server = None

    async def __aenter__(self) -> RateLimitServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- behaviour -----------------------------------------------------------------------
    def hold(self) -> None:
        """Make every answer wait until :meth:`release`."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Answer every held request (and the next ones at once)."""
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def decide(self, request: rls_pb2.RateLimitRequest) -> rls_pb2.RateLimitResponse:
        self.requests.append(request)
        await self._notify()
        gate = self._gate
        if gate is not None:
            await asyncio.wait_for(gate.wait(), WAIT)
        response = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)
        hits = request.hits_addend or 1
        for descriptor in request.descriptors:
            key = (request.domain, descriptor_entries(descriptor))
            code = rls_pb2.RateLimitResponse.OK
            if key in self.limits:
                self.hits[key] += hits
                if self.hits[key] > self.limits[key]:
                    code = rls_pb2.RateLimitResponse.OVER_LIMIT
                    response.overall_code = code
            response.statuses.add(code=code)
        self.answered += 1
        await self._notify()
        return response

    # -- observation ---------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_requests(self, count: int) -> list[rls_pb2.RateLimitRequest]:
        """Wait (bounded) until ``count`` requests have arrived."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.requests) >= count), WAIT
            )
        return self.requests

    async def wait_answered(self, count: int) -> None:
        """Wait (bounded) until ``count`` requests have been answered."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.answered >= count), WAIT)

    def seen(self) -> list[tuple[str, list[Descriptor]]]:
        """Every request as ``(domain, [descriptor, ...])``."""
        return [(r.domain, [descriptor_entries(d) for d in r.descriptors]) for r in self.requests]
