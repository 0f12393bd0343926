"""The contract between config sources and the rest of the control plane.

A source (a watched directory, the Kubernetes API, later ZooKeeper) speaks in *raw* resource
events: JSON-like dicts exactly as the user or the API server wrote them. Typing and validation
happen downstream (``aeraki.control.model``), so a source never rejects a resource for its
content — only for not being a resource at all (no kind, no name). Keeping sources raw is what
lets one store feed ``aeraki validate``, the translator and the status view alike.

After its initial list a source emits one ``SYNCED`` event: before it, the store holds a partial
view, and translating a partial view would push a config that drops services for a moment (the
reason informers have ``HasSynced``).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

JsonDict = dict[str, Any]

# (file or URL, 1-based line or None, message). Files report parse errors through it; the
# Kubernetes source reports objects it cannot key (no name) the same way.
ProblemCallback = Callable[[str, int | None, str], None]


class EventType(enum.StrEnum):
    """Watch event types, spelled as the Kubernetes watch API spells them, plus SYNCED."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    SYNCED = "SYNCED"


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    """One change to one resource, or the SYNCED marker (empty kind/name, ``obj == {}``).

    ``obj`` is the full object (for DELETED: its last known state). ``origin`` says where it came
    from: ``path:line`` for files, ``k8s:<plural>@<resourceVersion>`` for the API server, so a
    problem found downstream can point the user at the source.
    """

    type: EventType
    kind: str
    api_version: str
    namespace: str
    name: str
    obj: JsonDict
    origin: str

    @property
    def key(self) -> ResourceKey:
        return (self.kind, self.namespace, self.name)

    @classmethod
    def synced(cls, origin: str) -> ResourceEvent:
        return cls(EventType.SYNCED, "", "", "", "", {}, origin)


ResourceKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, slots=True)
class WatchedKind:
    """A kind a source delivers: group ``""`` is the core API (``/api/v1``)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


METAPROTOCOL_GROUP = "metaprotocol.aeraki.io"
ISTIO_NETWORKING_GROUP = "networking.istio.io"

# Istio serves v1alpha3, v1beta1 and (since 1.22) v1 of the same objects; v1alpha3 is the one
# every supported Istio still serves, so it is the default to *watch*. Files accept any version.
DEFAULT_KINDS: tuple[WatchedKind, ...] = (
    WatchedKind(METAPROTOCOL_GROUP, "v1alpha1", "MetaRouter", "metarouters"),
    WatchedKind(METAPROTOCOL_GROUP, "v1alpha1", "ApplicationProtocol", "applicationprotocols"),
    WatchedKind(ISTIO_NETWORKING_GROUP, "v1alpha3", "ServiceEntry", "serviceentries"),
    WatchedKind(ISTIO_NETWORKING_GROUP, "v1alpha3", "DestinationRule", "destinationrules"),
    WatchedKind(ISTIO_NETWORKING_GROUP, "v1alpha3", "VirtualService", "virtualservices"),
    WatchedKind("", "v1", "Service", "services"),
    WatchedKind("", "v1", "Endpoints", "endpoints"),
    # Pods only for their labels: endpoint labels for DestinationRule subsets (joined through
    # the Endpoints' targetRef, aeraki.control.model.kubernetes).
    WatchedKind("", "v1", "Pod", "pods"),
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """Split an apiVersion: ``"a.io/v1"`` -> ``("a.io", "v1")``; ``"v1"`` -> ``("", "v1")``.

    The core API has no group, which is why it lives under ``/api`` instead of ``/apis``.
    """
    group, _, version = api_version.rpartition("/")
    return group, version


@runtime_checkable
class ConfigSource(Protocol):
    """A stream of raw resource events; ``events()`` is consumed once, ``close()`` ends it."""

    def events(self) -> AsyncIterator[ResourceEvent]: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class StoredResource:
    api_version: str
    obj: JsonDict
    origin: str


@dataclass(slots=True)
class ResourceStore:
    """The current raw objects by (kind, namespace, name), plus a change counter to await.

    ``version`` increases by one for every event that changed the store (an ADDED for an
    identical object does not count), so a consumer remembers the version it translated and
    awaits ``wait_for_change(that_version)``: changes that land while it works are never lost,
    and a burst of changes wakes it once.
    """

    version: int = 0
    synced: bool = False
    _objects: dict[ResourceKey, StoredResource] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, event: ResourceEvent) -> bool:
        """Apply one event; True when it changed the store. Safe to call from sync code."""
        if event.type is EventType.SYNCED:
            if self.synced:
                return False
            self.synced = True
        elif event.type is EventType.DELETED:
            if self._objects.pop(event.key, None) is None:
                return False
        else:
            old = self._objects.get(event.key)
            if old is not None and old.obj == event.obj and old.api_version == event.api_version:
                return False
            self._objects[event.key] = StoredResource(event.api_version, event.obj, event.origin)
        self.version += 1
        self._notify()
        return True

    def _notify(self) -> None:
        # Swap-and-set: every waiter holding the old event wakes; later waiters get a fresh one.
        # An Event (not a Condition) because apply() must work from synchronous code.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    async def wait_for_change(self, since: int) -> int:
        """Wait until ``version > since`` and return the new version (bound it with
        ``asyncio.timeout``)."""
        await self._wait(lambda: self.version > since)
        return self.version

    async def wait_synced(self) -> None:
        await self._wait(lambda: self.synced)

    async def consume(self, source: ConfigSource) -> None:
        """Apply every event of ``source`` until it ends (run it as a task; cancel to stop)."""
        async for event in source.events():
            self.apply(event)

    def get(self, kind: str, namespace: str, name: str) -> JsonDict | None:
        found = self._objects.get((kind, namespace, name))
        return None if found is None else found.obj

    def origin(self, kind: str, namespace: str, name: str) -> str | None:
        found = self._objects.get((kind, namespace, name))
        return None if found is None else found.origin

    def items(self, kind: str | None = None) -> list[tuple[ResourceKey, JsonDict]]:
        """A sorted snapshot (sorted so translation output does not depend on arrival order)."""
        keys = sorted(key for key in self._objects if kind is None or key[0] == kind)
        return [(key, self._objects[key].obj) for key in keys]

    def keys(self) -> Iterable[ResourceKey]:
        return self._objects.keys()

    def __len__(self) -> int:
        return len(self._objects)

    def as_mapping(self) -> Mapping[ResourceKey, JsonDict]:
        return {key: stored.obj for key, stored in self._objects.items()}
