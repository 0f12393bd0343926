"""Incremental translation: reuse what the previous translation built from unchanged inputs.

A MetaRouter edit changes one service's routes, yet a full translation of 1,000 services
rebuilds 8,000 messages (0.2 s), and the snapshot re-serialises them all. The
:class:`TranslationMemo` of one node view keeps the pieces of the last translation — route
plans, route configurations, listeners, clusters with their endpoints — with the inputs they
were built from, and hands a piece back when those inputs are *the same objects* again.

Identity is the right test because the config pipeline preserves it: ``ConfigBuilder`` re-parses
only stored objects that changed, so an unchanged manifest yields the very same ``Resource``.

What a piece depends on:

- every piece: the whole set of ServiceEntries, DestinationRules, VirtualServices and
  ApplicationProtocols (:meth:`TranslationMemo.begin` forgets everything when any of them
  changed — coarse, but it leaves nothing to miss: endpoints, subsets, load balancing, codecs,
  cluster names all come from them), and the view and options the memo is used with (one memo
  per node view; options are fixed per control plane);
- on top of that, per piece, its *guards*: the MetaRouter and VirtualService of its host, the
  ServiceEntry that defines its port, the plans it was made from — compared by identity
  (strings by value).

Problems a piece reported while built are recorded and reported again when it is reused, so
the translation's problems do not depend on what was memoised. Pieces unused by a translation
are dropped (the memo holds one translation's worth). Without a memo, :func:`translate` builds
everything, as before; the result is the same either way (tested).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from aeraki.control.model.base import Problem
from aeraki.control.model.config import ConfigSnapshot

__all__ = ["TranslationMemo"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Piece:
    guards: tuple[object, ...]
    value: Any
    problems: tuple[Problem, ...]


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Element-wise identity (strings and numbers by value); the all-identical case, by far
    the most common, is checked at C speed first."""
    if len(a) != len(b):
        return False
    if all(map(operator.is_, a, b)):
        return True
    return all(x is y or (isinstance(x, str | int) and x == y) for x, y in zip(a, b, strict=True))


def _deps(config: ConfigSnapshot) -> tuple[tuple[object, ...], ...]:
    return (
        config.service_entries,
        config.destination_rules,
        config.virtual_services,
        config.application_protocols,
    )


class TranslationMemo:
    """Pieces of the previous translation of one node view (module docstring)."""

    def __init__(self) -> None:
        self._deps: tuple[tuple[object, ...], ...] | None = None
        self._previous: dict[Hashable, _Piece] = {}
        self._current: dict[Hashable, _Piece] = {}
        self.hits = 0
        self.misses = 0

    def begin(self, config: ConfigSnapshot) -> None:
        """Start a translation of ``config``: last translation's pieces become reusable, all
        of them forgotten when a ServiceEntry, DestinationRule, VirtualService or
        ApplicationProtocol changed."""
        deps = _deps(config)
        kept = self._deps is not None and all(
            _same(a, b) for a, b in zip(deps, self._deps, strict=True)
        )
        self._previous = {**self._previous, **self._current} if kept else {}
        self._current = {}
        self._deps = deps
        self.hits = self.misses = 0

    def end(self) -> None:
        """The translation is complete: drop the pieces it did not use."""
        self._previous = {}

    def get(
        self,
        key: Hashable,
        guards: tuple[object, ...],
        problems: list[Problem],
        build: Callable[[], T],
    ) -> T:
        """The piece ``key`` built from ``guards``: the previous one when its guards are the
        same objects, else ``build()`` (the problems it appends to ``problems`` are kept)."""
        piece = self._previous.pop(key, None)
        if piece is not None and _same(piece.guards, guards):
            self.hits += 1
            problems.extend(piece.problems)
            self._current[key] = piece
            value: T = piece.value
            return value
        self.misses += 1
        start = len(problems)
        value = build()
        self._current[key] = _Piece(guards, value, tuple(problems[start:]))
        return value

    @property
    def size(self) -> int:
        """Pieces held from the last translation (no ``__len__``: an empty memo must not be
        falsy, or ``memo or TranslationMemo()`` would silently drop it)."""
        return len(self._current) + len(self._previous)
