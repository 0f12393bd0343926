"""The one exception tree of the project.

Every error the project raises on purpose is an ``AerakiError``. Lower-level errors
(``struct.error``, ``KeyError``, ``UnicodeDecodeError``, protobuf parse errors, …) are
translated at the boundary where they occur, so callers handle one tree::

    AerakiError
    ├── ConfigError          bad configuration (bootstrap, xDS resource, manifest, CLI value);
    │                        carries the field path that is wrong
    ├── CodecError           bytes that do not follow the protocol (raised by codecs only)
    │   └── CodecNotFound    a codec name or import path that resolves to nothing
    └── UpstreamError        an upstream connection could not be made or was lost
"""

from __future__ import annotations

__all__ = ["AerakiError", "CodecError", "CodecNotFound", "ConfigError", "UpstreamError"]


class AerakiError(Exception):
    """Base of every error this project raises deliberately."""


class ConfigError(AerakiError):
    """A configuration value is invalid or unsupported.

    Args:
        path: where the problem is, as a dotted field path
            (``static_resources.listeners[0].address.socket_address.port_value``).
        message: what is wrong, in words a user can act on.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class CodecError(AerakiError):
    """Bytes that cannot be decoded (or a message that cannot be encoded) by a codec.

    The only exception a codec may let escape from ``decode``/``encode``; the proxy closes
    the offending connection alone when it sees one.
    """


class CodecNotFound(CodecError):
    """No codec is registered under a name, and the name is no importable ``module:Class``."""


class UpstreamError(AerakiError):
    """An upstream connection failed (connect, reset, close or timeout)."""
