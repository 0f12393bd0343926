"""A strict reader of the Prometheus text format 0.0.4 for tests: every line must be a
``# HELP``/``# TYPE`` header or a well-formed sample of the family last declared."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Family", "parse"]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


@dataclass
class Family:
    name: str
    kind: str = ""
    help: str = ""
    #: (sample name, labels, value)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, suffix: str = "", **labels: str) -> float:
        """The one sample ``name + suffix`` whose labels include ``labels``."""
        found = [
            v
            for n, ls, v in self.samples
            if n == self.name + suffix and all(ls.get(k) == x for k, x in labels.items())
        ]
        assert len(found) == 1, (self.name + suffix, labels, found)
        return found[0]


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        assert match is not None, f"bad labels at {text[pos:]!r}"
        out[match.group(1)] = (
            match.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        )
        pos = match.end()
    return out


def parse(text: str) -> dict[str, Family]:
    """Families by name; fails on any malformed or out-of-family line, or duplicate family."""
    families: dict[str, Family] = {}
    current: Family | None = None
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"family {name} declared twice"
            current = families[name] = Family(name, help=help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert current is not None, line
            assert current.name == name, line
            assert kind in _SUFFIXES, line
            current.kind = kind
        else:
            match = _SAMPLE.match(line)
            assert match is not None, f"bad sample line {line!r}"
            assert current is not None, line
            sample, labels, value = match.groups()
            assert sample in {current.name + s for s in _SUFFIXES[current.kind]}, line
            current.samples.append((sample, _labels(labels or ""), float(value)))
    return families
