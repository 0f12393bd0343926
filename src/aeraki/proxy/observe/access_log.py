"""Access logs: one line per ended request, Envoy-compatible (reference §25).

Configured by the MetaProtocolProxy's ``access_log`` (repeated Envoy ``AccessLog``) with the
loggers Envoy calls ``envoy.access_loggers.file`` (``FileAccessLog``: ``path`` with
``log_format`` text / JSON, or the older ``format`` / ``json_format``) and
``envoy.access_loggers.stdout`` / ``.stderr``. :func:`convert_access_logs` checks them when the
config arrives (bootstrap or xDS) so a bad format is a config error naming its field, never a
surprise per request; :func:`access_loggers` builds a listener's request observers.

Unlike the reference, *every* ending is logged: upstream answers, local replies (no route,
overflow, timeout, rate limited, …), one-way requests and requests the client abandoned.

Cost: formats are compiled once (:mod:`.format`); a request renders its line and appends it to
its file's buffer, which is written with one ``os.write`` per event-loop tick (or at 1,024
lines). A listener without access logs has no observer and pays nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from google.protobuf import json_format

from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap_problems import Problems, join
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import AccessLogConfig
from aeraki.proxy.observe.format import DEFAULT_TEXT_FORMAT, Operator, TextFormat, compile_text

if TYPE_CHECKING:
    from aeraki.proxy.request import ActiveRequest

__all__ = [
    "AccessLogger",
    "JsonFormat",
    "LogSink",
    "TextLine",
    "access_loggers",
    "compile_format",
    "convert_access_logs",
    "flush_all",
]

log = logging.getLogger(__name__)

STDOUT = "/dev/stdout"
STDERR = "/dev/stderr"
_FILE = file_pb2.FileAccessLog.DESCRIPTOR.full_name
_STDOUT = stream_pb2.StdoutAccessLog.DESCRIPTOR.full_name
_STDERR = stream_pb2.StderrAccessLog.DESCRIPTOR.full_name
_LOGGER_TYPES = {
    _FILE: file_pb2.FileAccessLog,
    _STDOUT: stream_pb2.StdoutAccessLog,
    _STDERR: stream_pb2.StderrAccessLog,
}
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: Lines buffered before a write even within one loop tick.
_MAX_BUFFERED = 1024


# -- formats -----------------------------------------------------------------------------------
class JsonFormat:
    """A compiled ``json_format``: each value a format string (a lone operator keeps its type:
    numbers stay numbers, unknown is ``null``), a nested mapping, or a constant. Keys keep
    their configured order."""

    __slots__ = ("_blank", "_nested", "_omit_empty", "_singles", "_texts")

    def __init__(self, spec: Mapping[str, Any], where: str, *, omit_empty: bool) -> None:
        singles: list[tuple[str, Operator]] = []
        texts: list[tuple[str, TextFormat]] = []
        nested: list[tuple[str, JsonFormat]] = []
        blank: dict[str, Any] = {}
        for raw_key, value in spec.items():
            key = str(raw_key)
            blank[key] = None
            here = join(where, key)
            if isinstance(value, str):
                compiled = compile_text(value, here)
                if compiled.single is not None:
                    singles.append((key, compiled.single))
                else:
                    texts.append((key, compiled))
            elif isinstance(value, Mapping):
                nested.append((key, JsonFormat(value, here, omit_empty=omit_empty)))
            else:
                blank[key] = value  # a constant
        self._blank = blank
        self._singles = tuple(singles)
        self._texts = tuple(texts)
        self._nested = tuple(nested)
        self._omit_empty = omit_empty

    def values(self, request: ActiveRequest) -> dict[str, Any]:
        """The JSON object for ``request``."""
        out = self._blank.copy()
        for key, operator in self._singles:
            value = operator(request)
            out[key] = None if value == "" else value
        empty = "" if self._omit_empty else "-"
        for key, text in self._texts:
            out[key] = text.render(request, empty)
        for key, sub in self._nested:
            out[key] = sub.values(request)
        if self._omit_empty:
            return {k: v for k, v in out.items() if v is not None and v != "" and v != {}}
        return out

    def render(self, request: ActiveRequest) -> str:
        """One JSON line (compact, non-ASCII kept)."""
        return _encode(self.values(request)) + "\n"


class TextLine:
    """A text format with the newline Envoy's default has (added when the user's lacks it,
    as Istio does for ``accessLogFormat``) and ``omit_empty_values`` (empty instead of ``-``)."""

    __slots__ = ("_empty", "_format", "_newline")

    def __init__(self, text: TextFormat, *, omit_empty: bool) -> None:
        self._format = text
        self._empty = "" if omit_empty else "-"
        self._newline = "" if text.ends_with_newline else "\n"

    def render(self, request: ActiveRequest) -> str:
        return self._format.render(request, self._empty) + self._newline


def compile_format(config: AccessLogConfig, where: str) -> JsonFormat | TextLine:
    """The compiled line format of ``config``.

    Raises:
        ConfigError: a bad operator or a stray ``%`` (path under ``where``).
    """
    if config.json_format is not None:
        return JsonFormat(config.json_format, where, omit_empty=config.omit_empty_values)
    text = DEFAULT_TEXT_FORMAT if config.text_format is None else config.text_format
    return TextLine(compile_text(text, where), omit_empty=config.omit_empty_values)


# -- sinks -------------------------------------------------------------------------------------
class LogSink:
    """One output (file, stdout or stderr) shared by every logger writing to it.

    Lines are buffered and written together once per loop tick, so a burst of requests costs
    one system call, and lines of several listeners never interleave mid-line. The write itself
    is a plain ``os.write``: a regular file takes it at once, but a pipe nobody reads (stdout
    of a process whose reader stalls) would hold the loop, as it would hold Envoy's writer.
    The file stays open: a rotated log keeps being written to the old inode (no reopen yet).
    """

    __slots__ = ("_lines", "_scheduled", "fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        if path == STDOUT:
            self.fd = 1
        elif path == STDERR:
            self.fd = 2
        else:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(path, f"cannot open access log file: {exc.strerror}") from None
        self._lines: list[str] = []
        self._scheduled = False

    def append(self, line: str) -> None:
        """Buffer ``line``; it is written at the end of this loop tick."""
        lines = self._lines
        lines.append(line)
        if len(lines) >= _MAX_BUFFERED:
            self.flush()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a tool, a test): write now
                self.flush()
                return
            self._scheduled = True

    def flush(self) -> None:
        """Write every buffered line (errors are logged, the lines dropped)."""
        self._scheduled = False
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError as exc:
            log.warning("access log %s: write failed: %s", self.path, exc)


_sinks: dict[str, LogSink] = {}


def _sink(path: str) -> LogSink:
    sink = _sinks.get(path)
    if sink is None:
        sink = _sinks[path] = LogSink(path)
    return sink


@atexit.register
def flush_all() -> None:
    """Write what every sink still holds (shutdown, tests)."""
    for sink in list(_sinks.values()):
        sink.flush()


# -- the observer ------------------------------------------------------------------------------
class AccessLogger:
    """A request observer writing one line per ended request."""

    __slots__ = ("_append", "_render")

    def __init__(self, line_format: JsonFormat | TextLine, sink: LogSink) -> None:
        self._render = line_format.render
        self._append = sink.append

    def on_request_done(self, request: ActiveRequest) -> None:
        try:
            self._append(self._render(request))
        except Exception:  # an observer must never break the request path
            log.exception("access log: cannot format the entry of %r", request.metadata)


def access_loggers(configs: tuple[AccessLogConfig, ...]) -> tuple[AccessLogger, ...]:
    """A listener's access-log observers (empty when it has none).

    Raises:
        ConfigError: a log file cannot be opened.
    """
    return tuple(
        AccessLogger(compile_format(c, f"access_log[{i}]"), _sink(c.path))
        for i, c in enumerate(configs)
    )


# -- config ------------------------------------------------------------------------------------
def _struct(value: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(value))


def _from_format(proto: Any, path: str) -> AccessLogConfig:
    """A ``SubstitutionFormatString`` (``log_format``) → format fields for ``path``."""
    which = proto.WhichOneof("format")
    omit = proto.omit_empty_values
    if which == "json_format":
        return AccessLogConfig(
            path=path, json_format=_struct(proto.json_format), omit_empty_values=omit
        )
    if which == "text_format":
        return AccessLogConfig(path=path, text_format=proto.text_format, omit_empty_values=omit)
    if which == "text_format_source":
        return AccessLogConfig(
            path=path, text_format=proto.text_format_source.inline_string, omit_empty_values=omit
        )
    return AccessLogConfig(path=path, omit_empty_values=omit)


def _convert_one(item: Any, where: str, problems: Problems) -> AccessLogConfig | None:
    check_supported(item, where, problems)
    tc_path = join(where, "typed_config")
    if not item.HasField("typed_config"):
        problems.add(tc_path, "required (a FileAccessLog, StdoutAccessLog or StderrAccessLog)")
        return None
    type_name = item.typed_config.type_url.rsplit("/", 1)[-1]
    cls = _LOGGER_TYPES.get(type_name)
    if cls is None:
        known = ", ".join(sorted(_LOGGER_TYPES))
        problems.add(tc_path, f"access logger {type_name!r} not supported yet (use one of {known})")
        return None
    proto: Any = cls()
    item.typed_config.Unpack(proto)
    check_supported(proto, tc_path, problems)
    if type_name == _STDOUT:
        return _from_format(proto.log_format, STDOUT)
    if type_name == _STDERR:
        return _from_format(proto.log_format, STDERR)
    if not proto.path:
        problems.add(join(tc_path, "path"), "required")
        return None
    which = proto.WhichOneof("access_log_format")
    if which == "format":
        return AccessLogConfig(path=proto.path, text_format=proto.format)
    if which == "json_format":
        return AccessLogConfig(path=proto.path, json_format=_struct(proto.json_format))
    if which == "log_format":
        return _from_format(proto.log_format, proto.path)
    return AccessLogConfig(path=proto.path)


def convert_access_logs(
    items: Collection[Any], path: str, problems: Problems
) -> tuple[AccessLogConfig, ...]:
    """The ``access_log`` entries as configs, each format compiled once to check it."""
    out: list[AccessLogConfig] = []
    for i, item in enumerate(items):
        where = join(path, f"[{i}]")
        config = _convert_one(item, where, problems)
        if config is None:
            continue
        try:
            compile_format(config, join(where, "typed_config"))
        except ConfigError as exc:
            problems.add(exc.path, exc.message)
            continue
        out.append(config)
    return tuple(out)
