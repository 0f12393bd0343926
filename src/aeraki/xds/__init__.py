"""Aeraki's MetaProtocol protos (generated into :mod:`aeraki.xds.gen`) and helpers shared by
the proxy and the control plane.

Importing this package registers every Aeraki message (and the Envoy messages the two planes
exchange) in protobuf's default descriptor pool. That is what makes ``google.protobuf.Any``
and :mod:`google.protobuf.json_format` resolve type URLs such as
``type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy``: both look types
up in the default pool, and a generated module registers its file only when imported.

The ``.proto`` sources live in ``proto/aeraki/xds/gen/`` (regenerate with
``scripts/gen_protos.py``). Their proto *packages*, message names and field numbers are exactly
Aeraki's; only the file paths differ, because protoc derives Python module paths from them.
"""

from __future__ import annotations

from aeraki.xds.registry import (
    CODEC_CONFIG_TYPES,
    FILTER_CONFIG_TYPES,
    TYPE_URL_PREFIX,
    message_class,
    pack,
    register,
    type_url,
    unpack,
)

__all__ = [
    "CODEC_CONFIG_TYPES",
    "FILTER_CONFIG_TYPES",
    "TYPE_URL_PREFIX",
    "message_class",
    "pack",
    "register",
    "type_url",
    "unpack",
]

register()
