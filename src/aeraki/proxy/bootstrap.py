"""Load an Envoy-format bootstrap into the proxy's runtime config (:mod:`aeraki.proxy.config`).

Three stages, so that every problem is reported with the path a user edits:

1. **Parse** YAML/JSON into the real ``envoy.config.bootstrap.v3.Bootstrap`` proto with
   :mod:`google.protobuf.json_format`: unknown fields and wrong types are protobuf's own
   errors, re-worded with their path (each listener and cluster is parsed on its own so one
   typo does not hide the others).
2. **Whitelist** (:mod:`aeraki.proxy.bootstrap_strict`): every set field the proxy does not
   implement is ``not supported yet`` — a config is never half-honoured.
3. **Convert and check values** (ports, weights, regexes, durations, names, cross references).

All problems of stages 2 and 3 are raised together as one
:class:`~aeraki.proxy.bootstrap_problems.ConfigErrors` (a :class:`~aeraki.errors.ConfigError`).
The route converters used by xDS live in :mod:`aeraki.proxy.bootstrap_routes` and are
re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

import aeraki.xds  # noqa: F401  (registers Aeraki types so Any/json_format resolve them)
from aeraki.errors import ConfigError
from aeraki.proxy.bootstrap_clusters import convert_cluster, convert_socket_address
from aeraki.proxy.bootstrap_listeners import convert_listener
from aeraki.proxy.bootstrap_problems import ConfigErrors, Problems, join, parse_message
from aeraki.proxy.bootstrap_routes import (
    ClusterRef,
    check_cluster_refs,
    route_table_from_http_rds,
    route_table_from_meta,
)
from aeraki.proxy.bootstrap_strict import check_supported
from aeraki.proxy.config import (
    AdminConfig,
    AdsConfig,
    ClusterConfig,
    DiscoveryType,
    ListenerConfig,
    Locality,
    ProxyConfig,
)
from aeraki.proxy.observe.tracing_config import convert_provider

__all__ = [
    "ConfigErrors",
    "bootstrap_from_dict",
    "bootstrap_from_proto",
    "load_bootstrap",
    "parse_bootstrap",
    "route_table_from_http_rds",
    "route_table_from_meta",
]

#: ApiConfigSource.ApiType values accepted for ads_config: GRPC, DELTA_GRPC.
_ADS_API_TYPES = {2: "GRPC", 3: "DELTA_GRPC"}
_DELTA_GRPC = 3
#: ApiVersion AUTO (unset) or V3.
_API_VERSIONS = {0, 2}


def load_bootstrap(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read a bootstrap file (JSON if it ends in ``.json`` or starts with ``{``, else YAML).

    Raises:
        ConfigErrors: unreadable file, bad YAML/JSON, or any problem in the config; every
            message names the file and the field path.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors(source, [ConfigError("", f"cannot read: {exc}")]) from exc
    data: Any
    if source.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigErrors(source, [ConfigError("", f"invalid JSON: {exc}")]) from exc
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigErrors(source, [ConfigError("", f"invalid YAML: {exc}")]) from exc
    return bootstrap_from_dict(data, source=source)


def bootstrap_from_dict(data: Any, source: str = "<bootstrap>") -> ProxyConfig:
    """Parse, check and convert a bootstrap given as JSON-like data (see module docstring)."""
    return bootstrap_from_proto(parse_bootstrap(data, source), source)


def parse_bootstrap(data: Any, source: str = "<bootstrap>") -> Any:
    """``data`` as an ``envoy.config.bootstrap.v3.Bootstrap`` (stage 1 only).

    Listeners and clusters are parsed one by one so that each bad one is reported.
    """
    problems = Problems(source)
    if not isinstance(data, Mapping):
        problems.add("", f"a bootstrap must be a mapping, got {type(data).__name__}")
        problems.fail()
    top = dict(data)
    items: dict[str, list[Any]] = {}
    sr_key = next((k for k in ("static_resources", "staticResources") if k in top), None)
    if sr_key is not None and isinstance(top[sr_key], Mapping):
        static = dict(top[sr_key])
        for name, camel in (("listeners", "listeners"), ("clusters", "clusters")):
            if isinstance(static.get(camel), list):
                items[name] = static.pop(camel)
        top[sr_key] = static
    bootstrap = parse_message(top, bootstrap_pb2.Bootstrap, "", problems)
    parsed: dict[str, list[Any]] = {"listeners": [], "clusters": []}
    classes = {"listeners": listener_pb2.Listener, "clusters": cluster_pb2.Cluster}
    for name, raw in items.items():
        for i, item in enumerate(raw):
            msg = parse_message(item, classes[name], f"static_resources.{name}[{i}]", problems)
            if msg is not None:
                parsed[name].append(msg)
    problems.raise_if_any()
    assert bootstrap is not None
    bootstrap.static_resources.listeners.extend(parsed["listeners"])
    bootstrap.static_resources.clusters.extend(parsed["clusters"])
    return bootstrap


def bootstrap_from_proto(bootstrap: Any, source: str = "<bootstrap>") -> ProxyConfig:
    """Stages 2 and 3 on a parsed ``Bootstrap`` proto."""
    problems = Problems(source)
    check_supported(bootstrap, "", problems)

    ads_cluster = _ads_cluster(bootstrap, problems)
    has_ads = ads_cluster is not None

    clusters: list[ClusterConfig] = []
    seen_clusters: set[str] = set()
    for i, cluster in enumerate(bootstrap.static_resources.clusters):
        path = f"static_resources.clusters[{i}]"
        converted = convert_cluster(cluster, path, problems, has_ads=has_ads)
        if converted.name in seen_clusters:
            problems.add(join(path, "name"), f"duplicate cluster name {converted.name!r}")
        seen_clusters.add(converted.name)
        clusters.append(converted)

    if ads_cluster:
        ads_path, ads_name = ads_cluster
        by_name = {c.name: c for c in clusters}
        if ads_name not in by_name:
            problems.add(ads_path, f"unknown cluster {ads_name!r}")
        elif by_name[ads_name].discovery is DiscoveryType.EDS:
            problems.add(ads_path, f"cluster {ads_name!r} must be STATIC or STRICT_DNS, not EDS")

    listeners: list[ListenerConfig] = []
    refs: list[ClusterRef] = []
    seen_names: set[str] = set()
    seen_addresses: set[tuple[str, int]] = set()
    for i, listener in enumerate(bootstrap.static_resources.listeners):
        path = f"static_resources.listeners[{i}]"
        converted_listener = convert_listener(listener, path, problems, refs, has_ads=has_ads)
        if converted_listener is None:
            continue
        if converted_listener.name in seen_names:
            problems.add(join(path, "name"), f"duplicate listener name {converted_listener.name!r}")
        seen_names.add(converted_listener.name)
        addr = (converted_listener.address.host, converted_listener.address.port)
        if addr in seen_addresses:
            problems.add(
                join(path, "address"), f"another listener already uses {converted_listener.address}"
            )
        seen_addresses.add(addr)
        listeners.append(converted_listener)
    tracing_provider = None
    if bootstrap.tracing.HasField("http"):
        tracing_provider = convert_provider(bootstrap.tracing.http, "tracing.http", problems, refs)
    check_cluster_refs(refs, seen_clusters, problems)

    admin = None
    if bootstrap.HasField("admin"):
        address = convert_socket_address(
            bootstrap.admin.address, "admin.address", problems, is_bind=True
        )
        admin = AdminConfig(address=address)

    ads = _ads(bootstrap, ads_cluster, problems)
    problems.raise_if_any()
    return ProxyConfig(
        listeners=tuple(listeners),
        clusters=tuple(clusters),
        admin=admin,
        node_id=bootstrap.node.id,
        node_cluster=bootstrap.node.cluster,
        node_metadata=json_format.MessageToDict(bootstrap.node.metadata),
        node_locality=Locality(
            bootstrap.node.locality.region,
            bootstrap.node.locality.zone,
            bootstrap.node.locality.sub_zone,
        ),
        ads=ads,
        tracing_provider=tracing_provider,
    )


def _ads(
    bootstrap: Any, ads_cluster: tuple[str, str] | None, problems: Problems
) -> AdsConfig | None:
    """What ``dynamic_resources`` asks of the ADS client (``lds_config``/``cds_config`` must
    name ADS: it is the only transport the proxy speaks)."""
    dynamic = bootstrap.dynamic_resources
    flags: dict[str, bool] = {}
    for field, key in (("lds_config", "lds"), ("cds_config", "cds")):
        if not dynamic.HasField(field):
            continue
        path = f"dynamic_resources.{field}"
        if not getattr(dynamic, field).HasField("ads"):
            problems.add(path, "only `ads: {}` is supported")
        elif ads_cluster is None:
            problems.add(path, "needs dynamic_resources.ads_config")
        flags[key] = True
    if ads_cluster is None:
        return None
    delta = dynamic.ads_config.api_type == _DELTA_GRPC
    return AdsConfig(cluster=ads_cluster[1], delta=delta, **flags)


def _ads_cluster(bootstrap: Any, problems: Problems) -> tuple[str, str] | None:
    """(path, cluster name) of the ADS server, if ``dynamic_resources.ads_config`` is set."""
    if not bootstrap.dynamic_resources.HasField("ads_config"):
        return None
    path = "dynamic_resources.ads_config"
    ads = bootstrap.dynamic_resources.ads_config
    if ads.api_type not in _ADS_API_TYPES:
        problems.add(join(path, "api_type"), "must be GRPC or DELTA_GRPC")
    if ads.transport_api_version not in _API_VERSIONS:
        problems.add(join(path, "transport_api_version"), "must be V3")
    if len(ads.grpc_services) != 1:
        problems.add(join(path, "grpc_services"), "exactly one gRPC service is required")
        return None
    service_path = join(path, "grpc_services[0].envoy_grpc.cluster_name")
    name = ads.grpc_services[0].envoy_grpc.cluster_name
    if not name:
        problems.add(service_path, "required")
        return None
    return service_path, name
