"""The Kubernetes API as a config source: list+watch per kind, the reflector algorithm.

Per kind, one task does what client-go's reflector does:
1. list (paginated with ``limit``/``continue``; restarted if a continue token expires), diff the
   result against what this source already emitted — ADDED/MODIFIED/DELETED only for objects that
   differ by ``resourceVersion``, so a relist after 410 never replays unchanged objects;
2. watch from the list's ``resourceVersion`` with ``allowWatchBookmarks=true`` and a randomised
   ``timeoutSeconds`` (so replicas do not reconnect in lock-step); every event and bookmark
   advances the remembered version;
3. when the stream ends or breaks, watch again from the remembered version (no relist, no
   duplicates); on 410 Gone — HTTP status or an ``ERROR`` event with code 410 — relist;
4. other errors back off exponentially with jitter, bounded, reset after a good list or event.

Watch events are normalised against the source's own view: an ADDED for a known object becomes
MODIFIED, a MODIFIED for an unknown one ADDED, a DELETED for an unknown one is dropped, and an
event whose ``resourceVersion`` equals the known one is dropped. Consumers can therefore apply
events blindly to a ``ResourceStore``.

A kind whose API is not served (404: e.g. Istio's CRDs not installed) counts as synced and empty
and is retried at the maximum backoff, so one missing CRD does not hold SYNCED back forever.

Pods are *trimmed* as they arrive (client-go's ``TransformFunc``): only their identity, labels
and ``resourceVersion`` are kept (what the endpoint labels need), so a cluster's Pods cost
little memory, and an update that changes nothing kept (status, conditions — most Pod updates)
emits no event and therefore no push.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from aeraki.control.sources.api import (
    DEFAULT_KINDS,
    EventType,
    JsonDict,
    ResourceEvent,
    WatchedKind,
)
from aeraki.control.sources.kubeclient import ApiError, KubeClient, collection_path

log = logging.getLogger(__name__)

_MAX_PAGES = 100_000
_MIN_HEALTHY_WATCH_SECONDS = 1.0


class _Gone(Exception):
    """The version we hold was compacted away: relist."""


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter, bounded by ``maximum`` (client-go: 0.8 s .. 30 s)."""

    initial: float = 0.8
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    _current: float = 0.0

    def next(self) -> float:
        base = self._current or self.initial
        self._current = min(base * self.factor, self.maximum)
        return min(base * (1.0 + random.random() * self.jitter), self.maximum)

    def reset(self) -> None:
        self._current = 0.0


@dataclass(slots=True)
class _KindState:
    kind: WatchedKind
    path: str
    known: dict[tuple[str, str], JsonDict] = field(default_factory=dict)
    resource_version: str | None = None
    synced: bool = False

    def kept(self, obj: JsonDict) -> JsonDict:
        """What is kept of an object of this kind (trimmed Pods, else all of it)."""
        trim = _TRIMS.get((self.kind.group, self.kind.kind))
        return obj if trim is None else trim(obj)

    def unchanged(self, old: JsonDict | None, new: JsonDict) -> bool:
        """Nothing to emit: the same version, or (trimmed kinds) the same kept content."""
        if old is None:
            return False
        if _rv(old) == _rv(new):
            return True
        return (self.kind.group, self.kind.kind) in _TRIMS and _content(old) == _content(new)


class KubernetesSource:
    """List+watch ``kinds`` (all namespaces, or one) through ``client``.

    The client is the caller's: leader election shares it, so ``close()`` leaves it open.
    ``events()`` may be consumed once.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        kinds: Iterable[WatchedKind] = DEFAULT_KINDS,
        namespace: str | None = None,
        page_size: int = 500,
        watch_timeout: float = 300.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self._backoff_template = backoff or Backoff()
        self._states = [_KindState(k, collection_path(k, namespace)) for k in kinds]
        self._queue: asyncio.Queue[ResourceEvent | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self._synced_sent = False
        self.relists = 0  # lists after the first, per kind summed: 410s and 404 retries
        self.watches = 0  # watch requests started

    @property
    def resource_versions(self) -> dict[str, str | None]:
        return {s.kind.kind: s.resource_version for s in self._states}

    async def events(self) -> AsyncIterator[ResourceEvent]:
        if self._tasks or self._closed.is_set():
            raise RuntimeError("KubernetesSource.events() can be consumed once")
        self._tasks = [asyncio.create_task(self._run(s)) for s in self._states]
        try:
            while (event := await self._queue.get()) is not None:
                yield event
        finally:
            for task in self._tasks:
                task.cancel()

    async def close(self) -> None:
        self._closed.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queue.put_nowait(None)

    # ------------------------------------------------------------------ the reflector loop
    async def _run(self, state: _KindState) -> None:
        backoff = Backoff(
            self._backoff_template.initial,
            self._backoff_template.maximum,
            self._backoff_template.factor,
            self._backoff_template.jitter,
        )
        while not self._closed.is_set():
            delay = 0.0
            try:
                if state.resource_version is None:
                    await self._relist(state)
                    backoff.reset()
                loop = asyncio.get_running_loop()
                started = loop.time()
                got_events = await self._watch(state)
                if got_events:
                    backoff.reset()
                elif loop.time() - started < _MIN_HEALTHY_WATCH_SECONDS:
                    delay = backoff.next()  # a server closing watches at once: don't spin
            except _Gone:
                log.info(
                    "%s: resourceVersion %s expired, relisting",
                    state.kind.kind,
                    state.resource_version,
                )
                state.resource_version = None
            except ApiError as exc:
                if exc.status == 410:
                    state.resource_version = None
                    continue
                if exc.status == 404 and state.resource_version is None:
                    log.warning(
                        "%s: %s not served (%s); retrying", state.kind.kind, state.path, exc
                    )
                    self._apply_list(state, [])  # the kind is gone, and so are its objects
                    delay = backoff.maximum
                elif exc.status == 404:
                    state.resource_version = None  # watch of a removed CRD: relist to find out
                    delay = backoff.next()
                else:
                    log.warning("%s: API error: %s", state.kind.kind, exc)
                    delay = backoff.next()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                log.warning("%s: watch/list failed: %r", state.kind.kind, exc)
                delay = backoff.next()
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay)

    async def _relist(self, state: _KindState) -> None:
        for attempt in range(2):  # a second time when a continue token expires mid-way
            items: list[JsonDict] = []
            token = ""
            try:
                for _ in range(_MAX_PAGES):
                    params = {"limit": str(self.page_size)}
                    if token:
                        params["continue"] = token
                    body = await self.client.request("GET", state.path, params=params)
                    items.extend(body.get("items") or [])
                    meta = body.get("metadata") or {}
                    token = str(meta.get("continue") or "")
                    if not token:
                        break
            except ApiError as exc:
                if exc.status == 410 and token and attempt == 0:
                    continue
                raise
            if state.synced:
                self.relists += 1
            state.resource_version = str(meta["resourceVersion"])
            self._apply_list(state, items)
            return

    def _apply_list(self, state: _KindState, items: list[JsonDict]) -> None:
        """Emit the difference between ``items`` and what was emitted before."""
        fresh: dict[tuple[str, str], JsonDict] = {}
        for item in items:
            item.setdefault("kind", state.kind.kind)  # the core API omits these on list items
            item.setdefault("apiVersion", state.kind.api_version)
            meta = item.get("metadata") or {}
            fresh[(str(meta.get("namespace", "")), str(meta.get("name", "")))] = state.kept(item)
        for key in [k for k in state.known if k not in fresh]:
            self._emit(state, EventType.DELETED, state.known.pop(key))
        for key, item in fresh.items():
            old = state.known.get(key)
            unchanged = state.unchanged(old, item)
            state.known[key] = item
            if not unchanged:
                self._emit(state, EventType.ADDED if old is None else EventType.MODIFIED, item)
        if not state.synced:
            state.synced = True
            if not self._synced_sent and all(s.synced for s in self._states):
                self._synced_sent = True
                self._queue.put_nowait(ResourceEvent.synced(f"k8s:{self.client.config.server}"))

    async def _watch(self, state: _KindState) -> bool:
        """Watch from the held version until the stream ends; True if anything arrived."""
        assert state.resource_version is not None
        timeout = self.watch_timeout * (1.0 + random.random())
        params = {
            "watch": "true",
            "resourceVersion": state.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(timeout)),
        }
        self.watches += 1
        got = False
        stream = self.client.stream(state.path, params, read_timeout=timeout + 30.0)
        async with contextlib.aclosing(stream):
            async for event in stream:
                got = True
                self._on_watch_event(state, event)
        return got

    def _on_watch_event(self, state: _KindState, event: JsonDict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone()
            raise ApiError(int(code or 0), str(obj.get("reason", "")), str(obj.get("message", "")))
        rv = _rv(obj)
        if kind == "BOOKMARK":
            state.resource_version = rv or state.resource_version
            return
        meta = obj["metadata"]
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        old = state.known.get(key)
        if kind == "DELETED":
            if old is not None:
                del state.known[key]
                self._emit(state, EventType.DELETED, state.kept(obj))
        elif kind in ("ADDED", "MODIFIED"):
            kept = state.kept(obj)
            if not state.unchanged(old, kept):
                self._emit(state, EventType.ADDED if old is None else EventType.MODIFIED, kept)
            state.known[key] = kept
        else:
            raise ValueError(f"unknown watch event type {kind!r}")
        state.resource_version = rv or state.resource_version

    def _emit(self, state: _KindState, type_: EventType, obj: JsonDict) -> None:
        meta = obj.get("metadata") or {}
        origin = f"k8s:{state.kind.plural}@{_rv(obj)}"
        self._queue.put_nowait(
            ResourceEvent(
                type_,
                str(obj.get("kind") or state.kind.kind),
                str(obj.get("apiVersion") or state.kind.api_version),
                str(meta.get("namespace", "")),
                str(meta.get("name", "")),
                obj,
                origin,
            )
        )


def _rv(obj: JsonDict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


_POD_METADATA = ("name", "namespace", "labels", "resourceVersion")


def _trim_pod(obj: JsonDict) -> JsonDict:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Pod"),
        "metadata": {k: meta[k] for k in _POD_METADATA if k in meta},
    }


#: (group, kind) -> what to keep of its objects (module docstring).
_TRIMS: dict[tuple[str, str], Callable[[JsonDict], JsonDict]] = {("", "Pod"): _trim_pod}


def _content(obj: JsonDict) -> JsonDict:
    """``obj`` without its ``resourceVersion``: what a trimmed kind's consumers see."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}
