"""A scripted ADS client for tests: the xds-protos stub over a grpc.aio channel.

Ordering is what makes these tests deterministic without sleeping: a stream's server loop
handles its inbox in order, so after a ``set_snapshot`` (which queues a "changed" mark at once)
a *barrier* request queued behind it is answered only after every push the change caused.
:meth:`AdsClient.barrier` returns exactly those pushes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

#: A type no snapshot holds: subscribing to a fresh name always gets an answer.
BARRIER_TYPE = "type.googleapis.com/google.protobuf.Empty"
#: Bound on every wait for a response.
RECV_TIMEOUT = 5.0


class AdsClient:
    """One ADS stream (SotW or delta) with helpers to subscribe, ACK, NACK and barrier."""

    def __init__(
        self, channel: grpc.aio.Channel, node_id: str, *, delta: bool = False, cluster: str = "test"
    ) -> None:
        self.delta = delta
        self.node = base_pb2.Node(id=node_id, cluster=cluster)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sent_node = False
        self._barriers = 0
        self._barrier_nonce = ""
        self._barrier_version = ""
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self._call = method(self._requests())

    async def _requests(self) -> AsyncIterator[Any]:
        while (req := await self._queue.get()) is not None:
            yield req

    def send(self, **fields: Any) -> None:
        """Queue a DiscoveryRequest / DeltaDiscoveryRequest; the node goes on the first."""
        cls = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
        req = cls(**fields)
        if not self._sent_node:
            req.node.CopyFrom(self.node)
            self._sent_node = True
        self._queue.put_nowait(req)

    def subscribe(self, type_url: str, *names: str, **fields: Any) -> None:
        key = "resource_names_subscribe" if self.delta else "resource_names"
        self.send(type_url=type_url, **{key: list(names)}, **fields)

    async def recv(self) -> Any:
        """The next response (fails the test after :data:`RECV_TIMEOUT` seconds)."""
        resp = await asyncio.wait_for(self._call.read(), RECV_TIMEOUT)
        assert resp is not grpc.aio.EOF, "stream ended"
        return resp

    def ack(self, resp: Any, names: list[str] | None = None) -> None:
        """ACK ``resp`` (SotW: with ``names`` as the still-subscribed names)."""
        if self.delta:
            self.send(type_url=resp.type_url, response_nonce=resp.nonce)
        else:
            self.send(
                type_url=resp.type_url,
                response_nonce=resp.nonce,
                version_info=resp.version_info,
                resource_names=names or [],
            )

    def nack(
        self, resp: Any, reason: str, names: list[str] | None = None, previous_version: str = ""
    ) -> None:
        error = status_pb2.Status(code=3, message=reason)
        if self.delta:
            self.send(type_url=resp.type_url, response_nonce=resp.nonce, error_detail=error)
        else:
            self.send(
                type_url=resp.type_url,
                response_nonce=resp.nonce,
                error_detail=error,
                version_info=previous_version,
                resource_names=names or [],
            )

    async def barrier(self) -> list[Any]:
        """Every response the server sends before answering a fresh barrier subscription."""
        self._barriers += 1
        name = f"barrier-{self._barriers}"
        if self.delta:
            self.send(
                type_url=BARRIER_TYPE,
                resource_names_subscribe=[name],
                response_nonce=self._barrier_nonce,
            )
        else:
            self.send(
                type_url=BARRIER_TYPE,
                resource_names=[name],
                response_nonce=self._barrier_nonce,
                version_info=self._barrier_version,
            )
        seen = []
        while (resp := await self.recv()).type_url != BARRIER_TYPE:
            seen.append(resp)
        self._barrier_nonce = resp.nonce
        self._barrier_version = "" if self.delta else resp.version_info
        return seen

    async def close(self) -> None:
        """Half-close and cancel the call."""
        self._queue.put_nowait(None)
        self._call.cancel()
