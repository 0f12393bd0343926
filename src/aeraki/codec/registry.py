"""Find a codec class by its config name or by an import path.

Built-in codecs are listed by import string so that a protocol's module is imported only
when a listener uses it. A user's codec is named in config as ``package.module:Class`` and
needs no registration at all — no project change, no rebuild.
"""

from __future__ import annotations

import importlib

from aeraki.codec.api import Codec
from aeraki.errors import CodecNotFound

__all__ = ["BUILTIN_CODECS", "register_codec", "resolve_codec"]

#: config name -> "module:Class". Names are Aeraki's, so its configs load unchanged.
BUILTIN_CODECS: dict[str, str] = {
    "aeraki.meta_protocol.codec.thrift": "aeraki.codec.thrift.codec:ThriftCodec",
    "aeraki.meta_protocol.codec.dubbo": "aeraki.codec.dubbo.codec:DubboCodec",
    "aeraki.meta_protocol.codec.fake": "aeraki.testing.fake_codec:FakeCodec",
}

_registered: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec], name: str | None = None) -> type[Codec]:
    """Register ``cls`` under ``name`` (default ``cls.name``); duplicate names fail loudly."""
    key = name or cls.name
    if not key:
        raise CodecNotFound(f"codec class {cls.__qualname__} has no name")
    if key in _registered and _registered[key] is not cls:
        raise CodecNotFound(f"codec name {key!r} is already registered")
    _registered[key] = cls
    return cls


def resolve_codec(name: str) -> type[Codec]:
    """The codec class for a config name (``aeraki.meta_protocol.codec.dubbo``) or an
    import path (``mypackage.mycodec:MyCodec``).

    Raises:
        CodecNotFound: nothing by that name, or the import path does not give a Codec class.
    """
    if name in _registered:
        return _registered[name]
    target = BUILTIN_CODECS.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted({*BUILTIN_CODECS, *_registered}))
        raise CodecNotFound(f"unknown codec {name!r}; known: {known}; or use 'module:Class'")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CodecNotFound(f"codec {name!r}: cannot import {module_name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        raise CodecNotFound(f"codec {name!r}: {target!r} is not a subclass of aeraki.codec.Codec")
    return cls
