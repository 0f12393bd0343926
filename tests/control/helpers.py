"""Small helpers for control-plane tests: YAML string in, parsed resource or snapshot out."""

from __future__ import annotations

import textwrap
from pathlib import Path

from aeraki.control.manifests import load_text
from aeraki.control.model import ConfigSnapshot, Parsed, Problem, parse_resource
from aeraki.control.validation import build_snapshot

DATA = Path(__file__).parent / "data"


def parse_one(text: str, file: str = "test.yaml") -> Parsed:
    """The single document of ``text`` (dedented), converted and checked on its own."""
    docs, problems = load_text(textwrap.dedent(text), file)
    assert not problems, problems
    assert len(docs) == 1, docs
    return parse_resource(docs[0].body, docs[0].origin)


def snapshot_of(text: str, file: str = "test.yaml") -> ConfigSnapshot:
    docs, problems = load_text(textwrap.dedent(text), file)
    return build_snapshot(docs, problems)


def lines(problems: tuple[Problem, ...] | list[Problem]) -> list[str]:
    return [p.format() for p in problems]
