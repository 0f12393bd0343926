"""Many minimal ADS clients (state of the world) in one process, for the control-plane benchmark.

Each :class:`AdsClient` is what an Envoy-like proxy does on the wire, nothing more:

- its own gRPC channel and TCP connection (``grpc.use_local_subchannel_pool``: grpc would
  otherwise share one subchannel between channels to the same target), its own node id;
- subscribes CDS and LDS as wildcards, then EDS with the names of the EDS clusters it was given
  and RDS with the ``rds.route_config_name`` of each MetaProtocolProxy filter in its listeners;
- ACKs every response (``version_info`` + ``response_nonce`` + its current names), NACKs
  nothing; a subscription change carries the last nonce of its type (an ACK and a new name set
  at once, as Envoy does).

Cost control, so 100 clients on one core measure the control plane and not themselves:
responses arrive as raw bytes (no deserializer on the stub) and are parsed as a
``DiscoveryResponse`` only (the resources stay packed ``Any`` bytes). The names a CDS or LDS
response implies are decoded once per *(type, version)* and shared: versions are content hashes
(``aeraki.control.xds.snapshot``), so equal versions mean equal resources. A route change is
recognised per client by a marker (the new route name) in that client's own response bytes;
the route's content is decoded and checked once per version (:meth:`Shared.route_target`).
EDS and RDS responses may carry only the resources that changed (xDS allows it for every type
but LDS and CDS), so a client counts the names it has received of those, not the last
response's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2

_PREFIX = "type.googleapis.com/"
CDS = _PREFIX + "envoy.config.cluster.v3.Cluster"
EDS = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = _PREFIX + "envoy.config.listener.v3.Listener"
RDS = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
_MPP = _PREFIX + meta_protocol_proxy_pb2.MetaProtocolProxy.DESCRIPTOR.full_name
_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
TYPES = (CDS, EDS, LDS, RDS)
SHORT = {CDS: "cds", EDS: "eds", LDS: "lds", RDS: "rds"}


class Shared:
    """Decoding shared by all clients, keyed by (type URL, version): versions are content
    hashes, so one decode per distinct content is enough."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str], frozenset[str]] = {}
        self._routes: dict[tuple[str, str, str], str | None] = {}
        self.decodes = 0

    def names(self, resp: discovery_pb2.DiscoveryResponse) -> frozenset[str]:
        """What a CDS (EDS names) or LDS (RDS names) response makes the client subscribe to."""
        key = (resp.type_url, resp.version_info)
        found = self._names.get(key)
        if found is None:
            self.decodes += 1
            found = frozenset(
                _eds_names(resp)
                if resp.type_url == CDS
                else _rds_names(resp)
                if resp.type_url == LDS
                else ()
            )
            self._names[key] = found
        return found

    def route_target(
        self, resp: discovery_pb2.DiscoveryResponse, config: str, route: str
    ) -> str | None:
        """The cluster route ``route`` of route configuration ``config`` sends to (decoded)."""
        key = (resp.version_info, config, route)
        if key not in self._routes:
            self.decodes += 1
            target = None
            for packed in resp.resources:
                rc = route_pb2.RouteConfiguration.FromString(packed.value)
                if rc.name != config:
                    continue
                for vhost in rc.virtual_hosts:
                    for r in vhost.routes:
                        if r.name == route and r.route.WhichOneof("cluster_specifier") == "cluster":
                            target = r.route.cluster
                break
            self._routes[key] = target
        return self._routes[key]


def _eds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for packed in resp.resources:
        c = cluster_pb2.Cluster.FromString(packed.value)
        if c.type == cluster_pb2.Cluster.EDS:
            out.append(c.eds_cluster_config.service_name or c.name)
    return out


def _rds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for packed in resp.resources:
        lis = listener_pb2.Listener.FromString(packed.value)
        for chain in lis.filter_chains:
            for f in chain.filters:
                if f.typed_config.type_url == _MPP:
                    mpp = meta_protocol_proxy_pb2.MetaProtocolProxy.FromString(f.typed_config.value)
                    if mpp.HasField("rds") and mpp.rds.route_config_name:
                        out.append(mpp.rds.route_config_name)
    return out


def _leading_name(packed_value: bytes) -> str:
    """Field 1 (``name`` / ``cluster_name``) of a serialised resource, without parsing it.

    The control plane serialises deterministically, so field 1 comes first: tag 0x0A, a
    varint length, the UTF-8 name.
    """
    if not packed_value or packed_value[0] != 0x0A:
        return ""
    length, shift, pos = 0, 0, 1
    while True:
        byte = packed_value[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            break
        shift += 7
    return packed_value[pos : pos + length].decode()


@dataclass(slots=True)
class TypeState:
    names: frozenset[str] = frozenset()
    version: str = ""
    nonce: str = ""
    #: resources held: the last response's count for CDS/LDS (state of the world); for
    #: EDS/RDS the subscribed names received so far (responses carry only what changed)
    count: int = 0
    held: set[str] = field(default_factory=set)
    acked_at: float = 0.0
    responses: int = 0
    response_bytes: int = 0


@dataclass(slots=True)
class Watch:
    """Wait for an RDS response whose bytes contain ``marker``; stamp its ACK time."""

    marker: bytes
    config: str
    route: str
    expected_cluster: str
    acked_at: float = 0.0
    wrong: str = ""


@dataclass
class AdsClient:
    """One SotW ADS stream with its own connection (see the module docstring)."""

    node_id: str
    target: str
    shared: Shared
    on_progress: Callable[[], None]
    states: dict[str, TypeState] = field(default_factory=lambda: {t: TypeState() for t in TYPES})
    watch: Watch | None = None
    error: str = ""
    _queue: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = field(
        default_factory=asyncio.Queue
    )
    _channel: grpc.aio.Channel | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(
            self.target,
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ],
        )
        self._task = asyncio.create_task(self._run(), name=f"ads-{self.node_id}")

    async def close(self) -> None:
        self._queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._channel is not None:
            await self._channel.close(grace=None)

    def _send(self, type_url: str, *, first: bool = False) -> None:
        st = self.states[type_url]
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=st.version,
            response_nonce=st.nonce,
            resource_names=sorted(st.names),
        )
        if first:
            req.node.CopyFrom(base_pb2.Node(id=self.node_id, cluster="bench"))
        self._queue.put_nowait(req)

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (req := await self._queue.get()) is not None:
            yield req

    async def _run(self) -> None:
        assert self._channel is not None
        method: Callable[..., object] = self._channel.stream_stream(
            _METHOD,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=None,  # raw bytes: parsed below, resources left packed
        )
        responses = cast(AsyncIterator[bytes], method(self._requests()))
        self._send(CDS, first=True)
        self._send(LDS)
        try:
            async for raw in responses:
                assert isinstance(raw, bytes)
                self._on_response(raw)
        except asyncio.CancelledError:
            raise
        except (grpc.RpcError, DecodeError, AssertionError) as exc:  # reported by the fleet
            self.error = f"{type(exc).__name__}: {exc}"
            self.on_progress()

    def _on_response(self, raw: bytes) -> None:
        resp = discovery_pb2.DiscoveryResponse.FromString(raw)
        st = self.states.get(resp.type_url)
        if st is None:  # a type never asked for (none is sent): ignore it
            return
        st.version, st.nonce = resp.version_info, resp.nonce
        if resp.type_url in (EDS, RDS):
            st.held.update(_leading_name(packed.value) for packed in resp.resources)
            st.held.intersection_update(st.names)
            st.count = len(st.held)
        else:
            st.count = len(resp.resources)
        st.responses += 1
        st.response_bytes += len(raw)
        self._send(resp.type_url)  # the ACK
        st.acked_at = time.monotonic()
        if resp.type_url in (CDS, LDS):
            child = EDS if resp.type_url == CDS else RDS
            names = self.shared.names(resp)
            if names != self.states[child].names:
                self.states[child].names = names
                self.states[child].held.intersection_update(names)
                self._send(child)  # new names, with the last nonce of that type
        elif resp.type_url == RDS and self.watch is not None and not self.watch.acked_at:
            w = self.watch
            if w.marker in raw:
                target = self.shared.route_target(resp, w.config, w.route)
                if target != w.expected_cluster:
                    w.wrong = f"route {w.route} → {target!r}, expected {w.expected_cluster!r}"
                w.acked_at = st.acked_at
        self.on_progress()

    def complete(self, expected: dict[str, int]) -> bool:
        """Has ACKed a response of every type with the expected number of resources."""
        return all(self.states[t].count == n and self.states[t].nonce for t, n in expected.items())

    def completed_at(self) -> float:
        return max(s.acked_at for s in self.states.values())


class Fleet:
    """``count`` clients against one ADS server, with bounded waits on their progress."""

    def __init__(self, count: int, target: str) -> None:
        self.shared = Shared()
        self._progress = asyncio.Event()
        self.clients = [
            AdsClient(f"bench-proxy-{i:03d}", target, self.shared, self._progress.set)
            for i in range(count)
        ]

    def start(self) -> None:
        for c in self.clients:
            c.start()

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)

    def errors(self) -> list[str]:
        return [f"{c.node_id}: {c.error}" for c in self.clients if c.error]

    async def wait(self, done: Callable[[], bool], limit: float, what: str) -> None:
        """Until ``done()`` (checked after each response any client handles), at most
        ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while not done():
            if errors := self.errors():
                raise RuntimeError(f"{what}: client stream failed: {errors[:3]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: not done after {limit:.0f} s")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(left, 1.0))

    def set_watch(self, make: Callable[[], Watch]) -> None:
        for c in self.clients:
            c.watch = make()
