"""Builders for the xDS resources the xDS tests push (unit tests and real Envoy alike)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import duration_pb2
from google.protobuf.message import Message

from aeraki.xds import pack
from aeraki.xds.gen.meta_protocol_proxy.v1alpha import meta_protocol_proxy_pb2 as mpp_pb2

LOOPBACK = "127.0.0.1"


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def socket_address(port: int, host: str = LOOPBACK) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def eds_cluster(name: str, service_name: str = "") -> cluster_pb2.Cluster:
    """An EDS cluster fed over ADS (``service_name`` defaults to the cluster name)."""
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=1),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_source(), service_name=service_name
        ),
    )


def load_assignment(name: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(p))
                    )
                    for p in ports
                ]
            )
        ],
    )


def tcp_listener(name: str, port: int, cluster: str, host: str = LOOPBACK) -> listener_pb2.Listener:
    """A listener on ``host:port`` whose tcp_proxy forwards to ``cluster``."""
    tcp = tcp_proxy_pb2.TcpProxy(stat_prefix=name, cluster=cluster)
    return listener_pb2.Listener(
        name=name,
        address=socket_address(port, host),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.tcp_proxy", typed_config=pack(tcp)
                    )
                ]
            )
        ],
    )


def meta_listener(name: str, port: int, route_name: str) -> listener_pb2.Listener:
    """A MetaProtocolProxy listener whose routes come over RDS as ``route_name``."""
    mpp = mpp_pb2.MetaProtocolProxy(
        stat_prefix=name,
        rds=mpp_pb2.Rds(config_source=ads_source(), route_config_name=route_name),
    )
    return _one_filter_listener(name, port, "aeraki.meta_protocol_proxy", mpp)


def http_listener(name: str, port: int, route_name: str) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_name),
    )
    return _one_filter_listener(name, port, "envoy.filters.network.http_connection_manager", hcm)


def _one_filter_listener(
    name: str, port: int, filter_name: str, config: Message
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=socket_address(port),
        default_filter_chain=listener_components_pb2.FilterChain(
            filters=[listener_components_pb2.Filter(name=filter_name, typed_config=pack(config))]
        ),
    )


def route_config(name: str, cluster: str) -> route_pb2.RouteConfiguration:
    """The standard-RDS carrier of a MetaProtocol route table (reference §6.9)."""
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="dummy",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        name="default",
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(cluster=cluster),
                    )
                ],
            )
        ],
    )
