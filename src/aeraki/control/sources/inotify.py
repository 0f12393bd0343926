"""Linux inotify through ctypes: the few calls a watched manifest directory needs.

No dependency (``watchfiles`` is a compiled wheel; ``inotify_simple`` is this file): libc's
``inotify_init1``/``inotify_add_watch``/``inotify_rm_watch``, and ``os.read`` on the returned
descriptor, which the caller registers with the event loop (``loop.add_reader``). Records are
``struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[]; }``
(inotify(7)), ``name`` NUL-padded to ``len`` bytes.

:func:`open_inotify` raises :class:`InotifyUnavailable` wherever inotify cannot be used (not
Linux, no libc symbol, ``EMFILE`` on instances); the caller then falls back to polling.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aeraki.errors import AerakiError

__all__ = [
    "IN_ATTRIB",
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_DELETE",
    "IN_DELETE_SELF",
    "IN_IGNORED",
    "IN_ISDIR",
    "IN_MOVED_FROM",
    "IN_MOVED_TO",
    "IN_MOVE_SELF",
    "IN_Q_OVERFLOW",
    "IN_UNMOUNT",
    "Inotify",
    "InotifyEvent",
    "InotifyUnavailable",
    "open_inotify",
    "parse_events",
]

# inotify(7) / <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

_HEADER = struct.Struct("iIII")
#: One read returns whole records; 64 KiB holds ~2,000 of them with short names.
_READ_SIZE = 64 * 1024


class InotifyUnavailable(AerakiError):
    """inotify cannot be used here (platform, libc, or a kernel limit); poll instead."""


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One record: ``wd`` is -1 for ``IN_Q_OVERFLOW``; ``name`` is "" for the watched dir
    itself."""

    wd: int
    mask: int
    cookie: int
    name: str

    @property
    def is_dir(self) -> bool:
        return bool(self.mask & IN_ISDIR)


def parse_events(data: bytes) -> Iterator[InotifyEvent]:
    """Records of one ``read()``; names decoded as the filesystem encoding does (surrogates)."""
    offset, end = 0, len(data)
    while offset + _HEADER.size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        raw = data[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        yield InotifyEvent(wd, mask, cookie, os.fsdecode(raw))


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        raise InotifyUnavailable(f"inotify is Linux-only (platform {sys.platform})")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
            getattr(libc, name)
    except (OSError, AttributeError) as exc:
        raise InotifyUnavailable(f"libc has no inotify: {exc}") from exc
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


class Inotify:
    """One inotify instance (a non-blocking, close-on-exec descriptor)."""

    def __init__(self, libc: Any, fd: int) -> None:
        self._libc = libc
        self.fd = fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch ``path`` (a directory when ``mask`` has ``IN_ONLYDIR``); returns the wd.

        Raises:
            OSError: with the errno (``ENOENT`` gone, ``ENOTDIR``, ``ENOSPC`` watch limit).
        """
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_add_watch({os.fspath(path)!r}): {os.strerror(code)}")
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop watching ``wd``; a watch the kernel already dropped is not an error."""
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[InotifyEvent]:
        """Every record pending now (empty when none: the descriptor is non-blocking)."""
        events: list[InotifyEvent] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            except InterruptedError:
                continue
            if not data:
                return events
            events.extend(parse_events(data))

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def open_inotify() -> Inotify:
    """A new inotify instance.

    Raises:
        InotifyUnavailable: not Linux, no inotify in libc, or the per-user instance limit.
    """
    libc = _libc()
    fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        hint = " (fs.inotify.max_user_instances)" if code == errno.EMFILE else ""
        raise InotifyUnavailable(f"inotify_init1 failed: {os.strerror(code)}{hint}")
    return Inotify(libc, fd)
