"""The proxy's ``/stats/prometheus`` page: every stat in the Prometheus text format 0.0.4.

Names never carry a listener, cluster or service: those are labels, so one dashboard query
covers every service (the complaint about Envoy's ``meta_protocol.dubbo.outbound|20880||
org.apache...request`` names). The mapping:

* listener stats (:data:`~aeraki.proxy.stats.LISTENER_STATS`, the filters' counters) ->
  ``aeraki_meta_protocol_<stat>{listener, stat_prefix, protocol}``;
* cluster stats (:data:`~aeraki.proxy.stats.CLUSTER_STATS`) -> ``aeraki_cluster_<stat>{cluster}``;
* request metrics (:mod:`.metrics`) and the Istio standard metrics (the ``istio_stats``
  filter) as declared there.

Counters get the conventional ``_total`` suffix (unless their name has it). The page is
rendered from the live int slots when scraped: the request path never formats anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from aeraki.metrics import Histogram, MetricSpec, histogram_lines, prometheus_number
from aeraki.proxy.observe.metrics import REQUEST_METRICS, RequestMetrics
from aeraki.proxy.stats import CLUSTER_STATS, LISTENER_STATS

if TYPE_CHECKING:
    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.server import ProxyServer

__all__ = [
    "CONTENT_TYPE",
    "Exposition",
    "MetricSource",
    "exported_name",
    "label_text",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LISTENER_PREFIX = "aeraki_meta_protocol_"
CLUSTER_PREFIX = "aeraki_cluster_"
_LISTENER_LABELS = ("listener", "stat_prefix", "protocol")

_REQUESTS, _DURATION = REQUEST_METRICS


@runtime_checkable
class MetricSource(Protocol):
    """A filter or observer with metrics of its own (e.g. ``istio_stats``)."""

    def export(self, out: Exposition) -> None:
        """Add the current values to ``out``."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(names: Sequence[str], values: Iterable[str]) -> str:
    """``a="1",b="2"`` with values escaped as the text format requires."""
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


def exported_name(prefix: str, spec: MetricSpec) -> str:
    """``prefix + name``, with ``_total`` appended to a counter that lacks it."""
    name = prefix + spec.name.replace(".", "_")
    if spec.kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return name


class Exposition:
    """Samples grouped by family, rendered with one HELP/TYPE header per family."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[MetricSpec, list[str]]] = {}

    def _lines(self, name: str, spec: MetricSpec) -> list[str]:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = (spec, [])
        return family[1]

    def sample(self, spec: MetricSpec, labels: str, value: float, name: str = "") -> None:
        """One counter or gauge sample; ``name`` overrides ``spec.name``."""
        name = name or spec.name
        self._lines(name, spec).append(f"{name}{{{labels}}} {prometheus_number(value)}")

    def histogram(self, spec: MetricSpec, labels: str, histogram: Histogram) -> None:
        """The ``_bucket``/``_sum``/``_count`` samples of one histogram child."""
        self._lines(spec.name, spec).extend(histogram_lines(spec.name, labels, histogram))

    def text(self) -> str:
        """The whole page."""
        out: list[str] = []
        for name, (spec, lines) in self._families.items():
            out.append(f"# HELP {name} {_escape(spec.help)}")
            out.append(f"# TYPE {name} {spec.kind}")
            out += lines
        return "\n".join(out) + "\n"


def _listener(out: Exposition, runtime: ListenerRuntime) -> None:
    proxy = runtime.config.proxy
    values = (runtime.name, proxy.stat_prefix, runtime.application_protocol)
    labels = label_text(_LISTENER_LABELS, values)
    stats = runtime.stats
    for spec in LISTENER_STATS:
        out.sample(spec, labels, getattr(stats, spec.name), exported_name(LISTENER_PREFIX, spec))
    for prefix, holder in stats.filter_stats.items():
        for spec in holder.SPECS:
            name = exported_name(f"{LISTENER_PREFIX}{prefix}_", spec)
            out.sample(spec, labels, getattr(holder, spec.name), name)
    for observer in runtime.observers:
        if isinstance(observer, RequestMetrics):
            _requests(out, values, observer)
    seen: set[int] = set()
    for item in (*runtime.decoder_filters, *runtime.encoder_filters, *runtime.observers):
        if id(item) not in seen and isinstance(item, MetricSource):
            seen.add(id(item))
            item.export(out)


def _requests(out: Exposition, listener: tuple[str, str, str], metrics: RequestMetrics) -> None:
    names = (*_LISTENER_LABELS, "cluster", "method", "response_code")
    for key, count in list(metrics.requests.items()):
        out.sample(_REQUESTS, label_text(names, (*listener, *key)), count)
    hnames = (*_LISTENER_LABELS, "cluster", "response_code")
    for hkey, histogram in list(metrics.durations.items()):
        out.histogram(_DURATION, label_text(hnames, (*listener, *hkey)), histogram)


def render(proxy: ProxyServer) -> str:
    """Every listener's and cluster's stats and metrics, as one exposition page."""
    out = Exposition()
    for listener in proxy.listeners:
        _listener(out, listener.runtime)
    for cluster in proxy.clusters.clusters.values():
        labels = label_text(("cluster",), (cluster.name,))
        for spec in CLUSTER_STATS:
            name = exported_name(CLUSTER_PREFIX, spec)
            out.sample(spec, labels, getattr(cluster.stats, spec.name), name)
    return out.text()
