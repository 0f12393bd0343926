"""The proxy's ADS client: listeners, clusters, endpoints and routes from a control plane.

One gRPC stream (state of the world, or delta with ``api_type: DELTA_GRPC``) carries every
type. Each response is converted with the same checks as a bootstrap
(:mod:`aeraki.proxy.xds_apply`) and applied, then ACKed; a response the proxy cannot honour
is NACKed with the reason and the last good configuration stays in force. When the control
plane goes away the proxy keeps serving what it has and reconnects with capped, jittered
exponential backoff. Order of application follows Envoy: clusters before the endpoints and
listeners that use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from aeraki.errors import AerakiError
from aeraki.proxy.config import NO_LOCALITY, AdsConfig
from aeraki.proxy.xds_apply import (
    TYPE_CDS,
    TYPE_EDS,
    TYPE_LDS,
    TYPE_RDS,
    clusters_from_resources,
    endpoints_from_resource,
    listeners_from_resources,
    route_table_from_resource,
)

if TYPE_CHECKING:
    from aeraki.proxy.server import ProxyServer

__all__ = ["XdsClient"]

log = logging.getLogger(__name__)

#: Reconnect backoff: first delay, cap (seconds); each failure doubles, with ±50 % jitter.
BACKOFF_BASE = 0.25
BACKOFF_MAX = 15.0
#: After this long without a complete first configuration the proxy declares itself ready
#: anyway (Envoy's initial_fetch_timeout default), serving whatever it has.
INITIAL_FETCH_TIMEOUT = 15.0
_INVALID_ARGUMENT = 3  # google.rpc.Code


@dataclass
class _TypeState:
    """What the client knows of one resource type on the current stream."""

    version: str = ""
    nonce: str = ""
    names: set[str] = field(default_factory=set)  # empty = wildcard (LDS, CDS)
    received: bool = False
    #: delta: name -> (version, resource) currently held.
    held: dict[str, tuple[str, any_pb2.Any]] = field(default_factory=dict)


class XdsClient:
    """Keeps one proxy in sync with its ADS server."""

    def __init__(self, server: ProxyServer, ads: AdsConfig) -> None:
        self.server = server
        self.ads = ads
        config = server.config
        self.node = base_pb2.Node(id=config.node_id, cluster=config.node_cluster)
        self.node.metadata.update(dict(config.node_metadata))
        locality = config.node_locality
        if locality != NO_LOCALITY:  # the control plane ranks endpoints by it
            self.node.locality.CopyFrom(
                base_pb2.Locality(
                    region=locality.region, zone=locality.zone, sub_zone=locality.sub_zone
                )
            )
        self._connected = False
        self._connection_changed = asyncio.Event()
        self.last_nack = ""
        self.updates_applied = 0
        self._states: dict[str, _TypeState] = {}
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ready_timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        """Whether a stream to the control plane is up."""
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value != self._connected:
            self._connected = value
            self._connection_changed.set()
            self._connection_changed = asyncio.Event()

    async def wait_connected(self, value: bool = True) -> None:
        """Return once ``connected`` equals ``value``."""
        while self._connected != value:
            await self._connection_changed.wait()

    def state(self) -> dict[str, Any]:
        """What the client holds, for the admin ``/config_dump``: per resource type the
        version applied (ACKed) and the names subscribed, plus the last rejection. With
        delta xDS each resource has a version of its own: ``resource_versions``."""
        types: dict[str, Any] = {}
        for type_url, state in sorted(self._states.items()):
            entry: dict[str, Any] = {
                "version": state.version,
                "received": state.received,
                "names": sorted(state.names),
            }
            if self.ads.delta:
                entry["resource_versions"] = {n: v for n, (v, _) in sorted(state.held.items())}
            types[type_url.rsplit("/", 1)[-1]] = entry
        return {
            "connected": self._connected,
            "delta": self.ads.delta,
            "updates_applied": self.updates_applied,
            "last_nack": self.last_nack,
            "types": types,
        }

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (and keep reconnecting)."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._ready_timer = loop.call_later(INITIAL_FETCH_TIMEOUT, self._initial_fetch_timeout)

    async def stop(self) -> None:
        """Stop talking to the control plane (the configuration in force stays)."""
        if self._ready_timer is not None:
            self._ready_timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _initial_fetch_timeout(self) -> None:
        if not self.server.is_ready and not self.server.is_draining:
            log.warning(
                "xds: no complete configuration after %ss; serving what we have",
                INITIAL_FETCH_TIMEOUT,
            )
            self.server.is_ready = True

    async def _run(self) -> None:
        failures = 0
        while True:
            target = self._target()
            try:
                if target is None:
                    raise AerakiError(f"ADS cluster {self.ads.cluster!r} has no host")
                async with grpc.aio.insecure_channel(target) as channel:
                    await self._stream(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel))
                failures = 0
            except (grpc.aio.AioRpcError, AerakiError, OSError) as exc:
                log.warning("xds: stream to %s ended: %s", target, _short(exc))
            self.connected = False
            failures += 1
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(failures, 16))
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))

    def _target(self) -> str | None:
        cluster = self.server.clusters.get(self.ads.cluster)
        if cluster is None or not cluster.hosts:
            return None
        address = cluster.hosts[0].address
        return f"[{address.host}]:{address.port}" if ":" in address.host else str(address)

    # -- the stream -----------------------------------------------------------------------
    async def _stream(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> None:
        self._outbox = asyncio.Queue()
        for state in self._states.values():
            state.nonce = ""  # nonces belong to a stream
        self._subscribe_initial()
        if self.ads.delta:
            call = stub.DeltaAggregatedResources(self._requests())
        else:
            call = stub.StreamAggregatedResources(self._requests())
        self.connected = True
        heard = False
        async for response in call:
            if not heard:  # gRPC streams open lazily: only an answer proves the connection
                heard = True
                log.info("xds: connected to %s", self._target())
            await self._on_response(response)

    async def _requests(self) -> AsyncIterator[Any]:
        while True:
            yield await self._outbox.get()

    def _subscribe_initial(self) -> None:
        if self.ads.cds:
            self._subscribe(TYPE_CDS, set(), force=True)
        if self.ads.lds:
            self._subscribe(TYPE_LDS, set(), force=True)
        self._subscribe(TYPE_EDS, self.server.clusters.eds_names, force=True)
        self._subscribe(TYPE_RDS, self.server.rds_names, force=True)

    def _subscribe(self, type_url: str, names: set[str], *, force: bool = False) -> None:
        """Ask for ``names`` of ``type_url`` (empty = wildcard) if that changed."""
        wildcard = type_url in (TYPE_CDS, TYPE_LDS)
        if not wildcard and not names and type_url not in self._states:
            return  # nothing to ask for yet
        state = self._states.setdefault(type_url, _TypeState())
        if not force and state.names == names:
            return
        previous, state.names = state.names, set(names)
        if self.ads.delta:
            self._outbox.put_nowait(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=self.node,
                    type_url=type_url,
                    resource_names_subscribe=sorted(names - (set() if force else previous)),
                    resource_names_unsubscribe=[] if force else sorted(previous - names),
                    initial_resource_versions={n: v for n, (v, _) in state.held.items()}
                    if force
                    else {},
                )
            )
        else:
            self._outbox.put_nowait(self._sotw_request(type_url, state))

    def _sotw_request(
        self, type_url: str, state: _TypeState, error: str | None = None
    ) -> discovery_pb2.DiscoveryRequest:
        request = discovery_pb2.DiscoveryRequest(
            node=self.node,
            type_url=type_url,
            version_info=state.version,
            response_nonce=state.nonce,
            resource_names=sorted(state.names),
        )
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=_INVALID_ARGUMENT, message=error))
        return request

    # -- responses ------------------------------------------------------------------------
    async def _on_response(self, response: Any) -> None:
        type_url = response.type_url
        state = self._states.setdefault(type_url, _TypeState())
        if self.ads.delta:
            resources = self._merge_delta(state, response)
            version = response.system_version_info
        else:
            resources = list(response.resources)
            version = response.version_info
        try:
            await self._apply(type_url, resources)
        except AerakiError as exc:
            self.last_nack = f"{type_url}: {exc}"
            log.warning("xds: rejecting %s version %s: %s", type_url, version, exc)
            self._reply(type_url, state, response.nonce, error=str(exc))
            return
        state.version = version
        state.received = True
        self.updates_applied += 1
        self._reply(type_url, state, response.nonce)
        self._subscribe(TYPE_EDS, self.server.clusters.eds_names)
        self._subscribe(TYPE_RDS, self.server.rds_names)
        self._check_ready()

    def _merge_delta(self, state: _TypeState, response: Any) -> list[any_pb2.Any]:
        held = dict(state.held)
        for resource in response.resources:
            held[resource.name] = (resource.version, resource.resource)
        for name in response.removed_resources:
            held.pop(name, None)
        state.held = held  # committed now; a NACK below still reports it (Envoy keeps it too)
        return [resource for _, resource in held.values()]

    def _reply(
        self, type_url: str, state: _TypeState, nonce: str, error: str | None = None
    ) -> None:
        state.nonce = nonce
        if self.ads.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                node=self.node, type_url=type_url, response_nonce=nonce
            )
            if error is not None:
                request.error_detail.CopyFrom(
                    status_pb2.Status(code=_INVALID_ARGUMENT, message=error)
                )
            self._outbox.put_nowait(request)
        else:
            self._outbox.put_nowait(self._sotw_request(type_url, state, error))

    async def _apply(self, type_url: str, resources: list[any_pb2.Any]) -> None:
        server = self.server
        if type_url == TYPE_CDS:
            ignored = server.clusters.apply_dynamic(clusters_from_resources(resources))
            if ignored:
                log.info("xds: CDS clusters %s shadow static clusters; ignored", ignored)
        elif type_url == TYPE_EDS:
            for resource in resources:
                name, endpoints = endpoints_from_resource(resource)
                server.clusters.apply_assignment(name, endpoints)
        elif type_url == TYPE_LDS:
            problems = await server.apply_listeners(listeners_from_resources(resources))
            if problems:
                raise AerakiError("; ".join(problems))
        elif type_url == TYPE_RDS:
            tables = [route_table_from_resource(resource) for resource in resources]
            for name, table in tables:  # all compiled before any is installed
                server.apply_route_table(name, table)
        else:
            raise AerakiError(f"unsupported resource type {type_url}")

    def _check_ready(self) -> None:
        server = self.server
        if server.is_ready or server.is_draining:
            return
        needed = []
        if self.ads.cds:
            needed.append(TYPE_CDS)
        if self.ads.lds:
            needed.append(TYPE_LDS)
        if server.clusters.eds_names:
            needed.append(TYPE_EDS)
        if server.rds_names:
            needed.append(TYPE_RDS)
        if all(self._states.get(t, _TypeState()).received for t in needed):
            server.is_ready = True
            if self._ready_timer is not None:
                self._ready_timer.cancel()


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
