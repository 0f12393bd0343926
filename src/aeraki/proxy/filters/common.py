"""Pieces the rate limit filters share: request matchers from a ``RouteMatch`` proto, config
problem collection, and state kept per proxy across listener updates.

A filter config is checked once when it arrives (:func:`aeraki.proxy.filters.api.
check_filter_config`), then compiled when its listener is built; both go through
:func:`match_tests` so that what was accepted is exactly what runs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap_problems import ConfigErrors, Problems, join
from aeraki.proxy.bootstrap_routes import convert_header_matcher
from aeraki.proxy.routing import CompiledMatcher, Test, compile_matcher

if TYPE_CHECKING:
    from aeraki.codec.api import Metadata
    from aeraki.proxy.listener import ListenerRuntime

__all__ = ["Match", "match_tests", "problem_list", "request_strings", "shared_state"]


@dataclass(frozen=True, slots=True)
class Match:
    """The compiled matchers of one ``RouteMatch``: all must pass (none: everything matches)."""

    tests: tuple[Test, ...] = ()
    #: the (lower-cased) properties the tests read.
    names: tuple[str, ...] = ()


def request_strings(metadata: Metadata, names: Iterable[str]) -> dict[str, str]:
    """The request's properties, with the deferred ones loaded if one of ``names`` is absent
    (``Metadata.deferred``: an absent key may still appear; a present one is final)."""
    strings = metadata.strings
    if metadata.deferred is not None:
        for name in names:
            if name not in strings:
                return metadata.load_strings()
    return strings


S = TypeVar("S")

#: Per proxy (its ClusterManager, which lives as long as the ProxyServer), the filter states
#: by (filter name, listener name, serialized config). Weak at both levels: a state lives as
#: long as a listener runtime holds it; a replaced listener's runtime still holds it while
#: the new one is built, so an unchanged config keeps its buckets across the update.
_states: weakref.WeakKeyDictionary[object, weakref.WeakValueDictionary[tuple[str, str, bytes], Any]]
_states = weakref.WeakKeyDictionary()


def problem_list(problems: Problems) -> list[ConfigError]:
    """The problems recorded in ``problems`` as a list (empty when there are none)."""
    try:
        problems.raise_if_any()
    except ConfigErrors as exc:
        return list(exc.problems)
    return []


def match_tests(match: Any, path: str, problems: Problems) -> Match:
    """Compiled tests of a MetaProtocol ``RouteMatch`` (route semantics, reference §20.1).

    Problems are recorded, never raised; a matcher with a problem is left out.
    """
    matchers: list[CompiledMatcher] = []
    for i, header in enumerate(match.metadata):
        here = join(path, f"metadata[{i}]")
        before = len(problems)
        spec = convert_header_matcher(header, here, problems)
        if len(problems) != before:
            continue
        try:
            matchers.append(compile_matcher(spec, here))
        except ConfigError as exc:
            problems.add(exc.path, exc.message)
    return Match(tuple(m.test for m in matchers), tuple(dict.fromkeys(m.name for m in matchers)))


def shared_state(
    listener: ListenerRuntime, filter_name: str, config: Any, build: Callable[[], S]
) -> S:
    """The state of ``filter_name`` with ``config`` on ``listener``, built on first use.

    The same proxy, listener name and config give the same object for as long as some
    listener runtime holds it, so rate limit buckets (and their counters) survive a listener
    update that leaves the filter's config unchanged.
    """
    by_key = _states.get(listener.clusters)
    if by_key is None:
        by_key = weakref.WeakValueDictionary()
        _states[listener.clusters] = by_key
    key = (filter_name, listener.name, config.SerializeToString(deterministic=True))
    state: S | None = by_key.get(key)
    if state is None:
        state = build()
        by_key[key] = state
    return state
