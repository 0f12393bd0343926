"""Sans-I/O codecs: the per-protocol part of the proxy (see :mod:`aeraki.codec.api`)."""

from aeraki.codec.api import (
    Capabilities,
    Codec,
    ErrorType,
    LocalError,
    MessageType,
    Metadata,
    Mutation,
    ResponseStatus,
    Side,
)
from aeraki.errors import CodecError

__all__ = [
    "Capabilities",
    "Codec",
    "CodecError",
    "ErrorType",
    "LocalError",
    "MessageType",
    "Metadata",
    "Mutation",
    "ResponseStatus",
    "Side",
]
