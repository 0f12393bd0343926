"""Test harness for the proxy core: a scriptable upstream and a client, both speaking the
fake length-prefixed protocol of :mod:`aeraki.testing.fake_codec` over real loopback TCP.

The upstream reacts to an ``action`` header of each request:

* absent — answer at once with ``server=<label>`` and ``echo-<key>`` for each request header;
* ``hold`` — keep the request until :meth:`FakeUpstream.release_held` answers every held one,
  in reverse order and in one write (out-of-order responses for multiplexing tests);
* ``hang`` — never answer;
* ``close`` — close the connection instead of answering;
* ``wrong-id`` — answer with the request id plus one.

Per-upstream variants, for retry tests across hosts: ``fail-on``, ``close-on`` and
``hang-on`` name comma-separated upstream labels that answer with an error response (status
from ``fail-status``: 1 error, 2 retriable error), close, or never answer; the other
upstreams answer normally.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import cast

from aeraki.codec.api import MessageType, Metadata, ResponseStatus, Side
from aeraki.proxy.config import (
    ClusterConfig,
    EndpointConfig,
    FaultConfig,
    HeaderMatch,
    LbPolicy,
    ListenerConfig,
    MatchKind,
    MetaProtocolConfig,
    MirrorPolicy,
    ProxyConfig,
    RetryPolicyConfig,
    RouteConfig,
    RouteTableConfig,
    SocketAddress,
    WeightedCluster,
)
from aeraki.testing.fake_codec import FakeCodec, build_frame

__all__ = [
    "FakeClient",
    "FakeUpstream",
    "cluster",
    "exact",
    "listener",
    "route",
]

FAKE = "aeraki.meta_protocol.codec.fake"
TIMEOUT = 5.0


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, owner: FakeUpstream) -> None:
        self.owner = owner
        self.codec = FakeCodec(Side.REQUEST)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are look-alikes
        self.owner.connections += 1

    def data_received(self, data: bytes) -> None:
        for md in self.codec.decode(data):
            self.owner.on_request(self, md)

    def reply(self, md: Metadata, request_id: int | None = None) -> bytes:
        headers = {"server": self.owner.label}
        headers.update({f"echo-{k}": v for k, v in md.strings.items()})
        rid = md.request_id if request_id is None else request_id
        if md.message_type is MessageType.HEARTBEAT:
            return build_frame(MessageType.HEARTBEAT, rid)
        return build_frame(MessageType.RESPONSE, rid, headers, b"pong")


class FakeUpstream:
    """A real TCP server on 127.0.0.1 speaking the fake protocol."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.received: list[Metadata] = []
        self.connections = 0
        self.held: list[tuple[_UpstreamProtocol, Metadata]] = []
        self.server: asyncio.Server | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _UpstreamProtocol(self), "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def on_request(self, proto: _UpstreamProtocol, md: Metadata) -> None:
        self.received.append(md)
        asyncio.get_running_loop().create_task(self._notify())
        assert proto.transport is not None
        action = md.get_string("action")
        label = self.label
        if label in md.get_string("fail-on").split(","):
            status = ResponseStatus(int(md.get_string("fail-status", "1")))
            headers = {"server": label}
            proto.transport.write(
                build_frame(MessageType.ERROR, md.request_id, headers, b"", status=status)
            )
            return
        if label in md.get_string("close-on").split(","):
            action = "close"
        elif label in md.get_string("hang-on").split(","):
            action = "hang"
        if action == "hold":
            self.held.append((proto, md))
        elif action == "hang" or md.message_type is MessageType.ONEWAY:
            return
        elif action == "close":
            proto.transport.close()
        elif action == "wrong-id":
            proto.transport.write(proto.reply(md, md.request_id + 1))
        else:
            proto.transport.write(proto.reply(md))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_received(self, count: int) -> list[Metadata]:
        """Wait (bounded) until ``count`` requests have arrived."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.received) >= count), TIMEOUT
            )
        return self.received

    def release_held(self) -> None:
        """Answer every held request, last first, all of one connection in one write."""
        by_proto: dict[_UpstreamProtocol, list[bytes]] = {}
        for proto, md in reversed(self.held):
            by_proto.setdefault(proto, []).append(proto.reply(md))
        self.held.clear()
        for proto, frames in by_proto.items():
            assert proto.transport is not None
            if not proto.transport.is_closing():  # the proxy may have given up on it
                proto.transport.write(b"".join(frames))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class FakeClient:
    """A client connection to the proxy; sends frames, reads decoded replies."""

    def __init__(self) -> None:
        self.codec = FakeCodec(Side.RESPONSE)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: list[Metadata] = []

    async def connect(self, port: int) -> FakeClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        return self

    def send(
        self,
        request_id: int,
        headers: dict[str, str] | None = None,
        message_type: MessageType = MessageType.REQUEST,
        payload: bytes = b"",
    ) -> None:
        assert self.writer is not None
        self.writer.write(build_frame(message_type, request_id, headers or {}, payload))

    def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def receive(self) -> Metadata:
        """The next reply (bounded wait)."""
        assert self.reader is not None
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not data:
                raise ConnectionError("proxy closed the connection")
            self.pending.extend(self.codec.decode(data))
        return self.pending.pop(0)

    async def call(self, request_id: int, headers: dict[str, str] | None = None) -> Metadata:
        self.send(request_id, headers)
        return await self.receive()

    async def wait_closed(self) -> bytes:
        """Read until the proxy closes; returns what was read (bounded wait)."""
        assert self.reader is not None
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


def exact(name: str, value: str, *, invert: bool = False) -> HeaderMatch:
    return HeaderMatch(name=name, kind=MatchKind.EXACT, value=value, invert=invert)


def route(
    cluster: str = "",
    *,
    match: Iterable[HeaderMatch] = (),
    weighted: Iterable[tuple[str, int]] = (),
    timeout: float | None = None,
    mirrors: Iterable[str] = (),
    request_mutation: Iterable[tuple[str, str]] = (),
    response_mutation: Iterable[tuple[str, str]] = (),
    hash_policy: Iterable[str] = (),
    retry_policy: RetryPolicyConfig | None = None,
    fault: FaultConfig | None = None,
    idempotent: bool | None = None,
) -> RouteConfig:
    return RouteConfig(
        name=f"to-{cluster or 'weighted'}",
        match=tuple(match),
        cluster=cluster,
        weighted_clusters=tuple(WeightedCluster(n, w) for n, w in weighted),
        timeout=timeout,
        mirror_policies=tuple(MirrorPolicy(c) for c in mirrors),
        request_mutation=tuple(request_mutation),
        response_mutation=tuple(response_mutation),
        hash_policy=tuple(hash_policy),
        retry_policy=retry_policy,
        fault=fault,
        idempotent=idempotent,
    )


def cluster(
    name: str, *ports: int, lb: LbPolicy = LbPolicy.ROUND_ROBIN, connect_timeout: float = 1.0
) -> ClusterConfig:
    return ClusterConfig(
        name=name,
        lb_policy=lb,
        connect_timeout=connect_timeout,
        endpoints=tuple(EndpointConfig(address=SocketAddress("127.0.0.1", p)) for p in ports),
    )


def listener(
    *routes: RouteConfig,
    clusters: Iterable[ClusterConfig] = (),
    multiplexing: bool = False,
    idle_timeout: float | None = None,
    codec: str = FAKE,
) -> ProxyConfig:
    proxy = MetaProtocolConfig(
        stat_prefix="test",
        application_protocol="fake",
        codec=codec,
        multiplexing=multiplexing,
        route_table=RouteTableConfig(name="test", routes=tuple(routes)),
        idle_timeout=idle_timeout,
    )
    return ProxyConfig(
        listeners=(
            ListenerConfig(name="fake", address=SocketAddress("127.0.0.1", 0), proxy=proxy),
        ),
        clusters=tuple(clusters),
    )


def is_error(md: Metadata, error_type: str) -> bool:
    return (
        md.message_type is MessageType.ERROR
        and md.response_status is ResponseStatus.ERROR
        and md.get_string("error-type") == error_type
    )
