"""``aeraki.meta_protocol.filters.istio_stats``: Istio's standard metrics (reference §22.5).

``istio_requests_total``, ``istio_request_duration_milliseconds``, ``istio_request_bytes`` and
``istio_response_bytes``, labelled with the source and destination workloads: this node on
one side, the peer named by ``x-envoy-peer-metadata`` (put there by the peer's
``metadata_exchange`` filter) on the other — taken from the request on an INBOUND listener
(``reporter="destination"``) and from the response otherwise (``reporter="source"``).

As in Aeraki, a request is reported when its upstream response is forwarded (an encoder
filter); local replies and one-way requests are not. Unlike Aeraki (which reports only in
non-multiplexed mode) multiplexed listeners report too, and ``request_protocol`` (the
listener's application protocol) is emitted as Istio's HTTP metrics do.

Per request: the peer's label values are cached by the header value (a peer sends the same
value every time, so the base64 + protobuf parse runs once per peer), and the metric child is
a dict entry keyed by ``(peer labels, destination service, response code)``.
"""

from __future__ import annotations

import time
from bisect import bisect_left as _bisect_left
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aeraki.codec.api import ResponseStatus
from aeraki.metrics import MetricSpec
from aeraki.proxy.filters.api import FilterStatus, register_filter
from aeraki.proxy.filters.metadata_exchange import PEER_METADATA, decode_peer_metadata
from aeraki.proxy.observe.metrics import Histogram
from aeraki.proxy.observe.prometheus import Exposition, label_text

if TYPE_CHECKING:
    from aeraki.codec.api import Metadata, Mutation
    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.request import ActiveRequest

__all__ = ["ISTIO_LABELS", "ISTIO_METRICS", "NAME", "IstioStatsFilter", "node_labels"]

NAME = "aeraki.meta_protocol.filters.istio_stats"
UNKNOWN = "unknown"
#: Distinct peers whose labels are cached; past it the cache starts over (bounded memory).
MAX_PEERS = 1024
_monotonic = time.monotonic
_OK = ResponseStatus.OK

ISTIO_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("istio_requests_total", "counter", "Requests reported by the Istio stats filter."),
    MetricSpec(
        "istio_request_duration_milliseconds",
        "histogram",
        "Time from a request's decoding to its response (ms).",
    ),
    MetricSpec("istio_request_bytes", "histogram", "Request message sizes (bytes)."),
    MetricSpec("istio_response_bytes", "histogram", "Response message sizes (bytes)."),
)
_REQUESTS, _DURATION, _REQUEST_BYTES, _RESPONSE_BYTES = ISTIO_METRICS

_NODE_FIELDS = (
    "workload",
    "workload_namespace",
    "cluster",
    "app",
    "version",
    "canonical_service",
    "canonical_revision",
)
#: Label names in Aeraki's emission order (§22.5), then ``request_protocol``.
ISTIO_LABELS: tuple[str, ...] = (
    "reporter",
    *(f"source_{f}" for f in _NODE_FIELDS),
    "destination_workload",
    "destination_service_namespace",
    *(f"destination_{f}" for f in _NODE_FIELDS[1:]),
    "destination_service",
    "destination_service_name",
    "response_code",
    "request_protocol",
)

NodeLabels = tuple[str, str, str, str, str, str, str]


def node_labels(node: Mapping[str, Any]) -> NodeLabels:
    """A node's label values (order of ``_NODE_FIELDS``); missing ones are ``unknown``."""
    labels = node.get("LABELS")
    labels = labels if isinstance(labels, Mapping) else {}

    def text(value: Any, default: str = UNKNOWN) -> str:
        return value if isinstance(value, str) and value else default

    workload = text(node.get("WORKLOAD_NAME"))
    return (
        workload,
        text(node.get("NAMESPACE")),
        text(node.get("CLUSTER_ID")),
        text(labels.get("app")),
        text(labels.get("version")),
        text(labels.get("service.istio.io/canonical-name"), workload),
        text(labels.get("service.istio.io/canonical-revision"), "latest"),
    )


class _Child:
    """The four metrics of one label combination."""

    __slots__ = ("duration", "request_bytes", "requests", "response_bytes")

    def __init__(self) -> None:
        self.requests = 0
        self.duration = Histogram()
        self.request_bytes = Histogram()
        self.response_bytes = Histogram()


class IstioStatsFilter:
    """Reports each forwarded response (see the module docstring)."""

    __slots__ = ("children", "destination_service", "inbound", "local", "peers", "protocol")

    def __init__(
        self, local: NodeLabels, *, inbound: bool, destination_service: str, protocol: str
    ) -> None:
        self.local = local
        self.inbound = inbound
        self.destination_service = destination_service or UNKNOWN
        self.protocol = protocol
        #: ``x-envoy-peer-metadata`` value -> the peer's label values.
        self.peers: dict[str, NodeLabels] = {}
        #: ``(peer labels, destination service, response code)`` -> metrics.
        self.children: dict[tuple[NodeLabels, str, str], _Child] = {}

    def on_response(
        self, request: ActiveRequest, response: Metadata, mutation: Mutation
    ) -> FilterStatus:
        if self.inbound:
            value = request.metadata.get_string(PEER_METADATA)
            service = self.destination_service
        else:
            value = response.get_string(PEER_METADATA)
            cluster = request.cluster_name
            service = cluster.rsplit("|", 1)[-1] if cluster else UNKNOWN
        peer = self.peers.get(value)
        if peer is None:
            peer = self._peer(value)
        key = (peer, service, "0" if response.response_status is _OK else "1")
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = _Child()
        child.requests += 1
        # Histogram.observe inlined three times (a method call each is a third of the cost).
        ms = (_monotonic() - request.started) * 1000.0
        histogram = child.duration
        histogram.counts[_bisect_left(histogram.bounds, ms)] += 1
        histogram.sum += ms
        size = len(request.metadata.origin)
        histogram = child.request_bytes
        histogram.counts[_bisect_left(histogram.bounds, size)] += 1
        histogram.sum += size
        size = len(response.origin)
        histogram = child.response_bytes
        histogram.counts[_bisect_left(histogram.bounds, size)] += 1
        histogram.sum += size
        return FilterStatus.CONTINUE

    def _peer(self, value: str) -> NodeLabels:
        if len(self.peers) >= MAX_PEERS:
            self.peers.clear()
        peer = self.peers[value] = node_labels(decode_peer_metadata(value))
        return peer

    def label_values(self, peer: NodeLabels, service: str, code: str) -> tuple[str, ...]:
        """Every label value of one child, in :data:`ISTIO_LABELS` order."""
        source, destination = (peer, self.local) if self.inbound else (self.local, peer)
        return (
            "destination" if self.inbound else "source",
            *source,
            destination[0],
            destination[1],
            *destination[1:],
            service,
            service,
            code,
            self.protocol,
        )

    def export(self, out: Exposition) -> None:
        """Add the four metrics of every label combination seen (``MetricSource``)."""
        for (peer, service, code), child in list(self.children.items()):
            labels = label_text(ISTIO_LABELS, self.label_values(peer, service, code))
            out.sample(_REQUESTS, labels, child.requests)
            out.histogram(_DURATION, labels, child.duration)
            out.histogram(_REQUEST_BYTES, labels, child.request_bytes)
            out.histogram(_RESPONSE_BYTES, labels, child.response_bytes)


def _factory(config: Any, listener: ListenerRuntime) -> IstioStatsFilter:
    return IstioStatsFilter(
        node_labels(listener.node_metadata),
        inbound=listener.config.traffic_direction == "INBOUND",
        destination_service=config.destination_service,
        protocol=listener.application_protocol,
    )


register_filter(NAME, _factory)
