"""The request ``aeraki explain`` follows: typed attributes, or a captured frame.

A frame is decoded by the listener's own codec (the class its config names), exactly as the
proxy decodes a downstream request, so the metadata shown is what routes would see; deferred
properties (Dubbo attachments) are loaded, since explaining wants every key. Attributes given
as ``KEY=VALUE`` are added on top (or are the whole request when no frame is given).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aeraki.codec.api import Metadata, Side
from aeraki.codec.registry import resolve_codec
from aeraki.errors import AerakiError, CodecError
from aeraki.proxy.config import ListenerConfig

__all__ = ["APP_PROTOCOL_KEY", "RequestSpec", "read_frame", "request_metadata"]

#: What the proxy's connection adds to every request before routing (``connection.py``).
APP_PROTOCOL_KEY = "x-meta-protocol-application-protocol"

_HEX_JUNK = re.compile(r"0x|\\x|[\s:,]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What the user described: a frame (bytes) and/or attributes."""

    frame: bytes | None
    attributes: tuple[tuple[str, str], ...]


def read_frame(hex_text: str | None, path: str | None) -> bytes | None:
    """The frame from ``--frame-hex`` (spaces, colons, ``0x``/``\\x`` allowed) or ``--frame``
    (a file of raw bytes; ``-`` is not supported, to keep the file's bytes exact).

    Raises:
        AerakiError: the hex is not hex, or the file cannot be read.
    """
    if hex_text is not None:
        try:
            return binascii.unhexlify(_HEX_JUNK.sub("", hex_text))
        except (binascii.Error, ValueError) as exc:
            raise AerakiError(f"--frame-hex: not hexadecimal bytes: {exc}") from None
    if path is not None:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise AerakiError(f"--frame {path}: cannot read: {exc.strerror}") from None
    return None


def request_metadata(spec: RequestSpec, listener: ListenerConfig) -> Metadata:
    """The request as ``listener`` would see it just before routing.

    Raises:
        CodecError: the frame is not a complete request in the listener's protocol (the
            message says which codec and why).
        CodecNotFound: the listener names a codec that cannot be loaded.
    """
    proxy = listener.proxy
    md = Metadata() if spec.frame is None else _decode(spec.frame, proxy.codec)
    for key, value in spec.attributes:
        md.put_string(key, value)
    md.put_string(APP_PROTOCOL_KEY, proxy.application_protocol)
    return md


def _decode(frame: bytes, codec_name: str) -> Metadata:
    codec = resolve_codec(codec_name)(Side.REQUEST)
    try:
        messages: Sequence[Metadata] = codec.decode(frame)
    except CodecError as exc:
        raise CodecError(f"{codec_name}: the frame does not decode: {exc}") from None
    if not messages:
        raise CodecError(f"{codec_name}: the frame is incomplete ({len(frame)} bytes)")
    md = messages[0]
    if md.deferred is not None:
        md.load_strings()
    return md
