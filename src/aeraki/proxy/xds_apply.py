"""xDS resources -> runtime config values, with the same checks as the bootstrap.

A resource the proxy cannot honour is rejected with its field path, exactly as in a
bootstrap file; the xDS client turns the message into a NACK and keeps the last good
configuration (reference §15: "a trial route table is built; bad regex etc. ⇒ rejected").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

import aeraki.xds  # noqa: F401 - registers the Aeraki message types for Any unpacking
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap_clusters import convert_cluster, convert_load_assignment
from aeraki.proxy.bootstrap_listeners import convert_listener
from aeraki.proxy.bootstrap_problems import Problems
from aeraki.proxy.bootstrap_routes import (
    ClusterRef,
    route_table_from_http_rds,
    route_table_from_meta,
)
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import ClusterConfig, EndpointConfig, ListenerConfig, RouteTableConfig
from aeraki.proxy.routing import RouteTable
from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as meta_route

__all__ = [
    "TYPE_CDS",
    "TYPE_EDS",
    "TYPE_LDS",
    "TYPE_META_RDS",
    "TYPE_RDS",
    "clusters_from_resources",
    "endpoints_from_resource",
    "listeners_from_resources",
    "route_table_from_resource",
]

_PREFIX = "type.googleapis.com/"
TYPE_CDS = _PREFIX + "envoy.config.cluster.v3.Cluster"
TYPE_EDS = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_LDS = _PREFIX + "envoy.config.listener.v3.Listener"
#: MetaProtocol routes travel in the HTTP RDS type (Aeraki's MetaRDS, reference §6.9) ...
TYPE_RDS = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
#: ... or, from our own control plane, as the native MetaProtocol message inside it.
TYPE_META_RDS = _PREFIX + "aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration"


def _unpack(resource: any_pb2.Any, cls: type[Any], path: str) -> Any:
    message = cls()
    if not resource.Unpack(message):
        raise ConfigError(path, f"expected {cls.DESCRIPTOR.full_name}, got {resource.type_url}")
    return message


def clusters_from_resources(resources: Sequence[any_pb2.Any]) -> list[ClusterConfig]:
    """CDS resources as cluster configs.

    Raises:
        ConfigError: any resource is invalid or uses an unsupported field (all listed).
    """
    problems = Problems("CDS")
    out: list[ClusterConfig] = []
    for i, resource in enumerate(resources):
        cluster = _unpack(resource, cluster_pb2.Cluster, f"resources[{i}]")
        path = f"cluster {cluster.name or i}"
        check_supported(cluster, path, problems)
        out.append(convert_cluster(cluster, path, problems, has_ads=True))
    problems.raise_if_any()
    return out


def endpoints_from_resource(resource: any_pb2.Any) -> tuple[str, tuple[EndpointConfig, ...]]:
    """An EDS resource as (resource name, endpoints).

    Raises:
        ConfigError: the assignment is invalid.
    """
    assignment = _unpack(resource, endpoint_pb2.ClusterLoadAssignment, "resource")
    problems = Problems("EDS")
    path = f"cluster_load_assignment {assignment.cluster_name}"
    check_supported(assignment, path, problems)
    endpoints = convert_load_assignment(assignment, path, problems)
    problems.raise_if_any()
    return assignment.cluster_name, endpoints


def listeners_from_resources(resources: Sequence[any_pb2.Any]) -> list[ListenerConfig]:
    """LDS resources as listener configs (only MetaProtocol listeners are supported).

    Raises:
        ConfigError: any resource is invalid or uses an unsupported field (all listed).
    """
    problems = Problems("LDS")
    refs: list[ClusterRef] = []  # dynamic routes may name clusters CDS has not sent yet
    out: list[ListenerConfig] = []
    for i, resource in enumerate(resources):
        listener = _unpack(resource, listener_pb2.Listener, f"resources[{i}]")
        path = f"listener {listener.name or i}"
        check_supported(listener, path, problems)
        converted = convert_listener(listener, path, problems, refs, has_ads=True)
        if converted is not None:
            out.append(converted)
    problems.raise_if_any()
    return out


def route_table_from_resource(resource: any_pb2.Any) -> tuple[str, RouteTable]:
    """An RDS resource (HTTP carrier or native MetaProtocol routes) compiled.

    Raises:
        ConfigError: the routes are invalid (bad regex, zero weights, unsupported field…).
    """
    config: RouteTableConfig
    if resource.type_url == TYPE_META_RDS:
        message = _unpack(resource, meta_route.RouteConfiguration, "resource")
        config = route_table_from_meta(
            message, path=f"route_configuration {message.name}", source="RDS"
        )
    else:
        message = _unpack(resource, route_pb2.RouteConfiguration, "resource")
        problems = Problems("RDS")
        check_supported(message, f"route_configuration {message.name}", problems)
        problems.raise_if_any()
        config = route_table_from_http_rds(
            message, path=f"route_configuration {message.name}", source="RDS"
        )
    return message.name, RouteTable.compile(config)
