"""A running proxy's configuration, read back from its admin API.

``/config_dump`` renders the proxy's config dataclasses as JSON (``dataclasses.asdict``, enums
by value, flags by member names); :func:`from_plain` reverses that for any of them by their
type hints, so a field added to a config class needs no change here. ``/clusters?format=json``
adds what the dump does not hold: the live hosts of EDS clusters, with weights, placement and
health.

Filter configs are protobuf messages, which the dump holds as their JSON mapping
(``MessageToDict``, without a type); each is parsed back into the message its filter name
takes (:data:`~aeraki.xds.registry.FILTER_CONFIG_TYPES`), so the view holds what a bootstrap
or xDS would have given. A filter name outside that table keeps its JSON.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from aeraki.errors import AerakiError, ConfigError
from aeraki.explain.view import ConfigView
from aeraki.proxy.config import (
    ClusterConfig,
    EndpointConfig,
    FilterConfig,
    ListenerConfig,
    Locality,
    RouteConfig,
    RouteTableConfig,
    SocketAddress,
)
from aeraki.proxy.routing import RouteTable

__all__ = ["fetch_admin", "from_dump", "from_plain"]

#: Seconds to wait for the proxy's admin port.
FETCH_TIMEOUT = 5.0


def from_plain(tp: Any, data: Any, path: str = "") -> Any:
    """``data`` (JSON) as a value of type ``tp`` (a config dataclass, or a field type).

    Raises:
        ConfigError: ``data`` does not fit ``tp`` (``path`` says where).
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if data is None else from_plain(options[0], data, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v, f"{path}[{i}]") for i, v in enumerate(data))
        return tuple(
            from_plain(a, v, f"{path}[{i}]")
            for i, (a, v) in enumerate(zip(args, data, strict=True))
        )
    if origin is not None or tp is Any:  # Mapping[str, Any], dict, ...: JSON as is
        return data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, data, path)
    if isinstance(tp, type) and issubclass(tp, enum.Flag):
        value = tp(0)
        for name in data:
            value |= tp[name.upper()]
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def _dataclass(tp: type[Any], data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected an object for {tp.__name__}, got {data!r}")
    hints = typing.get_type_hints(tp)
    kwargs = {}
    for f in dataclasses.fields(tp):
        if f.name in data:
            where = f"{path}.{f.name}" if path else f.name
            kwargs[f.name] = from_plain(hints[f.name], data[f.name], where)
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, f"cannot rebuild {tp.__name__}: {exc}") from None


def _endpoint(host: Mapping[str, Any]) -> EndpointConfig:
    address, _, port = str(host["address"]).rpartition(":")
    return EndpointConfig(
        address=SocketAddress(address.strip("[]"), int(port)),
        weight=int(host.get("weight", 1)),
        locality=Locality(host.get("region", ""), host.get("zone", ""), host.get("sub_zone", "")),
        priority=int(host.get("priority", 0)),
    )


def _filter_config(item: FilterConfig, path: str) -> FilterConfig:
    """``item`` with its JSON config parsed into its filter's config message."""
    from google.protobuf import json_format

    from aeraki.xds.registry import FILTER_CONFIG_TYPES, message_class

    full_name = FILTER_CONFIG_TYPES.get(item.name)
    if full_name is None or not isinstance(item.config, Mapping):
        return item
    message = message_class(full_name)()
    try:
        json_format.ParseDict(dict(item.config), message)
    except json_format.ParseError as exc:
        raise ConfigError(path, f"cannot rebuild the config of {item.name}: {exc}") from None
    return dataclasses.replace(item, config=message)


def _listener(item: Any, path: str) -> ListenerConfig:
    listener: ListenerConfig = from_plain(ListenerConfig, item, path)
    filters = tuple(
        _filter_config(f, f"{path}.proxy.filters[{i}].config")
        for i, f in enumerate(listener.proxy.filters)
    )
    proxy = dataclasses.replace(listener.proxy, filters=filters)
    return dataclasses.replace(listener, proxy=proxy)


def from_dump(
    dump: Mapping[str, Any], clusters: Mapping[str, Any] | None = None, source: str = "dump"
) -> ConfigView:
    """A view of a proxy from its ``/config_dump`` and ``/clusters?format=json`` documents.

    Raises:
        ConfigError: a document is not what the proxy's admin API serves.
    """
    listeners = tuple(
        _listener(item, f"listeners[{i}]") for i, item in enumerate(dump.get("listeners", []))
    )
    configs = {
        c.name: c
        for i, item in enumerate(dump.get("clusters", []))
        if (c := from_plain(ClusterConfig, item, f"clusters[{i}]"))
    }
    routes = {
        name: RouteTable.compile(
            RouteTableConfig(
                name=name, routes=tuple(from_plain(RouteConfig, r, name) for r in items)
            )
        )
        for name, items in dump.get("rds_routes", {}).items()
    }
    endpoints: dict[str, tuple[EndpointConfig, ...]] = {}
    health: dict[str, str] = {}
    for status in (clusters or {}).get("cluster_statuses", []):
        hosts = status.get("host_statuses", [])
        config = configs.get(status["name"])
        if config is not None and not config.endpoints:
            endpoints[config.eds_service_name or config.name] = tuple(_endpoint(h) for h in hosts)
        for h in hosts:
            if h["health_flags"] != "healthy":
                health[f"{status['name']}/{h['address']}"] = h["health_flags"]
    node = dump.get("bootstrap", {})
    return ConfigView(
        source,
        listeners,
        configs,
        routes,
        endpoints,
        health,
        node_id=str(node.get("node_id", "")),
        node_metadata=dict(node.get("node_metadata", {})),
        live=True,
    )


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.URLError as exc:
        raise AerakiError(f"cannot fetch {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise AerakiError(f"cannot fetch {url}: {exc}") from None


def fetch_admin(address: str) -> ConfigView:
    """The configuration in force in the proxy whose admin listens on ``address``
    (``HOST:PORT`` or ``http://HOST:PORT``).

    Raises:
        AerakiError: the admin port does not answer or answers something else.
    """
    base = address if "://" in address else f"http://{address}"
    base = base.rstrip("/")
    dump = _get_json(base + "/config_dump")
    clusters = _get_json(base + "/clusters?format=json")
    if not isinstance(dump, dict) or "listeners" not in dump:
        raise AerakiError(f"{base}/config_dump: not an aeraki proxy's config dump")
    return from_dump(dump, clusters, source=f"proxy admin {base}")
