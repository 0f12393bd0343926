"""A directory of YAML manifests, watched: the standalone (embedded) config source.

Change detection is **event-driven** on Linux (inotify, :mod:`.dirwatch`): a saved manifest is
re-read as soon as the kernel says it was written or renamed into place — only that file, not
the tree — so a MetaRouter edit reaches the push pipeline in about a millisecond instead of
half a polling interval. A slow **safety rescan** (``rescan_interval``, default 10 s) still
walks the tree for what inotify cannot see: network filesystems, bind mounts, a symlink whose
target changes outside the tree. Kubernetes ConfigMap volumes (files reached through a
``..data`` symlink swapped by rename) trigger a full rescan on the swap.

Where inotify is unavailable (not Linux, ``fs.inotify.max_user_watches`` reached, the root
missing at start) or ``use_inotify=False``, the source **polls** every ``interval`` (0.5 s):
one ``stat`` per file per interval, no dependency.

A file is re-read when an event names it, or — on a scan — when its (mtime, size, inode)
changed or its mtime is within ``_RACY_NS`` of now (git's "racily clean" rule: a rewrite within
the filesystem's timestamp granularity can keep mtime and size). It is re-parsed only when the
content hash changed.

Hidden files and directories (``.*``) are skipped: editors' swap files, and the ``..2024_…``
directories of ConfigMap volumes (their files are seen through the top-level symlinks).

Per-resource diffing: each file's last good documents are kept; after a scan the merged view of
all files is compared to what was emitted, so editing one MetaRouter in a multi-document file
emits one MODIFIED. A file that fails to parse keeps its last good documents (a half-saved file
must not withdraw routes from proxies) and is reported through ``on_problem``; a deleted file
withdraws its resources. Only object content is compared: a document that merely moved to
another line emits nothing (its ``origin`` line in the store may then be stale).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from aeraki.control.sources.api import (
    DEFAULT_KINDS,
    EventType,
    JsonDict,
    ProblemCallback,
    ResourceEvent,
    ResourceKey,
    WatchedKind,
    split_api_version,
)
from aeraki.control.sources.dirwatch import Changes, DirectoryWatcher
from aeraki.control.sources.inotify import InotifyUnavailable

log = logging.getLogger(__name__)

_SUFFIXES = (".yaml", ".yml")
#: Full safety rescan period while inotify reports changes (what inotify cannot see).
DEFAULT_RESCAN_INTERVAL = 10.0
_RACY_NS = 2_000_000_000
_MAX_FILE_BYTES = 16 * 1024 * 1024  # a manifest larger than this is a mistake, not config

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader without the timestamp resolver: Kubernetes reads YAML as JSON, so
    ``creationTimestamp: 2024-01-01T00:00:00Z`` must stay a string, not become a datetime."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


@dataclass(frozen=True, slots=True)
class ParsedDoc:
    key: ResourceKey
    api_version: str
    obj: JsonDict
    line: int  # 1-based line of the document's first node


@dataclass(slots=True)
class ParseResult:
    docs: list[ParsedDoc] = field(default_factory=list)
    problems: list[tuple[int | None, str]] = field(default_factory=list)  # docs skipped
    error: tuple[int | None, str] | None = None  # the file as a whole is not YAML


def is_manifest(name: str) -> bool:
    """A file name the source reads: a YAML suffix, not hidden (editors' swap files)."""
    return name.endswith(_SUFFIXES) and not name.startswith(".")


def parse_manifests(
    text: str,
    *,
    default_namespace: str = "default",
    kinds: Iterable[WatchedKind] | None = DEFAULT_KINDS,
) -> ParseResult:
    """Parse a multi-document manifest; documents of other kinds are skipped silently.

    Pure and synchronous so ``aeraki validate`` can use it on files it is given.
    """
    wanted = None if kinds is None else {(k.group, k.kind): k for k in kinds}
    result = ParseResult()
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            data = loader.construct_document(node)
            for obj in _expand_list(data):
                _add_doc(result, obj, line, default_namespace, wanted)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = None if mark is None else mark.line + 1
        result.error = (where, f"invalid YAML: {exc.problem or exc.context or exc}")
    except yaml.YAMLError as exc:
        result.error = (None, f"invalid YAML: {exc}")
    finally:
        loader.dispose()
    return result


def _expand_list(data: object) -> list[object]:
    """``kind: List`` (what ``kubectl get -o yaml`` writes) holds its resources in ``items``."""
    if (
        isinstance(data, dict)
        and data.get("kind") == "List"
        and isinstance(data.get("items"), list)
    ):
        return list(data["items"])
    return [] if data is None else [data]


def _add_doc(
    result: ParseResult,
    obj: object,
    line: int,
    default_namespace: str,
    wanted: dict[tuple[str, str], WatchedKind] | None,
) -> None:
    if not isinstance(obj, dict):
        result.problems.append((line, f"a manifest must be a mapping, got {type(obj).__name__}"))
        return
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        result.problems.append((line, "a manifest needs string 'apiVersion' and 'kind'"))
        return
    group, _ = split_api_version(api_version)
    watched = None if wanted is None else wanted.get((group, kind))
    if wanted is not None and watched is None:
        log.debug("skipping %s %s at line %d: kind not watched", api_version, kind, line)
        return
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        result.problems.append((line, f"{kind}: 'metadata.name' is required"))
        return
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if watched is not None and not watched.namespaced:
        namespace = ""
    elif not isinstance(namespace, str) or not namespace:
        namespace = default_namespace
    result.docs.append(ParsedDoc((kind, namespace, name), api_version, obj, line))


@dataclass(slots=True)
class _FileState:
    signature: tuple[int, int, int]  # mtime_ns, size, inode
    digest: bytes
    docs: list[ParsedDoc]  # the last GOOD parse
    broken: bool = False


_Problem = tuple[str, int | None, str]  # file, line, message


@dataclass(slots=True)
class WatchStats:
    """How the source learnt about changes (status view, tests)."""

    full_scans: int = 0  # the initial scan, polls, safety rescans, rescans events asked for
    path_scans: int = 0  # re-reads of the files inotify named
    overflows: int = 0  # inotify queue overflows (each answered by a full rescan)


@dataclass(slots=True)
class _Scan:
    events: list[ResourceEvent]
    problems: list[_Problem]


class FileSource:
    """Watch ``root`` (a directory, scanned recursively, or one file) for manifests.

    Args:
        interval: polling period (s) when inotify is not used.
        rescan_interval: full safety rescan period (s) while inotify is used.
        use_inotify: ``False`` forces polling (tests, filesystems inotify misreports).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        interval: float = 0.5,
        rescan_interval: float = DEFAULT_RESCAN_INTERVAL,
        use_inotify: bool = True,
        kinds: Iterable[WatchedKind] | None = DEFAULT_KINDS,
        default_namespace: str = "default",
        on_problem: ProblemCallback | None = None,
    ) -> None:
        self.root = Path(root)
        self.interval = interval
        self.rescan_interval = rescan_interval
        self.use_inotify = use_inotify
        self.kinds = None if kinds is None else tuple(kinds)
        self.default_namespace = default_namespace
        self.on_problem = on_problem
        self.problems: dict[str, list[tuple[int | None, str]]] = {}  # current, per file
        #: "inotify" or "polling" once ``events()`` started (status, tests).
        self.mode = ""
        self.stats = WatchStats()
        self._files: dict[Path, _FileState] = {}
        self._emitted: dict[ResourceKey, ParsedDoc] = {}
        self._origins: dict[ResourceKey, Path] = {}
        self._reported_duplicates: set[tuple[ResourceKey, Path, int]] = set()
        self._closed = asyncio.Event()

    async def events(self) -> AsyncIterator[ResourceEvent]:
        # Watch before the first scan: a change made while it runs is then seen afterwards.
        watcher = self._start_watcher()
        try:
            scan = await asyncio.to_thread(self._scan)
            for event in self._deliver(scan):
                yield event
            yield ResourceEvent.synced(f"file:{self.root}")
            while not self._closed.is_set():
                if watcher is not None and not watcher.active:
                    watcher, self.mode = None, "polling"
                changes = await self._next_changes(watcher)
                if changes is None:
                    return
                if changes.full:
                    scan = await asyncio.to_thread(self._scan)
                    if watcher is not None:
                        watcher.sync()
                        self.stats.overflows = watcher.overflows
                else:
                    scan = await asyncio.to_thread(self._scan_paths, changes.paths)
                for event in self._deliver(scan):
                    yield event
        finally:
            if watcher is not None:
                watcher.close()

    async def _next_changes(self, watcher: DirectoryWatcher | None) -> Changes | None:
        """Wait for changes (or the next rescan); ``None`` once closed."""
        period = self.interval if watcher is None else self.rescan_interval
        waits = [asyncio.ensure_future(self._closed.wait())]
        if watcher is not None:
            waits.append(asyncio.ensure_future(watcher.changed.wait()))
        try:
            await asyncio.wait(waits, timeout=period, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if self._closed.is_set():
            return None
        if watcher is not None and watcher.changed.is_set():
            return watcher.take()
        return Changes(full=True)  # the poll / safety rescan

    def _start_watcher(self) -> DirectoryWatcher | None:
        if not self.use_inotify:
            self.mode = "polling"
            return None
        watcher = DirectoryWatcher(self.root, is_manifest)
        try:
            watcher.start()
        except (InotifyUnavailable, OSError) as exc:
            log.warning(
                "manifests in %s: inotify unavailable (%s); polling every %.2f s",
                self.root,
                exc,
                self.interval,
            )
            self.mode = "polling"
            return None
        log.info("manifests in %s: watching %d directories (inotify)", self.root, watcher.watches)
        self.mode = "inotify"
        return watcher

    async def close(self) -> None:
        self._closed.set()

    def _deliver(self, scan: _Scan) -> list[ResourceEvent]:
        for path, line, message in scan.problems:
            where = path if line is None else f"{path}:{line}"
            log.warning("manifest problem at %s: %s", where, message)
            if self.on_problem is not None:
                self.on_problem(path, line, message)
        return scan.events

    def _list_files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath, f) for f in filenames if is_manifest(f))
        return sorted(found)

    def _scan(self) -> _Scan:
        """One pass (runs in a worker thread): re-read changed files, diff the merged view."""
        self.stats.full_scans += 1
        problems: list[_Problem] = []
        now_ns = time.time_ns()
        present = self._list_files()
        changed = False
        for path in set(self._files) - set(present):
            del self._files[path]
            self.problems.pop(str(path), None)
            changed = True
        for path in present:
            changed |= self._refresh(path, now_ns, problems)
        if not changed:
            # Nothing was re-read: the merged view is the one already emitted. Skipping the
            # diff keeps an idle scan of 2,000 files at stat() cost (benchmarks/RESULTS.md).
            return _Scan([], problems)
        return _Scan(self._diff(problems), problems)

    def _scan_paths(self, paths: Iterable[Path]) -> _Scan:
        """Re-read the files an event named (runs in a worker thread); diff if one changed.

        The event says the file changed, so it is re-read whatever its signature; a path that
        is no longer a readable manifest file withdraws what it held.
        """
        self.stats.path_scans += 1
        problems: list[_Problem] = []
        changed = False
        for path in sorted(paths):
            if path.is_file() and (path == self.root or self._under_root(path)):
                changed |= self._refresh(path, time.time_ns(), problems, force=True)
            elif self._files.pop(path, None) is not None:
                self.problems.pop(str(path), None)
                changed = True
        if not changed:
            return _Scan([], problems)
        return _Scan(self._diff(problems), problems)

    def _under_root(self, path: Path) -> bool:
        """``path`` is a manifest the full scan would list (no hidden part, under root)."""
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            return False
        return bool(parts) and not any(p.startswith(".") for p in parts)

    def _refresh(
        self,
        path: Path,
        now_ns: int,
        problems: list[tuple[str, int | None, str]],
        *,
        force: bool = False,
    ) -> bool:
        """Re-read ``path`` if its signature moved (or ``force``); True when its parsed state
        changed."""
        try:
            st = path.stat()
        except OSError:  # vanished between listing and stat: next scan drops it
            return False
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        state = self._files.get(path)
        racy = now_ns - st.st_mtime_ns < _RACY_NS
        if state is not None and state.signature == signature and not racy and not force:
            return False
        try:
            if st.st_size > _MAX_FILE_BYTES:
                raise ValueError(f"larger than {_MAX_FILE_BYTES} bytes")
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, ValueError) as exc:
            problems.append((str(path), None, f"cannot read: {exc}"))
            return True
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if state is not None and state.digest == digest:
            state.signature = signature
            return False
        result = parse_manifests(text, default_namespace=self.default_namespace, kinds=self.kinds)
        current = [(line, msg) for line, msg in result.problems]
        if result.error is not None:
            line, message = result.error
            kept = "" if state is None else "; keeping its last good resources"
            current = [(line, message + kept)]
            if state is None:
                self._files[path] = _FileState(signature, digest, [], broken=True)
            else:
                state.signature, state.digest, state.broken = signature, digest, True
        else:
            self._files[path] = _FileState(signature, digest, result.docs)
            if state is not None and state.broken:
                log.info("manifest %s parses again", path)
        self.problems[str(path)] = current
        if not current:
            del self.problems[str(path)]
        problems.extend((str(path), line, message) for line, message in current)
        return True

    def _diff(self, problems: list[_Problem]) -> list[ResourceEvent]:
        merged: dict[ResourceKey, ParsedDoc] = {}
        origins: dict[ResourceKey, Path] = {}
        duplicates: set[tuple[ResourceKey, Path, int]] = set()
        for path in sorted(self._files):  # first file (path order) wins a duplicate
            for doc in self._files[path].docs:
                if doc.key not in merged:
                    merged[doc.key], origins[doc.key] = doc, path
                    continue
                mark = (doc.key, path, doc.line)
                duplicates.add(mark)
                if mark not in self._reported_duplicates:
                    first = f"{origins[doc.key]}:{merged[doc.key].line}"
                    kind, ns, name = doc.key
                    message = f"duplicate {kind} {ns}/{name} (first defined at {first}); ignored"
                    problems.append((str(path), doc.line, message))
        self._reported_duplicates = duplicates  # report each duplicate once while it lasts
        events: list[ResourceEvent] = []
        for key, gone in self._emitted.items():
            if key not in merged:
                events.append(self._event(EventType.DELETED, gone, self._origins[key]))
        for key, doc in merged.items():
            old = self._emitted.get(key)
            if old is None:
                events.append(self._event(EventType.ADDED, doc, origins[key]))
            elif old.obj != doc.obj or old.api_version != doc.api_version:
                events.append(self._event(EventType.MODIFIED, doc, origins[key]))
        self._emitted, self._origins = merged, origins
        return events

    @staticmethod
    def _event(type_: EventType, doc: ParsedDoc, path: Path) -> ResourceEvent:
        kind, namespace, name = doc.key
        origin = f"{path}:{doc.line}"
        return ResourceEvent(type_, kind, doc.api_version, namespace, name, doc.obj, origin)
