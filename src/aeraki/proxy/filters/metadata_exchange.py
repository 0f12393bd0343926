"""``aeraki.meta_protocol.filters.metadata_exchange``: tell the peer proxy who we are (§22.4).

Istio's sidecars learn each other's workload through the ``x-envoy-peer-metadata`` and
``x-envoy-peer-metadata-id`` properties carried in the protocol itself (Dubbo attachments,
THeader headers): the client side (OUTBOUND listener) adds its node metadata to every request,
the server side (INBOUND listener) to every response, and the ``istio_stats`` filter of the
other side labels its metrics with it. The value is the node metadata reduced to Istio's
``FlatNode`` keys, as a serialized ``google.protobuf.Struct`` in standard base64 — computed
once per listener, so a request pays one dict update of the mutation.

A listener with no traffic direction does nothing; neither does a proxy without node
metadata on the way out (an empty value would only cost bytes).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError

from aeraki.proxy.filters.api import FilterStatus, register_filter

if TYPE_CHECKING:
    from aeraki.codec.api import Metadata, Mutation
    from aeraki.proxy.listener import ListenerRuntime
    from aeraki.proxy.request import ActiveRequest

__all__ = [
    "FLAT_NODE_KEYS",
    "NAME",
    "PEER_METADATA",
    "PEER_METADATA_ID",
    "InboundExchange",
    "OutboundExchange",
    "decode_peer_metadata",
    "encode_local_metadata",
    "local_properties",
]

NAME = "aeraki.meta_protocol.filters.metadata_exchange"
PEER_METADATA = "x-envoy-peer-metadata"
PEER_METADATA_ID = "x-envoy-peer-metadata-id"

#: The node metadata keys Istio's FlatNode keeps (reference §22.4).
FLAT_NODE_KEYS = (
    "NAME",
    "NAMESPACE",
    "OWNER",
    "WORKLOAD_NAME",
    "ISTIO_VERSION",
    "MESH_ID",
    "CLUSTER_ID",
    "LABELS",
    "PLATFORM_METADATA",
    "APP_CONTAINERS",
    "INSTANCE_IPS",
)


def encode_local_metadata(node_metadata: Mapping[str, Any]) -> str:
    """The ``x-envoy-peer-metadata`` value for this node ("" when it has no metadata)."""
    flat = {k: node_metadata[k] for k in FLAT_NODE_KEYS if k in node_metadata}
    if not flat:
        return ""
    message = struct_pb2.Struct()
    message.update(flat)
    return base64.b64encode(message.SerializeToString(deterministic=True)).decode("ascii")


def decode_peer_metadata(value: str) -> dict[str, Any]:
    """A peer's node metadata from its ``x-envoy-peer-metadata`` value; ``{}`` when the value
    is missing or not base64 of a ``Struct`` (a peer's bad bytes never fail a request)."""
    if not value:
        return {}
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        message = struct_pb2.Struct()
        message.ParseFromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        return {}
    data: dict[str, Any] = json_format.MessageToDict(message)
    return data


def local_properties(node_id: str, node_metadata: Mapping[str, Any]) -> dict[str, str]:
    """The two properties this node adds to each message (none when it has nothing to say)."""
    value = encode_local_metadata(node_metadata)
    return {PEER_METADATA: value, PEER_METADATA_ID: node_id} if value or node_id else {}


class OutboundExchange:
    """Client side: this node's metadata goes into every request."""

    __slots__ = ("properties",)

    def __init__(self, properties: dict[str, str]) -> None:
        self.properties = properties

    def on_request(self, request: ActiveRequest) -> FilterStatus:
        request.mutation.update(self.properties)
        return FilterStatus.CONTINUE


class InboundExchange:
    """Server side: this node's metadata goes into every forwarded response."""

    __slots__ = ("properties",)

    def __init__(self, properties: dict[str, str]) -> None:
        self.properties = properties

    def on_response(
        self, request: ActiveRequest, response: Metadata, mutation: Mutation
    ) -> FilterStatus:
        mutation.update(self.properties)
        return FilterStatus.CONTINUE


class _Inert:
    """The filter where it has nothing to do (no direction, or no node): not in any chain."""


def _factory(config: Any, listener: ListenerRuntime) -> object:
    del config  # MetadataExchange has no fields
    properties = local_properties(listener.node_id, listener.node_metadata)
    direction = listener.config.traffic_direction
    if not properties:
        return _Inert()
    if direction == "OUTBOUND":
        return OutboundExchange(properties)
    if direction == "INBOUND":
        return InboundExchange(properties)
    return _Inert()


register_filter(NAME, _factory)
