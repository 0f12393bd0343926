"""The filter framework: decoder filters see requests, encoder filters see responses.

A filter is built once per listener from its config and called for every message, so a
stateless filter costs nothing per request but the call. It returns a
:class:`FilterStatus`: ``CONTINUE`` passes the message on; ``STOP`` means the filter has
answered the request itself (e.g. ``request.local_reply(...)``) or dropped the response;
``PAUSE`` (decoder filters only) means the filter waits for something asynchronous (a rate
limit service, a fault delay) and will call ``request.resume_decoding()`` exactly once when
it is done — unless it answers the request instead. A paused request is still bounded by the
route timeout and dropped cleanly if the client goes away meanwhile (``request.is_done``).
The router is the terminal step of the decoder chain and is always present (reference §21,
§22.1); the chain order for encoder filters is the configured order, as in Aeraki.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from aeraki.errors import ConfigError

if TYPE_CHECKING:
    from aeraki.codec.api import Metadata, Mutation
    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.request import ActiveRequest

__all__ = [
    "ROUTER_FILTER",
    "ClusterRefs",
    "DecoderFilter",
    "EncoderFilter",
    "FilterCheck",
    "FilterFactory",
    "FilterStatus",
    "RequestObserver",
    "build_filters",
    "check_filter_config",
    "register_filter",
]

#: The terminal router filter's config name (reference §22.1).
ROUTER_FILTER = "aeraki.meta_protocol.filters.router"


class FilterStatus(enum.Enum):
    """What a filter decided about a message."""

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"


class DecoderFilter(Protocol):
    """Sees each request before the router."""

    def on_request(self, request: ActiveRequest) -> FilterStatus:
        """Inspect or change ``request.metadata``/``request.mutation``; maybe answer it."""


class EncoderFilter(Protocol):
    """Sees each response before it is written downstream."""

    def on_response(
        self, request: ActiveRequest, response: Metadata, mutation: Mutation
    ) -> FilterStatus:
        """Inspect the response; add to ``mutation`` to change it."""


class RequestObserver(Protocol):
    """Told about every request of a listener once it has ended (access logs, metrics,
    tracing), after the answer was handed to the connection.

    It reads, never changes: ``request.metadata``, ``route``, ``cluster_name``,
    ``last_host``, ``attempts``, ``started``/``ended`` (monotonic seconds), and the ending —
    ``response`` (the upstream's, forwarded), ``local_error`` (the proxy answered), or
    neither (one-way, or the client left). It must not raise and must not block.
    """

    def on_request_done(self, request: ActiveRequest) -> None:
        """Account one ended request."""


#: Builds a filter from its (unpacked) config message for one listener. The result may be a
#: decoder filter, an encoder filter, or both.
FilterFactory = Callable[[Any, "ListenerRuntime"], object]

#: ``(path, cluster name)`` of each cluster a filter config names (checked like routes').
ClusterRefs = list[tuple[str, str]]

#: Validates a filter's config once, when it arrives (bootstrap or xDS), so that building the
#: filter later cannot fail: returns every problem (each naming its path under ``path``) and
#: appends the clusters the config names to the refs list.
FilterCheck = Callable[[Any, str, ClusterRefs], list[ConfigError]]

_factories: dict[str, FilterFactory | None] = {ROUTER_FILTER: None}
_checks: dict[str, FilterCheck] = {}

#: Built-in filters by config name -> module, imported on first use: a proxy that configures
#: none of them does not pay for their imports (the global rate limit pulls in grpc).
_BUILTIN_MODULES = {
    "aeraki.meta_protocol.filters.local_ratelimit": "aeraki.proxy.filters.local_ratelimit",
    "aeraki.meta_protocol.filters.ratelimit": "aeraki.proxy.filters.ratelimit",
    "aeraki.meta_protocol.filters.metadata_exchange": "aeraki.proxy.filters.metadata_exchange",
    "aeraki.meta_protocol.filters.istio_stats": "aeraki.proxy.filters.istio_stats",
}


def register_filter(name: str, factory: FilterFactory, check: FilterCheck | None = None) -> None:
    """Make filter ``name`` available to configs; duplicate names fail loudly.

    ``check`` validates a config of this filter when it arrives (see :data:`FilterCheck`).
    """
    if name in _factories:
        raise ConfigError("meta_protocol_filters", f"filter {name!r} is already registered")
    _factories[name] = factory
    if check is not None:
        _checks[name] = check


def _load_builtin(name: str) -> None:
    """Import the module of built-in filter ``name`` (it registers itself) if not yet done."""
    module = _BUILTIN_MODULES.get(name)
    if module is not None and name not in _factories:
        importlib.import_module(module)


def check_filter_config(name: str, config: Any, path: str, refs: ClusterRefs) -> list[ConfigError]:
    """Problems of ``config`` for filter ``name`` (none for a filter without a check)."""
    _load_builtin(name)
    check = _checks.get(name)
    return check(config, path, refs) if check is not None else []


def build_filters(
    entries: tuple[tuple[str, Any], ...], listener: ListenerRuntime
) -> tuple[list[DecoderFilter], list[EncoderFilter]]:
    """Instantiate the configured filters, split into decoder and encoder chains.

    Raises:
        ConfigError: a filter name is unknown.
    """
    decoders: list[DecoderFilter] = []
    encoders: list[EncoderFilter] = []
    for index, (name, config) in enumerate(entries):
        _load_builtin(name)
        if name not in _factories:
            raise ConfigError(f"meta_protocol_filters[{index}].name", f"unknown filter {name!r}")
        factory = _factories[name]
        if factory is None:
            continue  # the router: always the terminal step
        built = factory(config, listener)
        if hasattr(built, "on_request"):
            decoders.append(cast(DecoderFilter, built))
        if hasattr(built, "on_response"):
            encoders.append(cast(EncoderFilter, built))
    return decoders, encoders
