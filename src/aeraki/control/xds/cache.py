"""Per-node snapshots, and the wake-up of the streams that watch them.

Keyed like go-control-plane's ``SimpleCache`` (``pkg/cache/v3/simple.go``): a *node key*
function maps the ``Node`` a proxy announces to the key its snapshot is stored under. The
default is the node id (each proxy its own snapshot); pass e.g. ``lambda node: node.cluster``
to share one snapshot across a group, which is what makes 100 identical proxies cheap.

The cache holds no per-stream state: a stream registers a watcher and, when woken, reads the
current snapshot and diffs it against what it last sent. Waking is therefore idempotent and
coalescing — three quick ``set_snapshot`` calls cost a stream one diff, never three pushes —
and a slow stream can never block a writer (the pitfall of Aeraki's 100-slot channel, §13.4).

All methods run on the event loop thread (the server's streams and the push pipeline share it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from envoy.config.core.v3 import base_pb2

from aeraki.control.xds.snapshot import Snapshot

__all__ = ["NodeKey", "SnapshotCache", "Watcher", "node_id_key"]

log = logging.getLogger(__name__)

#: Maps a proxy's announced Node to the key its snapshot is stored under.
NodeKey = Callable[[base_pb2.Node], str]
#: Called with the key whose snapshot changed (or was cleared).
Watcher = Callable[[str], None]


def node_id_key(node: base_pb2.Node) -> str:
    """The default node key: the node id, so every proxy gets its own snapshot."""
    return str(node.id)


class SnapshotCache:
    """Snapshots by node key, with change notification.

    Args:
        node_key: maps a ``Node`` to its snapshot key (default :func:`node_id_key`).
        check_consistency: refuse snapshots with dangling EDS/RDS references (default on;
            off only for tests that want to see what Envoy does with such a snapshot).
    """

    def __init__(self, node_key: NodeKey = node_id_key, *, check_consistency: bool = True) -> None:
        self._node_key = node_key
        self._check = check_consistency
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, dict[int, Watcher]] = {}
        self._next_watch_id = 0

    def node_key(self, node: base_pb2.Node) -> str:
        """The snapshot key of ``node``."""
        return self._node_key(node)

    def set_snapshot(self, key: str, snapshot: Snapshot) -> bool:
        """Store ``snapshot`` for ``key`` and wake its watchers if any type version changed.

        Returns:
            True when something changed (watchers were woken), False for identical content.

        Raises:
            InconsistentSnapshotError: (a ConfigError) a dangling EDS/RDS reference; the
                previous snapshot stays in force.
        """
        if self._check:
            snapshot.check_consistent()
        previous = self._snapshots.get(key)
        self._snapshots[key] = snapshot
        if previous is not None and previous == snapshot:
            return False
        self._notify(key)
        return True

    def get_snapshot(self, key: str) -> Snapshot | None:
        """The snapshot stored for ``key``, or None when none has been set."""
        return self._snapshots.get(key)

    def clear_snapshot(self, key: str) -> None:
        """Forget ``key``'s snapshot; its streams keep their state and wait for a new one."""
        if self._snapshots.pop(key, None) is not None:
            self._notify(key)

    def keys(self) -> list[str]:
        """Keys with a snapshot."""
        return sorted(self._snapshots)

    def watched_keys(self) -> list[str]:
        """Keys with at least one watching stream (what the push pipeline must build)."""
        return sorted(k for k, w in self._watchers.items() if w)

    def watch(self, key: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(key)`` after each change of ``key``'s snapshot.

        Returns:
            A function that cancels the watch (idempotent).
        """
        watch_id = self._next_watch_id
        self._next_watch_id += 1
        self._watchers.setdefault(key, {})[watch_id] = watcher

        def cancel() -> None:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.pop(watch_id, None)
                if not watchers:
                    del self._watchers[key]

        return cancel

    def _notify(self, key: str) -> None:
        for watcher in list(self._watchers.get(key, {}).values()):
            try:
                watcher(key)
            except Exception:  # a broken stream must not stop the others being woken
                log.exception("xds: snapshot watcher for %r failed", key)
