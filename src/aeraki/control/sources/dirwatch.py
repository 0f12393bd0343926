"""Which manifest files changed: a recursive inotify watch of a directory tree.

:class:`DirectoryWatcher` turns inotify records into *what to re-read*, and leaves reading
to :class:`~aeraki.control.sources.files.FileSource`:

- a manifest written in place (``IN_CLOSE_WRITE``, not ``IN_MODIFY``: a half-written file would
  be parsed and reported broken), renamed into place (``IN_MOVED_TO``: what editors and
  ``kubectl cp``-style tools do for an atomic save), renamed away or deleted, or whose
  attributes changed (a file made readable) → that one path is *dirty*;
- anything that changes the tree's shape — a directory created, moved or deleted, a watched
  directory itself deleted or moved, a Kubernetes ConfigMap volume swapping its ``..data``
  symlink, or the kernel queue overflowing (``IN_Q_OVERFLOW``) → a *full rescan* (new
  directories get their watches when :meth:`DirectoryWatcher.sync` runs after that rescan);
- hidden names (``.x.swp``, ``.#x``) and other suffixes are ignored, as the scan ignores them.

Records are read in ``loop.add_reader``'s callback, so the watcher costs nothing while nothing
changes. What inotify cannot see — network filesystems, a symlink whose target changes outside
the tree — is left to the file source's slow safety rescan.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aeraki.control.sources.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Inotify,
    InotifyEvent,
    open_inotify,
)

__all__ = ["Changes", "DirectoryWatcher"]

log = logging.getLogger(__name__)

_DIR_MASK = (
    IN_CLOSE_WRITE
    | IN_MOVED_TO
    | IN_MOVED_FROM
    | IN_CREATE
    | IN_DELETE
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_FILE_CHANGED = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB
_TREE_CHANGED = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_SELF_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT


@dataclass(slots=True)
class Changes:
    """What to re-read: ``paths`` (files), or everything when ``full``."""

    paths: set[Path] = field(default_factory=set)
    full: bool = False

    def __bool__(self) -> bool:
        return self.full or bool(self.paths)


class DirectoryWatcher:
    """Recursive watch of ``root``; ``changed`` is set when :meth:`take` has something.

    Args:
        root: a directory (watched with every non-hidden subdirectory), or one file (its
            directory is watched, other names ignored).
        is_manifest: whether a file name is one the source reads (suffix, not hidden).

    Raises (from :meth:`start`):
        InotifyUnavailable: no inotify here.
        OSError: the root cannot be watched (missing, ``ENOSPC`` watch limit, …).
    """

    def __init__(self, root: Path, is_manifest: Callable[[str], bool]) -> None:
        self.root = root
        self._is_manifest = is_manifest
        self._single = root.is_file()
        self._inotify: Inotify | None = None
        self._dirs: dict[int, Path] = {}  # wd -> directory
        self._pending = Changes()
        #: IN_Q_OVERFLOW records seen (each one costs a full rescan).
        self.overflows = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.changed = asyncio.Event()

    @property
    def watches(self) -> int:
        return len(self._dirs)

    @property
    def active(self) -> bool:
        """False once closed (or broken): the source then polls."""
        return self._inotify is not None

    def start(self) -> None:
        """Open inotify, watch the tree, and read records on the running loop."""
        inotify = open_inotify()
        try:
            self._inotify = inotify
            self.sync()
            if not self._dirs:
                raise OSError(f"nothing to watch under {self.root}")
        except BaseException:
            self.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(inotify.fd, self._on_readable)

    def sync(self) -> None:
        """Watch every directory of the tree not watched yet (after a full rescan).

        Raises:
            OSError: ``ENOSPC`` (the watch limit); a directory that vanished is skipped.
        """
        inotify = self._inotify
        if inotify is None:
            return
        found: dict[int, Path] = {}
        if self._single:
            self._watch(inotify, self.root.parent, found)
        else:
            for dirpath, dirnames, _ in os.walk(self.root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                self._watch(inotify, Path(dirpath), found)
        for wd in set(self._dirs) - set(found):  # moved out of the tree (or gone)
            inotify.rm_watch(wd)
        self._dirs = found

    @staticmethod
    def _watch(inotify: Inotify, directory: Path, found: dict[int, Path]) -> None:
        try:
            # A directory watched already keeps its wd; a renamed one is re-mapped here.
            found[inotify.add_watch(directory, _DIR_MASK)] = directory
        except (FileNotFoundError, NotADirectoryError):
            return

    def take(self) -> Changes:
        """What changed since the last call (and clear ``changed``)."""
        out, self._pending = self._pending, Changes()
        self.changed.clear()
        return out

    def close(self) -> None:
        inotify, self._inotify = self._inotify, None
        if inotify is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(inotify.fd)
        inotify.close()
        self._dirs.clear()

    # --- records -----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        try:
            records = inotify.read()
        except OSError:  # the descriptor broke: rescan; the safety rescan keeps working
            log.exception("inotify read failed on %s; falling back to rescans", self.root)
            self.close()
            records = []
            self._pending.full = True
        for record in records:
            self._apply(record)
        if self._pending:
            self.changed.set()

    def _apply(self, record: InotifyEvent) -> None:
        if record.mask & IN_Q_OVERFLOW:
            log.warning("inotify queue overflowed on %s: rescanning everything", self.root)
            self.overflows += 1
            self._pending.full = True
            return
        directory = self._dirs.get(record.wd)
        if record.mask & IN_IGNORED:
            self._dirs.pop(record.wd, None)
            return
        if directory is None:
            return
        if record.mask & _SELF_GONE:
            self._pending.full = True
            return
        name = record.name
        if name.startswith(".."):
            # Kubernetes' atomic writer: files are symlinks through "..data", swapped by rename.
            self._pending.full = True
        elif self._single:
            if name == self.root.name and record.mask & _FILE_CHANGED:
                self._pending.paths.add(self.root)
        elif name.startswith("."):
            return
        elif record.is_dir:
            if record.mask & _TREE_CHANGED:
                self._pending.full = True
        elif record.mask & _FILE_CHANGED and self._is_manifest(name):
            self._pending.paths.add(directory / name)
