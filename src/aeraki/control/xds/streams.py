"""Per-stream xDS protocol state, without I/O: requests in, responses out.

One object per ADS stream, in two flavours sharing the bookkeeping:

- :class:`SotwStream` — state of the world (``StreamAggregatedResources``): every response
  carries the full set of subscribed resources of its type, so removing a listener or cluster
  means leaving it out of the next response.
- :class:`DeltaStream` — incremental (``DeltaAggregatedResources``): only changed resources are
  sent, removals are named in ``removed_resources``, and a reconnecting client's
  ``initial_resource_versions`` spare it the resources it already has.

The rules both follow (xDS protocol, "ACK and NACK semantics"):

- at most one unacknowledged response per type (go-control-plane does the same): a change that
  arrives while a response is in flight is sent after the ACK/NACK, merged with later changes;
- a request whose ``response_nonce`` is not the last one sent is stale and ignored;
- a NACK (``error_detail`` set) is recorded with its reason; the stream keeps what it sent as
  "sent" so the same version is not resent — only a snapshot change (or a subscription change)
  produces a new response;
- the first request of each type is always answered, even with nothing in it, because Envoy's
  initialisation waits for that first response;
- SotW responses of the types other than LDS and CDS carry only what the client lacks: the
  resources that changed since it was last sent them, and the names it newly subscribed to.
  The protocol allows it ("Grouping Resources into Responses": only Listener and Cluster
  responses must hold the whole state; for the others, absence deletes nothing), and it is
  what keeps one MetaRouter edit from re-sending 1,000 route configurations to every proxy.
  The changed names between two snapshot tables are computed once and shared by every
  stream (:func:`changed_names`).

Keeping this sans-I/O makes every rule testable without gRPC, and keeps server.py to plumbing.
"""

from __future__ import annotations

import enum
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from aeraki.control.xds.snapshot import WILDCARD_TYPES, Resource, Snapshot, ordered_types

__all__ = [
    "DeltaStream",
    "Outcome",
    "ProxyStatus",
    "SotwStream",
    "StreamKind",
    "TypeStatus",
]

_WILDCARD = "*"


class StreamKind(enum.Enum):
    SOTW = "sotw"
    DELTA = "delta"


class Outcome(enum.Enum):
    """What a request meant."""

    REQUEST = "request"  # a subscription (first request, or changed names)
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"  # answers a response that has since been superseded; ignored


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """One type URL on one stream, for the status view."""

    type_url: str
    wildcard: bool
    subscribed: tuple[str, ...]
    sent_version: str
    acked_version: str
    acks: int
    nacks: int
    last_nack_reason: str
    last_nack_version: str


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """A connected proxy (one ADS stream) as the status view shows it."""

    stream_id: int
    kind: StreamKind
    node_id: str
    node_cluster: str
    node_key: str
    peer: str
    connected_at: float
    types: Mapping[str, TypeStatus]

    @property
    def subscribed_types(self) -> tuple[str, ...]:
        return tuple(self.types)

    def acked_version(self, type_url: str) -> str:
        """Last ACKed version of ``type_url`` ("" when none)."""
        status = self.types.get(type_url)
        return status.acked_version if status else ""


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    #: SotW: a frozenset of interned names (shared with ``sent_key``, so no copy per push);
    #: delta: a set updated in place.
    names: set[str] | frozenset[str] = field(default_factory=set)
    initial: bool = True  # no response sent yet for the current subscription
    last_nonce: str = ""
    pending_nonce: str = ""
    sent_version: str = ""
    sent_key: tuple[str, frozenset[str] | None] | None = None  # SotW: (version, names)
    #: SotW, non-wildcard: the snapshot table last sent (the client holds its version of
    #: every subscribed name in it), and names subscribed since then (owed in full).
    sent_table: Mapping[str, Resource] | None = None
    fresh: set[str] = field(default_factory=set)
    acked_version: str = ""
    acks: int = 0
    nacks: int = 0
    nack_reason: str = ""
    nack_version: str = ""
    client_versions: dict[str, str] = field(default_factory=dict)  # delta: what the client has
    told_absent: set[str] = field(default_factory=set)  # delta: names reported as nonexistent

    def status(self, type_url: str) -> TypeStatus:
        return TypeStatus(
            type_url=type_url,
            wildcard=self.wildcard,
            subscribed=tuple(sorted(self.names)),
            sent_version=self.sent_version,
            acked_version=self.acked_version,
            acks=self.acks,
            nacks=self.nacks,
            last_nack_reason=self.nack_reason,
            last_nack_version=self.nack_version,
        )

    def settle(self, nonce: str, error: str | None, version: str) -> Outcome:
        """Apply an ACK/NACK of ``nonce``; stale nonces change nothing."""
        if nonce != self.last_nonce:
            return Outcome.STALE
        self.pending_nonce = ""
        if error is not None:
            self.nacks += 1
            self.nack_reason = error
            self.nack_version = self.sent_version
            return Outcome.NACK
        self.acks += 1
        self.acked_version = version
        return Outcome.ACK


class _Stream:
    """Bookkeeping shared by both flavours: node identity, per-type state, nonces."""

    kind: StreamKind

    def __init__(self, stream_id: int, peer: str, clock: Callable[[], float] = time.time) -> None:
        self.stream_id = stream_id
        self.peer = peer
        self.connected_at = clock()
        self.node: base_pb2.Node | None = None
        self.node_key = ""
        self._types: dict[str, _TypeState] = {}
        self._nonces = itertools.count(1)

    def bind(self, node: base_pb2.Node, node_key: str) -> None:
        """Record the node of the stream's first request (later requests may omit it)."""
        self.node = node
        self.node_key = node_key

    def status(self) -> ProxyStatus:
        node = self.node or base_pb2.Node()
        return ProxyStatus(
            stream_id=self.stream_id,
            kind=self.kind,
            node_id=str(node.id),
            node_cluster=str(node.cluster),
            node_key=self.node_key,
            peer=self.peer,
            connected_at=self.connected_at,
            types=MappingProxyType({t: s.status(t) for t, s in self._types.items()}),
        )

    def type_status(self, type_url: str) -> TypeStatus | None:
        state = self._types.get(type_url)
        return state.status(type_url) if state else None

    def _next_nonce(self, state: _TypeState) -> str:
        nonce = str(next(self._nonces))
        state.last_nonce = state.pending_nonce = nonce
        state.initial = False
        return nonce

    def _ready_types(self) -> list[tuple[str, _TypeState]]:
        """Types that may be sent now (no response awaiting its ACK), in push order."""
        return [
            (t, self._types[t])
            for t in ordered_types(self._types)
            if not self._types[t].pending_nonce
        ]


class SotwStream(_Stream):
    """State-of-the-world ADS stream."""

    kind = StreamKind.SOTW

    def on_request(self, req: discovery_pb2.DiscoveryRequest) -> Outcome:
        """Apply one request: subscription names, then ACK/NACK of the nonce it answers."""
        state = self._types.get(req.type_url)
        if state is None:
            state = self._types[req.type_url] = _TypeState()
        outcome = Outcome.REQUEST
        if req.response_nonce:
            error = req.error_detail.message if req.HasField("error_detail") else None
            outcome = state.settle(req.response_nonce, error, req.version_info)
            if outcome is Outcome.STALE:
                return outcome
        else:
            state.initial = True  # a fresh subscription is always answered
            state.pending_nonce = ""
            state.sent_table = None
        # Interned: proxies subscribing to the same thousands of names share one copy of each.
        names = frozenset(sys.intern(n) for n in req.resource_names)
        state.wildcard = req.type_url in WILDCARD_TYPES and (not names or _WILDCARD in names)
        names = names - {_WILDCARD} if _WILDCARD in names else names
        if names != state.names:
            if state.sent_table is not None:
                state.fresh.update(names - state.names)  # "must resend newly requested" ones
            state.names = names
        return outcome

    def responses(self, snapshot: Snapshot) -> list[discovery_pb2.DiscoveryResponse]:
        """Responses owed for ``snapshot``, in push order (may be empty)."""
        out = []
        for type_url, state in self._ready_types():
            if not state.wildcard and not state.names:
                continue
            version = snapshot.version(type_url)
            names = state.names
            key = (version, None if state.wildcard else frozenset(names))
            if key == state.sent_key and not state.initial:
                continue
            table = snapshot.resources(type_url)
            if state.wildcard:
                chosen: list[Resource] | Iterable[Resource] = table.values()
            elif state.initial or state.sent_table is None:
                chosen = _pick(table, state.names)
            else:
                chosen = _owed(state.sent_table, table, state.names, state.fresh)
            state.sent_table = None if state.wildcard else table
            state.fresh = set()
            state.sent_key = key
            state.sent_version = version
            out.append(
                discovery_pb2.DiscoveryResponse(
                    version_info=version,
                    type_url=type_url,
                    nonce=self._next_nonce(state),
                    resources=[res.packed for res in chosen],
                )
            )
        return out


class DeltaStream(_Stream):
    """Incremental (delta) ADS stream."""

    kind = StreamKind.DELTA

    def on_request(self, req: discovery_pb2.DeltaDiscoveryRequest) -> Outcome:
        """Apply one request: (un)subscriptions, initial versions, ACK/NACK."""
        state = self._types.get(req.type_url)
        first = state is None
        if state is None:
            state = self._types[req.type_url] = _TypeState()
            state.client_versions = dict(req.initial_resource_versions)
        outcome = Outcome.REQUEST
        if req.response_nonce:
            error = req.error_detail.message if req.HasField("error_detail") else None
            outcome = state.settle(req.response_nonce, error, state.sent_version)
        subscribe = set(req.resource_names_subscribe)
        if first and not subscribe and req.type_url in WILDCARD_TYPES:
            state.wildcard = True  # legacy wildcard: first request names nothing
        if _WILDCARD in subscribe:
            state.wildcard = True
        names = set(state.names)
        names |= {sys.intern(n) for n in subscribe - {_WILDCARD}}
        for name in req.resource_names_unsubscribe:
            if name == _WILDCARD:
                state.wildcard = False
                continue
            names.discard(name)
            state.client_versions.pop(name, None)  # the client forgets it by itself
            state.told_absent.discard(name)
        state.names = names
        return outcome

    def responses(self, snapshot: Snapshot) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Responses owed for ``snapshot``: changed resources and removals, in push order."""
        out = []
        for type_url, state in self._ready_types():
            table = snapshot.resources(type_url)
            wanted = dict(table) if state.wildcard else {}
            wanted.update(_pick_named(table, state.names))
            updated = [r for n, r in wanted.items() if state.client_versions.get(n) != r.version]
            removed = [n for n in state.client_versions if n not in wanted]
            absent = sorted(
                n for n in state.names - state.told_absent if n not in table
            )  # "does not exist" is said once, so the client stops waiting for it
            if not (updated or removed or absent or state.initial):
                continue
            for res in updated:
                state.client_versions[res.name] = res.version
                state.told_absent.discard(res.name)
            for name in removed:
                del state.client_versions[name]
            state.told_absent.update(absent)
            state.sent_version = snapshot.version(type_url)
            out.append(
                discovery_pb2.DeltaDiscoveryResponse(
                    system_version_info=state.sent_version,
                    type_url=type_url,
                    nonce=self._next_nonce(state),
                    resources=[
                        discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed)
                        for r in updated
                    ],
                    removed_resources=[*removed, *(n for n in absent if n not in removed)],
                )
            )
        return out


def _pick(table: Mapping[str, Resource], names: AbstractSet[str]) -> list[Resource]:
    return [table[n] for n in sorted(names) if n in table]


def _owed(
    sent: Mapping[str, Resource],
    table: Mapping[str, Resource],
    names: AbstractSet[str],
    fresh: AbstractSet[str],
) -> list[Resource]:
    """Of ``names``: those changed (or added) between ``sent`` and ``table``, and ``fresh``."""
    wanted = set(changed_names(sent, table))
    wanted.intersection_update(names)
    wanted.update(fresh)
    return _pick(table, wanted)


#: (old table, new table, changed names): the tables are kept so their ids stay unique.
_ChangedEntry = tuple[Mapping[str, Resource], Mapping[str, Resource], frozenset[str]]
_CHANGED: dict[tuple[int, int], _ChangedEntry] = {}
_CHANGED_SLOTS = 8


def changed_names(old: Mapping[str, Resource], new: Mapping[str, Resource]) -> frozenset[str]:
    """Names in ``new`` whose resource is absent from ``old`` or has another version.

    Memoised per (old, new) pair: every stream of a push diffs the same two snapshot tables,
    so 100 proxies cost one comparison of 3,000 entries, not 100.
    """
    if old is new:
        return frozenset()
    key = (id(old), id(new))
    hit = _CHANGED.get(key)
    if hit is not None and hit[0] is old and hit[1] is new:
        return hit[2]
    changed = frozenset(
        name
        for name, res in new.items()
        if (was := old.get(name)) is None or (was is not res and was.version != res.version)
    )
    if len(_CHANGED) >= _CHANGED_SLOTS:
        del _CHANGED[next(iter(_CHANGED))]
    _CHANGED[key] = (old, new, changed)
    return changed


def _pick_named(table: Mapping[str, Resource], names: AbstractSet[str]) -> dict[str, Resource]:
    return {n: table[n] for n in sorted(names) if n in table}
