"""Request metrics of a listener: requests by method and outcome, and their duration.

A :class:`RequestMetrics` is the listener's metrics observer (``ListenerRuntime.observers``):
told about every ended request, it counts it under ``(cluster, method, response code)`` and
puts its duration into the ``(cluster, response code)`` histogram. A label combination is a
tuple key into a dict of children (a count and a :class:`Histogram`) built on first sight (the
"cached label children" of a Prometheus client, without its locks), so a request costs one
dict lookup, a bisect and three int additions, and no allocation but the key.

Cardinality is bounded: each listener admits at most :data:`MAX_METHODS` distinct method
names; later new ones are counted as ``method="other"`` (a client sending random method names
must not grow the proxy's memory or the scraper's series without limit). Cluster names and
response codes come from configuration and a closed set.

The exposition (:mod:`aeraki.proxy.observe.prometheus`) reads these objects; every family is
declared once in :data:`REQUEST_METRICS`.
"""

from __future__ import annotations

from bisect import bisect_left as _bisect_left
from typing import TYPE_CHECKING

from aeraki.codec.api import ErrorType, ResponseStatus
from aeraki.metrics import Histogram as BaseHistogram
from aeraki.metrics import MetricSpec

if TYPE_CHECKING:
    from aeraki.proxy.request import ActiveRequest

__all__ = [
    "DURATION_BUCKETS_MS",
    "MAX_METHODS",
    "OTHER_METHOD",
    "REQUEST_METRICS",
    "Histogram",
    "RequestMetrics",
    "response_code",
]

#: Envoy's default histogram bucket bounds (``ConnectionManager``/stats sink defaults), in ms.
DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)

#: Distinct ``method`` label values a listener keeps before folding new ones into "other".
MAX_METHODS = 200
OTHER_METHOD = "other"

_OK = ResponseStatus.OK

#: ``response_code`` of a request that ended without an answer (one-way, or client gone).
NO_RESPONSE = "NONE"

#: ``response_code`` of a local reply, by error type (Envoy-style names).
_LOCAL_CODES: dict[ErrorType, str] = {t: t.name for t in ErrorType}

REQUEST_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "aeraki_meta_protocol_requests_total",
        "counter",
        "Requests ended, by cluster, method and response code (OK, ERROR, the local reply's "
        "error type, or NONE for one-way and abandoned requests).",
    ),
    MetricSpec(
        "aeraki_meta_protocol_request_duration_milliseconds",
        "histogram",
        "Time from a request's decoding to its end, by cluster and response code.",
    ),
)


class Histogram(BaseHistogram):
    """A histogram in :data:`DURATION_BUCKETS_MS` unless told otherwise."""

    __slots__ = ()

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS_MS) -> None:
        super().__init__(bounds)


def response_code(request: ActiveRequest) -> str:
    """How ``request`` ended: ``OK``/``ERROR`` (the upstream's answer), the local reply's
    error type, or ``NONE``."""
    response = request.response
    if response is not None:
        return "OK" if response.response_status is _OK else "ERROR"
    error = request.local_error
    if error is not None:
        return _LOCAL_CODES[error.type]
    return NO_RESPONSE


class _Child:
    """One label combination's series: its request count and its duration histogram (shared
    by the methods of a ``(cluster, response code)``)."""

    __slots__ = ("count", "histogram")

    def __init__(self, histogram: Histogram) -> None:
        self.count = 0
        self.histogram = histogram


class RequestMetrics:
    """The metrics observer of one listener (see the module docstring)."""

    __slots__ = ("children", "durations", "max_methods", "methods")

    def __init__(self, max_methods: int = MAX_METHODS) -> None:
        self.max_methods = max_methods
        #: method names admitted as label values.
        self.methods: set[str] = set()
        #: ``(cluster, response code)`` -> duration histogram (ms).
        self.durations: dict[tuple[str, str], Histogram] = {}
        #: ``(cluster, method, response code)`` -> its series (the cached child: one lookup
        #: per request finds both the counter and the histogram).
        self.children: dict[tuple[str, str, str], _Child] = {}

    @property
    def requests(self) -> dict[tuple[str, str, str], int]:
        """``(cluster, method, response code)`` -> requests (a snapshot, for the exposition)."""
        return {key: child.count for key, child in list(self.children.items())}

    def on_request_done(self, request: ActiveRequest) -> None:
        """Count ``request`` and its duration."""
        response = request.response
        if response is not None:
            code = "OK" if response.response_status is _OK else "ERROR"
        else:
            code = response_code(request)
        method = request.metadata.strings.get("method", "")
        if method not in self.methods:
            method = self._admit(method)
        key = (request.cluster_name, method, code)
        child = self.children.get(key)
        if child is None:
            child = self._child(key)
        child.count += 1
        histogram = child.histogram
        ms = (request.ended - request.started) * 1000.0
        histogram.counts[_bisect_left(histogram.bounds, ms)] += 1
        histogram.sum += ms

    def _admit(self, method: str) -> str:
        """``method`` as a label value: itself while there is room, else ``other``."""
        if len(self.methods) >= self.max_methods:
            return OTHER_METHOD
        self.methods.add(method)
        return method

    def _child(self, key: tuple[str, str, str]) -> _Child:
        """Create the series of a new label combination."""
        cluster, _, code = key
        histogram = self.durations.get((cluster, code))
        if histogram is None:
            histogram = self.durations[(cluster, code)] = Histogram()
        child = self.children[key] = _Child(histogram)
        return child
