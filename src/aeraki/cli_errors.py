"""The one line a command prints for a bad input, instead of a traceback.

A user who gave a wrong path, broken YAML, an unknown codec or a busy port needs to read what
and where in one line (``aeraki: FILE: invalid YAML at line 3, column 4: …``); a config with
several problems lists each under a summary line. Anything not recognised here is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno
import re

from aeraki.errors import AerakiError, ConfigError

__all__ = ["describe"]

_BIND_ADDRESS = re.compile(r"\('([^']*)', (\d+)")
#: grpc's words when a server port cannot be bound (it raises a bare RuntimeError).
_GRPC_BIND = re.compile(r"Failed to bind to address (\S+?);")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _config(exc: ConfigError) -> str:
    """``source: what`` for one problem (the cause's own words for unreadable files and bad
    YAML/JSON), the full list under a summary line for several."""
    problems = getattr(exc, "problems", None)
    source = getattr(exc, "source", "")
    if problems is None or len(problems) != 1:
        return f"invalid configuration: {exc}"
    cause = exc.__cause__
    where = f"{source}: " if source else ""
    if isinstance(cause, OSError) and cause.strerror:
        return f"{where}cannot read: {cause.strerror}"
    mark = getattr(cause, "problem_mark", None)
    if mark is not None:
        problem = getattr(cause, "problem", None) or "not YAML"
        return (
            f"{where}invalid YAML at line {mark.line + 1}, column {mark.column + 1}: "
            f"{_one_line(str(problem))}"
        )
    return f"invalid configuration: {where}{_one_line(str(problems[0]))}"


def _os_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        found = _BIND_ADDRESS.search(str(exc))
        address = f"{found[1]}:{found[2]}" if found else "the configured address"
        return f"cannot listen on {address}: address already in use (another process has it)"
    if exc.errno == errno.EADDRNOTAVAIL:
        found = _BIND_ADDRESS.search(str(exc))
        address = f"{found[1]}:{found[2]}" if found else "the configured address"
        return f"cannot listen on {address}: not an address of this machine"
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return _one_line(str(exc))


def describe(exc: BaseException) -> str | None:
    """The one-line message for ``exc`` (without the ``aeraki:`` prefix), or ``None`` when
    it is not a bad-input error (a bug: let its traceback show)."""
    if isinstance(exc, ConfigError):
        return _config(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, AerakiError):
        return _one_line(str(exc))
    if isinstance(exc, RuntimeError) and (found := _GRPC_BIND.match(str(exc))):
        return f"cannot listen on {found[1]}: address in use or not an address of this machine"
    return None
