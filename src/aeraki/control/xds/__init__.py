"""The xDS server of the control plane: snapshots in, ADS (SotW and delta) out.

Protocol-agnostic on purpose: translation produces Envoy/Aeraki protobuf resources, this
package versions them, checks their references, stores them per node and streams them to
proxies — our Python proxy, real Envoy, or Envoy with Aeraki's MetaProtocol Proxy.

Typical use::

    cache = SnapshotCache()                       # or SnapshotCache(lambda node: node.cluster)
    server = XdsServer(cache)
    port = await server.start("127.0.0.1", 15010)
    cache.set_snapshot("node-1", Snapshot.from_messages(cluster, cla, listener, routes))

Pieces: :mod:`.snapshot` (immutable, content-versioned resource sets and the consistency
check), :mod:`.cache` (per-node snapshots and watches), :mod:`.streams` (sans-I/O SotW and
delta protocol state), :mod:`.server` (grpc.aio plumbing, status, callbacks), :mod:`.debounce`
(merge bursts of change events into one push).
"""

from __future__ import annotations

from aeraki.control.xds.cache import NodeKey, SnapshotCache, node_id_key
from aeraki.control.xds.debounce import DebouncedPusher, Debouncer, union
from aeraki.control.xds.server import XdsCallbacks, XdsServer, XdsStats
from aeraki.control.xds.snapshot import (
    CLUSTER_TYPE,
    EMPTY_VERSION,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    META_ROUTE_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    WILDCARD_TYPES,
    InconsistentSnapshotError,
    Resource,
    Snapshot,
    resource_name,
)
from aeraki.control.xds.streams import ProxyStatus, StreamKind, TypeStatus

__all__ = [
    "CLUSTER_TYPE",
    "EMPTY_VERSION",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "META_ROUTE_TYPE",
    "PUSH_ORDER",
    "ROUTE_TYPE",
    "WILDCARD_TYPES",
    "DebouncedPusher",
    "Debouncer",
    "InconsistentSnapshotError",
    "NodeKey",
    "ProxyStatus",
    "Resource",
    "Snapshot",
    "SnapshotCache",
    "StreamKind",
    "TypeStatus",
    "XdsCallbacks",
    "XdsServer",
    "XdsStats",
    "node_id_key",
    "resource_name",
    "union",
]
