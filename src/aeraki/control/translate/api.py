"""The translation's inputs and output: who asks (:class:`NodeInfo`), how
(:class:`TranslateOptions`), and what it gets (:class:`Translation`).

Node metadata keys read (all optional; Istio's names where Istio has one):

- ``NAMESPACE``: the node's namespace for ``exportTo`` visibility (default ``"default"``).
- ``SERVICES``: hosts this node calls (list, or comma-separated string); narrows the outbound
  services to those hosts plus what their routes send to. Absent: every visible service.
- ``LABELS``: the node's workload labels; a ServiceEntry whose workload selector they match
  makes the node that service's server sidecar (inbound listeners, reference §6.2).
- ``INSTANCE_IPS``: the node's IPs (list or comma-separated); the first is where inbound
  listeners bind (default: the bind address).
- ``BIND_ADDRESS``: overrides :attr:`TranslateOptions.bind_address` for this node.
- the node's ``locality`` (region/zone/sub_zone, not metadata): endpoints are ranked by it
  when a DestinationRule enables locality failover (:mod:`.locality`).
- ``AERAKI_DATA_PLANE``: ``python`` (default, our proxy), ``envoy`` (stock Envoy: native
  ``dubbo_proxy``/``thrift_proxy`` for ``tcp-dubbo``/``tcp-thrift`` ports, reference §8–§9; no
  MetaProtocol listeners) or ``meta-protocol-proxy`` (Envoy with Aeraki's MetaProtocol build:
  both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from aeraki.control.model.base import Problem

__all__ = [
    "DATA_PLANE_ENVOY",
    "DATA_PLANE_MPP",
    "DATA_PLANE_PYTHON",
    "LOCAL_RATELIMIT_FILTER",
    "RATELIMIT_FILTER",
    "ROUTER_FILTER",
    "NodeInfo",
    "TranslateOptions",
    "Translation",
]

ROUTER_FILTER = "aeraki.meta_protocol.filters.router"
LOCAL_RATELIMIT_FILTER = "aeraki.meta_protocol.filters.local_ratelimit"
RATELIMIT_FILTER = "aeraki.meta_protocol.filters.ratelimit"

DATA_PLANE_PYTHON = "python"
DATA_PLANE_ENVOY = "envoy"
DATA_PLANE_MPP = "meta-protocol-proxy"
_DATA_PLANES = (DATA_PLANE_PYTHON, DATA_PLANE_ENVOY, DATA_PLANE_MPP)


def _strings(value: Any) -> tuple[str, ...]:
    """A list of strings from metadata written as a list or as ``"a,b"``."""
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """The proxy asking for configuration: its id, cluster and metadata (module docstring)."""

    id: str
    cluster: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: (region, zone, sub_zone) from ``node.locality``; empty strings when not given.
    locality: tuple[str, str, str] = ("", "", "")

    @classmethod
    def from_proto(cls, node: Any) -> NodeInfo:
        """From an ``envoy.config.core.v3.Node`` (``metadata`` Struct becomes a plain dict)."""
        metadata: dict[str, Any] = {}
        if node.HasField("metadata"):
            metadata = json_format.MessageToDict(node.metadata)
        where = node.locality
        return cls(
            id=node.id,
            cluster=node.cluster,
            metadata=metadata,
            locality=(where.region, where.zone, where.sub_zone),
        )

    @property
    def namespace(self) -> str:
        value = self.metadata.get("NAMESPACE")
        return value if isinstance(value, str) and value else "default"

    @property
    def services(self) -> frozenset[str] | None:
        """Hosts the node asked for, or ``None`` for "every visible service"."""
        if "SERVICES" not in self.metadata:
            return None
        return frozenset(_strings(self.metadata["SERVICES"]))

    @property
    def labels(self) -> Mapping[str, str]:
        value = self.metadata.get("LABELS")
        if not isinstance(value, Mapping):
            return {}
        return {str(k): str(v) for k, v in value.items()}

    @property
    def instance_ips(self) -> tuple[str, ...]:
        return _strings(self.metadata.get("INSTANCE_IPS"))

    @property
    def data_plane(self) -> str:
        """One of ``python``/``envoy``/``meta-protocol-proxy``; anything else means python."""
        value = self.metadata.get("AERAKI_DATA_PLANE")
        return value if value in _DATA_PLANES else DATA_PLANE_PYTHON

    def bind_address(self, default: str) -> str:
        value = self.metadata.get("BIND_ADDRESS")
        return value if isinstance(value, str) and value else default


@dataclass(frozen=True, slots=True, kw_only=True)
class TranslateOptions:
    """Knobs with defaults fit for one machine.

    Attributes:
        bind_address: where outbound listeners bind (a loopback ServiceEntry address wins).
        app_address: where a server sidecar finds its local application (inbound clusters).
        connect_timeout: upstream connect timeout unless a DestinationRule's
            ``connectionPool.tcp.connectTimeout`` says otherwise (Istio's default: 10 s).
        default_lb_policy: Envoy ``Cluster.LbPolicy`` name when no DestinationRule sets one
            (Istio's default since 1.14: ``LEAST_REQUEST``).
        supported_filters: MetaProtocol filters the data plane implements (our proxy: the
            router and both rate limits). Rate-limit filters of a MetaRouter are emitted only
            when their name is here; otherwise a warning says the limit is not enforced (a
            proxy NACKs a listener naming a filter it lacks, which would block every listener
            update of that node), so narrow this for a data plane without them.
        rate_limit_side: ``"outbound"`` puts MetaRouter rate limits on the client side listener
            (standalone: one proxy in front of the servers, nobody runs a server sidecar);
            ``"inbound"`` on the server sidecar only, as Aeraki does (reference §6.2–§6.3).
        locality_lb_enabled: the mesh-wide ``localityLbSetting.enabled`` (Istio's default:
            on). A DestinationRule's own ``localityLbSetting`` takes precedence.
        access_log_file: Istio MeshConfig ``accessLogFile``: every MetaProtocol listener
            logs each request there (``/dev/stdout`` works); empty = no access log.
        access_log_encoding: ``accessLogEncoding``: ``TEXT`` or ``JSON``.
        access_log_format: ``accessLogFormat``: the text format, or for JSON a JSON object
            of key -> command operator; empty = Aeraki's default for the encoding.
        tracing_otlp: ``IP:PORT`` of an OTLP/gRPC collector: every MetaProtocol listener
            traces and exports there through a STATIC cluster (:mod:`.telemetry`); empty = off.
        tracing_sampling: percent of requests traced at random (Istio's default: 1).
        istio_telemetry: add ``metadata_exchange`` + ``istio_stats`` to every MetaProtocol
            listener (§6.3), as Aeraki does for Istio sidecars.
    """

    bind_address: str = "127.0.0.1"
    app_address: str = "127.0.0.1"
    connect_timeout: timedelta = timedelta(seconds=10)
    default_lb_policy: str = "LEAST_REQUEST"
    supported_filters: frozenset[str] = frozenset(
        {ROUTER_FILTER, LOCAL_RATELIMIT_FILTER, RATELIMIT_FILTER}
    )
    rate_limit_side: str = "outbound"
    locality_lb_enabled: bool = True
    access_log_file: str = ""
    access_log_encoding: str = "TEXT"
    access_log_format: str = ""
    tracing_otlp: str = ""
    tracing_sampling: float = 1.0
    istio_telemetry: bool = False


@dataclass(frozen=True, slots=True)
class Translation:
    """Resources in a deterministic order (clusters, endpoints, listeners, routes; each by
    name) and the problems found while translating (each names the resource to fix)."""

    resources: tuple[Message, ...]
    problems: tuple[Problem, ...]
