"""The part of Istio's mesh config that shapes the EnvoyFilters (reference §6.6, §6.7, §13.8).

Aeraki watches ConfigMap ``istio`` (key ``mesh``) in the root namespace and regenerates every
EnvoyFilter when it changes: access logging and tracing of the MetaProtocol proxy come from it.
:func:`parse_mesh_config` reads the same text — a mesh config document, or the whole ConfigMap —
so ``aeraki envoyfilter --mesh`` renders what Aeraki would render in that mesh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from google.protobuf import struct_pb2

__all__ = [
    "DEFAULT_ACCESS_LOG_FORMAT",
    "E2E_MESH",
    "JSON_ACCESS_LOG_FORMAT",
    "MeshConfig",
    "access_log_format",
    "parse_mesh_config",
]

#: §6.6 default text format (two spaces after ``%DURATION%`` are Aeraki's, kept).
DEFAULT_ACCESS_LOG_FORMAT = (
    "[%START_TIME%] %REQ(X-META-PROTOCOL-APPLICATION-PROTOCOL)% %RESPONSE_CODE% "
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%  '
    '"%REQ(X-FORWARDED-FOR)%" "%REQ(X-REQUEST-ID)%" %UPSTREAM_CLUSTER% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%ROUTE_NAME%\n"
)

#: §6.6 JSON map (``accessLogEncoding: JSON`` without a format of its own).
JSON_ACCESS_LOG_FORMAT: Mapping[str, str] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "application_protocol": "%REQ(X-META-PROTOCOL-APPLICATION-PROTOCOL)%",
    "response_code": "%RESPONSE_CODE%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


def access_log_format(
    encoding: str, text: str | None
) -> substitution_format_string_pb2.SubstitutionFormatString:
    """§6.6: the mesh format as Envoy's ``log_format`` — ``text`` (or the default line) for
    TEXT; for JSON, ``text`` when it is a JSON object, else :data:`JSON_ACCESS_LOG_FORMAT`
    (as Aeraki falls back). Shared by the EnvoyFilter renderer and the translation."""
    fmt = substitution_format_string_pb2.SubstitutionFormatString()
    if encoding.upper() == "JSON":
        fields: Any = dict(JSON_ACCESS_LOG_FORMAT)
        try:
            parsed = json.loads(text or "null")
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            fields = parsed
        fmt.json_format.CopyFrom(struct_pb2.Struct())
        fmt.json_format.update(fields)
    else:
        source = base_pb2.DataSource(inline_string=text or DEFAULT_ACCESS_LOG_FORMAT)
        fmt.text_format_source.CopyFrom(source)
    return fmt


class MeshConfigError(ValueError):
    """The mesh config text is not YAML or not shaped like Istio's MeshConfig."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    """Istio ``MeshConfig`` fields Aeraki reads; defaults are Istio's.

    Attributes:
        root_namespace: ``rootNamespace``: where sidecar EnvoyFilters go by default (§5.5).
        access_log_file: ``accessLogFile``; empty = no access log on the proxy (§6.6).
        access_log_format: ``accessLogFormat``; empty = the §6.6 default for the encoding.
        access_log_encoding: ``accessLogEncoding``: ``TEXT`` or ``JSON``.
        enable_tracing: ``enableTracing`` (Istio's default: on).
        tracing_sampling: ``defaultConfig.tracing.sampling`` when ``defaultConfig.tracing`` is
            set (even 0, quirk §16.17 replicated), else ``None`` (Aeraki then uses 1.0).
    """

    root_namespace: str = "istio-system"
    access_log_file: str = ""
    access_log_format: str = ""
    access_log_encoding: str = "TEXT"
    enable_tracing: bool = True
    tracing_sampling: float | None = None


#: The mesh config of Aeraki's e2e environment (§15.0), which the §6.1 example shows.
E2E_MESH = MeshConfig(
    access_log_file="/dev/stdout",
    access_log_format=DEFAULT_ACCESS_LOG_FORMAT,
    enable_tracing=True,
    tracing_sampling=100.0,
)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MeshConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def parse_mesh_config(text: str) -> MeshConfig:
    """A :class:`MeshConfig` from mesh config YAML or a ConfigMap holding it under ``mesh``.

    Raises:
        MeshConfigError: not YAML, or a field of the wrong type.
    """
    try:
        doc = _mapping(yaml.safe_load(text), "mesh config")
    except yaml.YAMLError as exc:
        raise MeshConfigError(f"mesh config is not valid YAML: {exc}") from exc
    if doc.get("kind") == "ConfigMap":
        data = _mapping(doc.get("data"), "ConfigMap data")
        if "mesh" not in data:
            raise MeshConfigError("ConfigMap has no data.mesh key")
        return parse_mesh_config(str(data["mesh"]))
    default = MeshConfig()
    tracing = _mapping(_mapping(doc.get("defaultConfig"), "defaultConfig").get("tracing"), "")
    sampling: float | None = None
    if "tracing" in _mapping(doc.get("defaultConfig"), "defaultConfig"):
        raw = tracing.get("sampling", 0.0)
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise MeshConfigError("defaultConfig.tracing.sampling: expected a number")
        sampling = float(raw)
    encoding = str(doc.get("accessLogEncoding") or default.access_log_encoding).upper()
    if encoding not in ("TEXT", "JSON"):
        raise MeshConfigError(f"accessLogEncoding: expected TEXT or JSON, got {encoding}")
    enable = doc.get("enableTracing", default.enable_tracing)
    if not isinstance(enable, bool):
        raise MeshConfigError("enableTracing: expected true or false")
    return MeshConfig(
        root_namespace=str(doc.get("rootNamespace") or default.root_namespace),
        access_log_file=str(doc.get("accessLogFile") or ""),
        access_log_format=str(doc.get("accessLogFormat") or ""),
        access_log_encoding=encoding,
        enable_tracing=enable,
        tracing_sampling=sampling,
    )
