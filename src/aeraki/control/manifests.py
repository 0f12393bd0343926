"""Read YAML manifests (files, directories, strings) into raw documents with line numbers.

Issue 3, item 1: every problem names file and line. ``yaml.compose`` keeps each node's start
mark, so each document gets a map from field path (``spec.routes[0].route[1].weight``) to the
line of that key or list item; problems found later (by conversion or cross-resource checks)
use it through :class:`~aeraki.control.model.Origin`.

A file is split into documents at ``---`` lines *before* parsing, so one broken document is
reported (file:line:column) and its neighbours still load. YAML forbids a ``---`` line inside
a document's content, so splitting there is exact.

Directories are walked recursively in sorted order, ``*.yaml``/``*.yml`` only; names starting
with ``.`` are skipped, because a Kubernetes ConfigMap volume holds every file twice (under
``..data/`` and ``..<timestamp>/``), which would make every resource a duplicate.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from aeraki.control.model.base import Origin, Problem, Severity, child_path, index_path

__all__ = ["RawDocument", "load_documents", "load_text"]

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:  # the C parser is ~10x faster; marks and resolvers are the same
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader without timestamp resolution: Kubernetes keeps ``2024-01-01`` a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_DOC_START = re.compile(r"---(?:[ \t]|$)")
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True, kw_only=True)
class RawDocument:
    """One YAML document as plain data (``body``) plus where it came from (``origin``)."""

    body: Any
    origin: Origin = field(default_factory=Origin)


def load_text(text: str, file: str = "<string>") -> tuple[list[RawDocument], list[Problem]]:
    """Every document of one YAML text; invalid documents become problems, the rest load.

    Empty documents (only comments or blank) are skipped, as kubectl does; ``origin.index``
    counts the non-empty documents of the file from 0.
    """
    docs: list[RawDocument] = []
    problems: list[Problem] = []
    for offset, chunk in _split(text):
        try:
            loaded = _load_chunk(chunk, offset, file, len(docs))
        except yaml.MarkedYAMLError as exc:
            problems.append(_yaml_problem(exc, offset, file))
            continue
        except yaml.YAMLError as exc:  # no mark: say so rather than guess a line
            problems.append(_problem(file, offset + 1, None, f"invalid YAML: {exc}"))
            continue
        if loaded is not None:
            docs.append(loaded)
    return docs, problems


def load_documents(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[RawDocument], list[Problem]]:
    """Documents of files and directories, in the order given (each directory sorted).

    A path given twice (or a file inside a directory also given) is read once. Unreadable or
    missing paths are problems; they do not stop the others.
    """
    docs: list[RawDocument] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for file, error in _files(paths):
        if error:
            problems.append(_problem(file, None, None, error))
            continue
        resolved = Path(file).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(_problem(file, None, None, f"cannot read file: {exc}"))
            continue
        file_docs, file_problems = load_text(text, file)
        docs.extend(file_docs)
        problems.extend(file_problems)
    return docs, problems


def _files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[str, str]]:
    """(file, "") for each file to read, or (path, error) for a path that cannot be used."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(_walk(path)):
                yield str(found), ""
        elif path.is_file():
            yield str(path), ""
        else:
            yield str(path), "no such file or directory"


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.endswith(_SUFFIXES):
                yield Path(dirpath) / name


def _split(text: str) -> Iterator[tuple[int, str]]:
    """(0-based first line, text) of each ``---``-separated section; the marker line stays in
    its section so ``--- {a: 1}`` keeps its content."""
    lines = text.splitlines(keepends=True)
    start = 0
    for i, line in enumerate(lines):
        if i > start and _DOC_START.match(line):
            yield start, "".join(lines[start:i])
            start = i
    if start < len(lines):
        yield start, "".join(lines[start:])


def _load_chunk(chunk: str, offset: int, file: str, index: int) -> RawDocument | None:
    loader = _Loader(chunk)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        body = loader.construct_document(node)
    finally:
        loader.dispose()
    if body is None:  # "---" followed by nothing but comments: an empty document
        return None
    lines: dict[str, int] = {}
    _index_lines(node, "", offset, lines)
    origin = Origin(file=file, index=index, line=node.start_mark.line + offset + 1, lines=lines)
    return RawDocument(body=body, origin=origin)


def _index_lines(node: yaml.Node, path: str, offset: int, out: dict[str, int]) -> None:
    """Record the 1-based line of ``path`` and of everything under it.

    A mapping entry's line is its key's line (where the user looks for the field); a list
    item's line is the item's own start.
    """
    out.setdefault(path, node.start_mark.line + offset + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            sub = child_path(path, key_node.value)
            out[sub] = key_node.start_mark.line + offset + 1
            _index_lines(value_node, sub, offset, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, index_path(path, i), offset, out)


def _yaml_problem(exc: yaml.MarkedYAMLError, offset: int, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    text = exc.problem or "invalid YAML"
    if exc.context:  # e.g. "while parsing a flow node": say where that construct started
        started = exc.context_mark
        at = f" started at line {started.line + offset + 1}" if started else ""
        text = f"{text} ({exc.context}{at})"
    if mark is None:
        return _problem(file, offset + 1, None, f"invalid YAML: {text}")
    return _problem(file, mark.line + offset + 1, mark.column + 1, f"invalid YAML: {text}")


def _problem(file: str, line: int | None, column: int | None, message: str) -> Problem:
    return Problem(severity=Severity.ERROR, message=message, file=file, line=line, column=column)
