"""Collecting configuration problems, and translating protobuf parse errors into them.

A user fixing a config wants every mistake at once, each with the field path to edit, not a
fix-rerun loop. Conversion code therefore never raises on a bad value: it records a
:class:`Problem` and carries on; the entry point raises one :class:`ConfigErrors` at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from google.protobuf import descriptor, json_format, message, message_factory
from google.protobuf.duration_pb2 import Duration

from aeraki.errors import ConfigError

__all__ = ["ConfigErrors", "Problems", "duration_seconds", "join", "parse_message"]

M = TypeVar("M", bound=message.Message)


class ConfigErrors(ConfigError):
    """Several configuration problems, all found in one pass over a config.

    ``path`` is the first problem's path (so single-problem callers can keep using it);
    ``problems`` holds each one as a :class:`ConfigError`; ``str()`` lists them all.
    """

    def __init__(self, source: str, problems: Sequence[ConfigError]) -> None:
        self.source = source
        self.problems: tuple[ConfigError, ...] = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(self.problems[0].path if count else "", f"{count} {noun}:\n{lines}")
        self._text = f"{source}: {count} configuration {noun}:\n{lines}"

    @property
    def paths(self) -> tuple[str, ...]:
        """The path of every problem, in the order found."""
        return tuple(p.path for p in self.problems)

    def __str__(self) -> str:
        return self._text


class Problems:
    """An ordered, de-duplicated list of (path, message) found while checking a config."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._items: list[ConfigError] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: str, msg: str) -> None:
        if (path, msg) not in self._seen:
            self._seen.add((path, msg))
            self._items.append(ConfigError(path, msg))

    def extend(self, errors: Iterable[ConfigError]) -> None:
        for err in errors:
            self.add(err.path, err.message)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            self.fail()

    def fail(self) -> NoReturn:
        raise ConfigErrors(self.source, self._items)


def join(path: str, name: str) -> str:
    """``path.name`` (or ``name`` at the root); ``name`` may start with ``[i]``."""
    if not path:
        return name
    return path + name if name.startswith("[") else f"{path}.{name}"


def duration_seconds(value: Duration) -> float:
    return value.seconds + value.nanos / 1e9


# --- protobuf ParseError -> (path, message) -------------------------------------------------

_CHAIN_RE = re.compile(r"Failed to parse (\w+) field: ")
_AT_RE = re.compile(r'\s+at\s+"?([\w.\[\]]*?)"?\.*$')
_NO_FIELD_RE = re.compile(r'has no field named "([^"]+)"')


def _translate(exc: json_format.ParseError) -> tuple[str, str]:
    """Turn protobuf's nested ``Failed to parse x field: …`` text into (relative path, msg).

    Protobuf names the full path (``at "Cluster.load_assignment.endpoints[0]"``) for most
    errors but only the chain of field names (no list indices) for scalar conversions, so the
    chain is the fallback.
    """
    text = str(exc)
    chain = _CHAIN_RE.findall(text)
    inner = _CHAIN_RE.split(text)[-1].split("\n", 1)[0].strip()
    path = ""
    at = _AT_RE.search(inner)
    if at:
        inner = inner[: at.start()]
        path = at.group(1).partition(".")[2]  # drop the root message name
    else:
        path = ".".join(chain)
    inner = inner.rstrip(".").strip()
    unknown = _NO_FIELD_RE.search(inner)
    if unknown:
        path = join(path, unknown.group(1))
        return path, f"unknown field ({inner})"
    return path, f"invalid value: {inner}"


def parse_message(
    data: Any,
    cls: type[M],
    path: str,
    problems: Problems,
) -> M | None:
    """``data`` (JSON-like) parsed into a new ``cls``, or ``None`` after recording why not."""
    out = cls()
    if not isinstance(data, Mapping):
        problems.add(path, f"expected a mapping for {cls.DESCRIPTOR.full_name}, got {data!r}")
        return None
    try:
        json_format.ParseDict(dict(data), out, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        rel, msg = _translate(exc)
        if not _AT_RE.search(str(exc).split("\n", 1)[0]):
            rel = _locate(data, cls) or rel
        problems.add(join(path, rel) if rel else path, msg)
        return None
    except (TypeError, ValueError, AttributeError) as exc:  # odd YAML values (dates, …)
        problems.add(path, f"invalid value: {exc}")
        return None
    return out


def _fails(data: Any, cls: type[message.Message]) -> bool:
    try:
        json_format.ParseDict(data, cls(), ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError, AttributeError):
        return True
    return False


def _locate(data: Any, cls: type[message.Message]) -> str:
    """The path (with list indices) of the first value in ``data`` that ``cls`` rejects.

    Used when protobuf's message has only the chain of field names: re-parse children one at
    a time, descending into the first that fails.
    """
    desc = cls.DESCRIPTOR
    if desc.full_name == "google.protobuf.Any" and isinstance(data, Mapping):
        type_name = str(data.get("@type", "")).rsplit("/", 1)[-1]
        try:
            inner_desc: Any = desc.file.pool.FindMessageTypeByName(type_name)
        except KeyError:
            return "@type"
        inner = message_factory.GetMessageClass(inner_desc)
        if inner.DESCRIPTOR.file.name.startswith("google/protobuf/"):
            return ""
        return _locate({k: v for k, v in data.items() if k != "@type"}, inner)
    if not isinstance(data, Mapping):
        return ""
    by_name = {f.name: f for f in desc.fields} | {f.json_name: f for f in desc.fields}
    for key, value in data.items():
        field = by_name.get(key)
        if field is None or not _fails({key: value}, cls):
            continue
        child: Any = field.message_type
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE or child is None:
            return str(key)
        if child.GetOptions().map_entry or (
            child.file.name.startswith("google/protobuf/")
            and child.full_name != "google.protobuf.Any"
        ):
            return str(key)
        child_cls = message_factory.GetMessageClass(child)
        if field.is_repeated and isinstance(value, list):
            for i, item in enumerate(value):
                if _fails(item, child_cls):
                    return join(f"{key}[{i}]", _locate(item, child_cls))
            return str(key)
        return join(str(key), _locate(value, child_cls))
    return ""


def message_class_of(desc: descriptor.Descriptor) -> type[message.Message]:
    return message_factory.GetMessageClass(desc)
