"""Problems, origins, metadata and the generic ``Resource`` (style anchors §9 rules 3 and 9).

A user fixing manifests wants every mistake at once, each pointing at the file, line, resource
and field to edit (issue 3, item 1). Parsers therefore never raise on bad input: they record a
:class:`Problem` in a :class:`Report` and carry on with a best-effort value.

Field paths are written the way the user wrote the YAML (camelCase keys, ``[i]`` for list items,
``["key"]`` for map keys that are not plain identifiers), e.g. ``spec.routes[0].route[1].weight``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "Meta",
    "Origin",
    "Problem",
    "Report",
    "Resource",
    "Severity",
    "child_path",
    "index_path",
    "line_of",
]

S = TypeVar("S")

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*")


def child_path(path: str, key: object) -> str:
    """``path.key`` (``path["key"]`` when the key is not a plain identifier, e.g. a label key)."""
    text = str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text)}]"


def index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path`` or of its nearest ancestor in ``lines`` (``None`` if none known).

    Missing fields have no line of their own; the enclosing mapping's line is the next best
    place to look. Trying every prefix ending before ``.`` or ``[`` is enough: prefixes that cut
    a quoted key in half are simply absent from the map.
    """
    end = len(path)
    while end > 0:
        found = lines.get(path[:end])
        if found is not None:
            return found
        end = max(path.rfind(".", 0, end), path.rfind("[", 0, end))
    return lines.get("")


class Severity(enum.Enum):
    """ERROR excludes the resource from the snapshot; WARNING is advice only (rule 9)."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with the configuration, located as precisely as known.

    ``line``/``column`` are 1-based; ``kind``/``namespace``/``name`` are empty when the problem
    is not about one resource (invalid YAML, unreadable file).
    """

    severity: Severity
    message: str
    field_path: str = ""
    file: str = ""
    line: int | None = None
    column: int | None = None
    kind: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        """``file:line: error|warning: Kind namespace/name: field.path: message``.

        Parts that are unknown are left out (no line, no resource, no field path); the column
        follows the line when known (``file:3:7:``), as compilers print it.
        """
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where, self.severity.value]
        if self.kind:
            ident = f"{self.namespace}/{self.name}" if self.namespace and self.name else self.name
            parts.append(f"{self.kind} {ident}".rstrip())
        if self.field_path:
            parts.append(self.field_path)
        return ": ".join([*parts, self.message])


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where a document came from: file, 0-based document index in it, 1-based start line.

    ``lines`` maps each field path of the document to the line of its key (or list item), so
    problems found long after parsing can still point at the right line. Documents that did not
    come from a file (Kubernetes API) have ``file=""`` and no lines.
    """

    file: str = ""
    index: int = 0
    line: int | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, path: str) -> int | None:
        return line_of(self.lines, path) if self.lines else self.line

    def format(self) -> str:
        return f"{self.file or '<input>'}:{self.line}" if self.line else self.file or "<input>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """Kubernetes object metadata we use (rule 9: ``Meta + Spec``).

    ``namespace`` defaults to ``"default"`` when a manifest leaves it out, as ``kubectl apply``
    does with the default context; cluster-scoped kinds (ApplicationProtocol, §16.20) have
    ``namespace=""`` whatever the manifest says.
    """

    kind: str
    api_version: str
    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    origin: Origin = field(default_factory=Origin, compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the object in a store: (kind, namespace, name); the version is not part."""
        return (self.kind, self.namespace, self.name)

    def format(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource(Generic[S]):
    """A typed resource: metadata plus the kind's spec dataclass."""

    meta: Meta
    spec: S


class Report:
    """Collects the problems of one document, stamping each with file, line and resource.

    Mutable on purpose: parsers thread one ``Report`` through; the result they return is frozen.
    """

    def __init__(self, origin: Origin, kind: str = "", namespace: str = "", name: str = "") -> None:
        self.origin = origin
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.problems: list[Problem] = []

    def add(self, severity: Severity, path: str, message: str) -> None:
        self.problems.append(
            Problem(
                severity=severity,
                message=message,
                field_path=path,
                file=self.origin.file,
                line=self.origin.line_of(path),
                kind=self.kind,
                namespace=self.namespace,
                name=self.name,
            )
        )

    def error(self, path: str, message: str) -> None:
        self.add(Severity.ERROR, path, message)

    def warning(self, path: str, message: str) -> None:
        self.add(Severity.WARNING, path, message)

    @property
    def has_errors(self) -> bool:
        return any(p.is_error for p in self.problems)
