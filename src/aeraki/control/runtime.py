"""The control-plane runtime: sources → store → config → translate per node → xDS snapshots.

This module only wires the finished pieces together (reference §13.1 startup, §13.4 push
pipeline; style anchors §9 rule 10 "translation is pure, pushing is a pipeline"):

1. one task per config source applies its raw events to a :class:`ResourceStore`; every event
   that changed the store is handed to a :class:`DebouncedPusher` (never blocks the source —
   Aeraki's 100-slot channel could stall, §13.4 quirk);
2. a debounced push rebuilds the :class:`ConfigSnapshot` (:class:`~aeraki.control.push.
   ConfigBuilder`: a bad resource is reported and its last good version stays in force), then
   translates it for every *connected* node key and sets that node's xDS snapshot; a snapshot
   that fails its consistency check is reported and the node keeps the previous one;
3. a node that connects gets its snapshot at once, from the current config (the xDS stream
   answers nothing until then); every push also offers its config to the ``roles``.

Nothing is pushed before every source has sent SYNCED: a partial view would withdraw services
for a moment (the informer ``HasSynced`` rule). Translation is an injected function so the
pipeline can be tested without (and before) the real translator; by default it is
``aeraki.control.translate.translate``, imported when first needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from envoy.config.core.v3 import base_pb2
from google.protobuf.message import Message

from aeraki.control.model import ConfigSnapshot, Problem
from aeraki.control.push import BuildResult, ConfigBuilder, ControlMetrics
from aeraki.control.sources.api import ConfigSource, EventType, ResourceStore
from aeraki.control.status import PushRecord, Status, collect, describe_proxy
from aeraki.control.xds import (
    DebouncedPusher,
    InconsistentSnapshotError,
    ProxyStatus,
    Snapshot,
    SnapshotCache,
    XdsCallbacks,
    XdsServer,
    union,
)
from aeraki.errors import ConfigError
from aeraki.signals import stop_on_signals

if TYPE_CHECKING:
    from aeraki.control.leadership import Role

__all__ = ["ControlPlane", "TranslationResult", "Translator", "translate_options"]

log = logging.getLogger(__name__)

_SYNCED_MARK = "<synced>"


class TranslationResult(Protocol):
    """What a translator returns (``aeraki.control.translate.Translation``)."""

    @property
    def resources(self) -> Sequence[Message]: ...

    @property
    def problems(self) -> Sequence[Any]: ...


#: ``translate(config, node_info, options) -> Translation``.
Translator = Callable[[ConfigSnapshot, Any, Any], TranslationResult]
#: Envoy ``Node`` → what the translator takes as ``node`` (``NodeInfo.from_proto``).
NodeInfoFactory = Callable[[base_pb2.Node], Any]


def _translate_module() -> Any:
    """The real translator, imported on first use (it is optional for pipeline tests)."""
    return importlib.import_module("aeraki.control.translate")


def _real_translate(
    config: ConfigSnapshot, node: Any, options: Any, memo: Any = None
) -> TranslationResult:
    result: TranslationResult = _translate_module().translate(config, node, options, memo)
    return result


class _View:
    """What the last push built for one node view: the translation's memo (incremental
    translation, ``translate/memo.py``) and its snapshot (resources reused by the next)."""

    __slots__ = ("memo", "snapshot")

    def __init__(self, memo: Any) -> None:
        self.memo = memo
        self.snapshot: Snapshot | None = None


def _real_node_info(node: base_pb2.Node) -> Any:
    return _translate_module().NodeInfo.from_proto(node)


def translate_options(**overrides: Any) -> Any:
    """The real translator's ``TranslateOptions(**overrides)``."""
    return _translate_module().TranslateOptions(**overrides)


class _Callbacks(XdsCallbacks):
    """Routes the xDS server's stream events to the control plane."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane

    def on_stream_open(self, status: ProxyStatus) -> None:
        self._plane._on_stream_open(status)

    def on_stream_closed(self, status: ProxyStatus) -> None:
        self._plane._on_stream_closed(status)


class ControlPlane:
    """Config sources in, xDS out, for every connected proxy.

    Args:
        sources: one config source or several (their resources are merged in one store; a
            key present in two sources is last-writer-wins).
        xds_host, xds_port: where the ADS server listens (port 0 = any free port).
        options: translation options (default ``TranslateOptions()`` of the real translator).
        quiet, max_delay: debounce (seconds; §13.4, sized for one machine).
        translator, node_info: injected translation (see module docstring).
        roles: jobs run beside xDS, e.g. the Lease-elected EnvoyFilter writer of Kubernetes
            mode (:class:`aeraki.control.leadership.Role`); none in directory mode.
    """

    def __init__(
        self,
        sources: ConfigSource | Iterable[ConfigSource],
        *,
        xds_host: str = "127.0.0.1",
        xds_port: int = 15010,
        options: Any = None,
        quiet: float = 0.1,
        max_delay: float = 1.0,
        translator: Translator | None = None,
        node_info: NodeInfoFactory | None = None,
        roles: Iterable[Role] = (),
    ) -> None:
        self.roles: tuple[Role, ...] = tuple(roles)
        self.sources: tuple[ConfigSource, ...] = (
            (sources,) if isinstance(sources, ConfigSource) else tuple(sources)
        )
        if not self.sources:
            raise ValueError("ControlPlane needs at least one config source")
        self.xds_host, self.xds_port = xds_host, xds_port
        self._translate: Translator = translator or _real_translate
        self._incremental = translator is None  # only the real translator takes a memo
        self._node_info: NodeInfoFactory = node_info or _real_node_info
        if options is None and translator is None:
            options = translate_options()
        self.options = options
        self.store = ResourceStore()
        self.cache = SnapshotCache(self._key_of)
        self.server = XdsServer(self.cache, _Callbacks(self))
        self.metrics = ControlMetrics()
        self.config: ConfigSnapshot | None = None
        self.last_push: PushRecord | None = None
        self._pusher: DebouncedPusher[frozenset[str]] = DebouncedPusher(
            self._push, union, quiet=quiet, max_delay=max_delay
        )
        self._builder = ConfigBuilder()
        self._nodes: dict[str, base_pb2.Node] = {}
        #: translations of the current config by node view (see ``_translated``).
        self._memo_config: ConfigSnapshot | None = None
        self._memo: dict[tuple[str, bytes], tuple[Any, Snapshot]] = {}
        #: per node view, what the previous config's push built (see ``_translated``).
        self._views: dict[tuple[str, bytes], _View] = {}
        self._synced: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._reported: set[str] = set()
        self._translation_problems: dict[str, tuple[str, ...]] = {}
        self._snapshot_problems: dict[str, str] = {}
        self._source_problems: dict[str, list[str]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Serve xDS and start consuming the sources; returns the bound xDS port."""
        port = await self.server.start(self.xds_host, self.xds_port)
        self._pusher.start()
        for index, source in enumerate(self.sources):
            self._tasks.append(asyncio.create_task(self._consume(index, source)))
        for role in self.roles:
            await role.start()
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Stop roles, sources, pushes and the xDS server (streams end after ``grace`` s)."""
        for role in self.roles:
            await role.stop()  # must not raise (EnvoyFilterLeader.stop only cancels its task)
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._pusher.stop()
        await self.server.stop(grace)

    async def run_until_signalled(self, stop: asyncio.Event | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``stop`` is set), then stop cleanly."""
        with stop_on_signals(stop) as stopping:
            port = await self.start()
            log.info("control plane: xDS on %s:%d (pid %d)", self.xds_host, port, os.getpid())
            try:
                await stopping.wait()
            finally:
                await self.stop(grace=1.0)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def is_synced(self) -> bool:
        """Every source delivered its initial state."""
        return len(self._synced) == len(self.sources)

    # --- sources -----------------------------------------------------------------------------

    def on_source_problem(self, file: str, line: int | None, message: str) -> None:
        """A source's problem callback (``FileSource(on_problem=...)``): count and keep it."""
        self.metrics.source_problems_total += 1
        where = file if line is None else f"{file}:{line}"
        self._source_problems.setdefault(file, []).append(f"{where}: error: {message}")

    async def _consume(self, index: int, source: ConfigSource) -> None:
        try:
            async for event in source.events():
                if event.type is EventType.SYNCED:
                    self._synced.add(index)
                    if self.is_synced:
                        self._pusher.notify(frozenset({_SYNCED_MARK}))
                elif self.store.apply(event):
                    self.metrics.config_events_total += 1
                    self._pusher.notify(frozenset({"/".join(event.key)}))
        except asyncio.CancelledError:
            raise
        except Exception:  # the config in force stays; the operator sees it in the log
            log.exception("config source %d (%s) failed; serving its last state", index, source)

    def _current_source_problems(self) -> list[str]:
        """Problems sources report now (FileSource keeps them per file and clears fixed ones)."""
        out: list[str] = []
        for source in self.sources:
            live = getattr(source, "problems", None)
            if isinstance(live, dict):
                for file, entries in sorted(live.items()):
                    for line, message in entries:
                        where = file if line is None else f"{file}:{line}"
                        out.append(f"{where}: error: {message}")
        if not any(isinstance(getattr(s, "problems", None), dict) for s in self.sources):
            for entries in self._source_problems.values():
                out.extend(entries[-1:])
        return out

    # --- the push pipeline -------------------------------------------------------------------

    def _push(self, changed: frozenset[str]) -> None:
        """A debounced push: rebuild the config, then every connected node's snapshot."""
        if not self.is_synced:
            return
        started = time.perf_counter()
        items = [(key, obj, self.store.origin(*key) or "") for key, obj in self.store.items()]
        result = self._builder.build(items)
        self.config = result.config
        self._report_config(result)
        for role in self.roles:
            role.offer(result.config)  # must not raise (the writer's offer only stores it)
        nodes = sum(self._push_node(key) for key in self.cache.watched_keys())
        self._forget_unused_views()
        duration = time.perf_counter() - started
        self.last_push = PushRecord(time.time(), duration, nodes, self.store.version)
        self.metrics.record_push(duration)
        log.info(
            "push: %d change(s), %d resource(s), %d node snapshot(s) changed in %.1f ms",
            len(changed - {_SYNCED_MARK}),
            len(result.config.resources()),
            nodes,
            duration * 1000,
        )

    def _report_config(self, result: BuildResult) -> None:
        config = result.config
        self.metrics.config_resources = len(config.resources())
        self.metrics.config_fallbacks = len(result.fallbacks)
        current = {p.format(): p for p in config.problems}
        for text, problem in current.items():
            if text in self._reported:
                continue
            if problem.is_error:
                self.metrics.config_errors_total += 1
                log.error("config: %s", text)
            else:
                log.warning("config: %s", text)
        self._reported = set(current)

    def _push_node(self, key: str) -> bool:
        """Translate for one node key and set its snapshot; True when it changed."""
        node, config = self._nodes.get(key), self.config
        if node is None or config is None:
            return False
        try:
            translation, snapshot = self._translated(config, node)
            self._note_translation(key, translation.problems)
            changed = self.cache.set_snapshot(key, snapshot)
        except InconsistentSnapshotError as exc:
            details = "; ".join(f"{path}: {msg}" for path, msg in exc.problems)
            return self._reject(key, f"inconsistent snapshot, previous one kept: {details}")
        except ConfigError as exc:
            return self._reject(key, f"invalid snapshot, previous one kept: {exc}")
        except Exception as exc:  # a translator bug must not stop the other nodes' pushes
            log.exception("push: translation for node %r failed", key)
            return self._reject(key, f"translation failed, previous snapshot kept: {exc!r}")
        self._snapshot_problems.pop(key, None)
        if changed:
            self.metrics.push_nodes_total += 1
        return changed

    def _translated(self, config: ConfigSnapshot, node: base_pb2.Node) -> tuple[Any, Snapshot]:
        """Translation and snapshot for ``node``, shared by every node with the same view.

        Translation reads the node's cluster, metadata and locality (endpoint priorities are
        relative to it), never its id, so proxies that differ only by id (replicas of one
        workload, a fleet of sidecars in one zone) get one translation and one shared
        immutable snapshot per config: 100 such proxies cost one translation and one
        snapshot's memory, not 100.
        """
        if self._memo_config is not config:
            self._memo_config, self._memo = config, {}
        seen = base_pb2.Node(metadata=node.metadata, locality=node.locality)
        view = (node.cluster, seen.SerializeToString(deterministic=True))
        hit = self._memo.get(view)
        if hit is None:
            hit = self._translate_view(config, node, view)
            self._memo[view] = hit
        return hit

    def _translate_view(
        self, config: ConfigSnapshot, node: base_pb2.Node, view: tuple[str, bytes]
    ) -> tuple[Any, Snapshot]:
        """Translate for a view, incrementally: pieces and serialised resources of the view's
        previous translation are reused where their inputs did not change (a MetaRouter edit
        in a 1,000-service mesh rebuilds one route configuration, not 8,000 resources)."""
        info = self._node_info(node)
        if not self._incremental:
            translation = self._translate(config, info, self.options)
            return translation, Snapshot.from_messages(*translation.resources)
        state = self._views.get(view)
        if state is None:
            state = self._views[view] = _View(_translate_module().TranslationMemo())
        translation = _real_translate(config, info, self.options, state.memo)
        snapshot = Snapshot.from_messages(*translation.resources, previous=state.snapshot)
        state.snapshot = snapshot
        return translation, snapshot

    def _forget_unused_views(self) -> None:
        """Drop the incremental state of views no connected node has any more."""
        for view in set(self._views) - set(self._memo):
            del self._views[view]

    def _reject(self, key: str, message: str) -> bool:
        self.metrics.snapshots_rejected_total += 1
        if self._snapshot_problems.get(key) != message:
            log.error("push: node %r: %s", key, message)
        self._snapshot_problems[key] = message
        return False

    def _note_translation(self, key: str, problems: Sequence[Any]) -> None:
        texts = tuple(p.format() if isinstance(p, Problem) else str(p) for p in problems)
        old = set(self._translation_problems.get(key, ()))
        for text in texts:
            if text not in old:
                self.metrics.translation_problems_total += 1
                log.warning("translate: node %r: %s", key, text)
        self._translation_problems[key] = texts

    # --- nodes -------------------------------------------------------------------------------

    def _key_of(self, node: base_pb2.Node) -> str:
        """The cache's node-key function: the node id, remembering the node for translation."""
        key = str(node.id)
        self._nodes[key] = node
        return key

    def _on_stream_open(self, status: ProxyStatus) -> None:
        self.metrics.proxies_connected = len(self.server.proxies())
        if self.config is not None:
            self._push_node(status.node_key)

    def _on_stream_closed(self, status: ProxyStatus) -> None:
        self.metrics.proxies_connected = len(self.server.proxies())
        key = status.node_key
        if key not in self.cache.watched_keys():
            self._nodes.pop(key, None)
            self._translation_problems.pop(key, None)
            self._snapshot_problems.pop(key, None)
            self.cache.clear_snapshot(key)

    # --- status ------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every current problem: config, sources, translation, refused snapshots."""
        out = [p.format() for p in (self.config.problems if self.config else ())]
        out.extend(self._current_source_problems())
        for key in sorted(self._translation_problems):
            out.extend(f"node {key}: {t}" for t in self._translation_problems[key])
        out.extend(f"node {k}: {m}" for k, m in sorted(self._snapshot_problems.items()))
        self.metrics.config_problems = len(out)
        return out

    def status(self) -> Status:
        problems = self.problems()
        return collect(
            config=self.config,
            snapshots=self._snapshots(),
            proxies=self.server.proxies(),
            last_push=self.last_push,
            problems=problems,
            metrics=self.metrics.snapshot(),
        )

    def _snapshots(self) -> dict[str, Snapshot]:
        keys = self.cache.keys()
        return {k: s for k in keys if (s := self.cache.get_snapshot(k)) is not None}

    def in_sync(self, node_id: str | None = None) -> bool:
        """True when a proxy (``node_id``, or every one) is connected and ACKed its snapshot."""
        proxies = [p for p in self.server.proxies() if node_id in (None, p.node_id)]
        return bool(proxies) and all(
            describe_proxy(p, self.cache.get_snapshot(p.node_key)).in_sync for p in proxies
        )

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Poll ``predicate`` (every 20 ms) until true.

        Raises:
            TimeoutError: still false after ``within`` seconds.
        """
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {within}s")
            await asyncio.sleep(0.02)
