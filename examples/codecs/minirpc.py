"""minirpc: the worked example of ``docs/writing-a-codec.md``.

Wire format, big-endian, one frame per message, the same in both directions::

    u32  frame length (of everything after this field)
    u32  request id
    u8   kind: 0 request, 1 response, 2 error, 3 oneway
    u8   method-name length, then the method name (UTF-8)
    u16  header count, then per header: u8 key length, key, u16 value length, value (UTF-8)
    ...  payload (opaque to the proxy) up to the end of the frame

A listener names this codec by import path: ``examples.codecs.minirpc:MiniRpcCodec``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import ClassVar

from aeraki.codec.api import (
    Capabilities,
    Codec,
    CodecError,
    LocalError,
    MessageType,
    Metadata,
    Mutation,
    ResponseStatus,
    Side,
)

__all__ = ["ERROR", "MAX_FRAME", "ONEWAY", "REQUEST", "RESPONSE", "MiniRpcCodec", "build_frame"]

#: Largest accepted value of the length field. Without a cap, four garbage bytes could make
#: the proxy buffer gigabytes waiting for a frame that never ends.
MAX_FRAME = 1024 * 1024

REQUEST, RESPONSE, ERROR, ONEWAY = 0, 1, 2, 3  # wire kinds
# The proxy core knows message types, never wire values: routes REQUEST and ONEWAY, matches
# RESPONSE and ERROR to their request by id.
_TYPES = {
    REQUEST: MessageType.REQUEST,
    RESPONSE: MessageType.RESPONSE,
    ERROR: MessageType.ERROR,
    ONEWAY: MessageType.ONEWAY,
}

_U8, _U16, _U32 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I")
_HEAD = struct.Struct(">IBB")  # request id, kind, method-name length (after the length field)
_METHOD_AT = 4 + _HEAD.size  # where the method name starts in a frame
_MIN_FRAME = _HEAD.size + 2  # smallest length field: no method, no headers, no payload


def build_frame(
    kind: int,
    request_id: int,
    method: str,
    headers: Mapping[str, str] | None = None,
    payload: bytes = b"",
) -> bytes:
    """One complete frame. The codec renders error replies with it; tests play peers with it."""
    name = method.encode()
    if len(name) > 0xFF:
        raise CodecError(f"minirpc: method name of {len(name)} bytes is too long")
    head = _HEAD.pack(request_id, kind, len(name)) + name
    return _with_length(head + _pack_headers(headers or {}) + payload)


def _pack_headers(headers: Mapping[str, str]) -> bytes:
    # Length limits come from the field widths; refusing here is a CodecError (the proxy
    # logs it), where struct would raise struct.error and break the "only CodecError" rule.
    parts = [_U16.pack(len(headers))]
    for key, value in headers.items():
        k, v = key.encode(), value.encode()
        if len(k) > 0xFF or len(v) > 0xFFFF:
            raise CodecError(f"minirpc: header {key[:32]!r} is too long for the wire format")
        parts += [_U8.pack(len(k)), k, _U16.pack(len(v)), v]
    return b"".join(parts)


def _with_length(body: bytes) -> bytes:
    # Never send what our own decode would refuse.
    if len(body) > MAX_FRAME:
        raise CodecError(f"minirpc: frame of {len(body)} bytes exceeds MAX_FRAME")
    return _U32.pack(len(body)) + body


def _text(frame: bytes, start: int, size: int) -> tuple[str, int]:
    # A slice past the end does not fail in Python: check the length against the frame.
    end = start + size
    if end > len(frame):
        raise CodecError("minirpc: a field runs past the end of the frame")
    try:
        return frame[start:end].decode(), end
    except UnicodeDecodeError as exc:
        raise CodecError(f"minirpc: text is not UTF-8: {exc}") from None


class MiniRpcCodec(Codec):
    """Codec for minirpc: routes on the method and headers, mutates headers, rewrites ids."""

    name: ClassVar[str] = "minirpc"
    # Responses carry their request's id, so the proxy may multiplex; encode can rewrite
    # ids (so clients that all start at id 1 can share one upstream connection) and write
    # headers into responses too. minirpc has no heartbeats.
    capabilities: ClassVar[Capabilities] = Capabilities(
        request_ids=True, heartbeats=False, response_mutation=True, rewrites_request_id=True
    )

    # minirpc frames look alike in both directions, so this codec ignores ``self.side``;
    # a protocol whose requests and responses differ would branch on it in decode.
    def __init__(self, side: Side) -> None:
        super().__init__(side)
        self._buffer = bytearray()  # bytes of frames not complete yet

    def decode(self, data: bytes) -> list[Metadata]:
        # TCP delivers any split of the stream: half a frame, or ten frames in one read.
        # Buffer, then cut every complete frame; keep the rest for the next call.
        buffer = self._buffer
        buffer += data
        messages: list[Metadata] = []
        start = 0
        while len(buffer) - start >= 4:
            (length,) = _U32.unpack_from(buffer, start)
            if not _MIN_FRAME <= length <= MAX_FRAME:
                raise CodecError(f"minirpc: invalid frame length {length}")
            end = start + 4 + length
            if end > len(buffer):
                break  # incomplete: wait for more bytes
            messages.append(self._parse(bytes(buffer[start:end])))
            start = end
        del buffer[:start]
        return messages

    def _parse(self, frame: bytes) -> Metadata:
        # Parse what routing needs (method, headers); the payload is never looked at.
        try:
            request_id, kind, method_size = _HEAD.unpack_from(frame, 4)
            if kind not in _TYPES:
                raise CodecError(f"minirpc: unknown kind {kind}")
            method, headers_at = _text(frame, _METHOD_AT, method_size)
            (count,) = _U16.unpack_from(frame, headers_at)
            pos = headers_at + 2
            headers: dict[str, str] = {}
            for _ in range(count):
                key, pos = _text(frame, pos + 1, _U8.unpack_from(frame, pos)[0])
                headers[key], pos = _text(frame, pos + 2, _U16.unpack_from(frame, pos)[0])
        except struct.error as exc:  # a count or length pointing past the frame
            raise CodecError(f"minirpc: truncated frame: {exc}") from None
        md = Metadata(_TYPES[kind], request_id=request_id, origin=frame)
        if kind == ERROR:
            md.response_status = ResponseStatus.ERROR  # counted as response_error
        for key, value in headers.items():
            md.put_string(key, value)  # routable: routes and hash policies may use headers
        md.put_string("method", method)  # set last, so a header named "method" cannot spoof it
        md.operation_name = method  # span and access-log name
        md.header_size, md.body_size = pos, len(frame) - pos
        # Opaque values for encode. It must not write back md.strings: the proxy adds its
        # own properties there (x-meta-protocol-application-protocol) that are not headers.
        md.put("headers", headers)
        md.put("headers_at", headers_at)
        md.put("payload_at", pos)
        return md

    def encode(
        self, metadata: Metadata, mutation: Mutation, *, request_id: int | None = None
    ) -> bytes:
        origin = metadata.origin
        if not mutation and request_id in (None, metadata.request_id):
            return origin  # nothing to change: forward the exact bytes, no copy
        if request_id is None:
            wire_id = origin[4:8]  # the id is the first field after the length
        elif 0 <= request_id <= 0xFFFFFFFF:
            wire_id = _U32.pack(request_id)  # the proxy's id for a shared upstream connection
        else:
            raise CodecError(f"minirpc: request id {request_id} does not fit in u32")
        rest = origin[8:]  # kind, method, headers and payload, as they came
        if mutation:
            # Rewrite only the headers section; kind, method and payload stay as they came.
            # A mutation key replaces a header whatever its case (routable keys ignore case).
            replaced = {key.lower() for key in mutation}
            headers = {
                k: v for k, v in metadata.get("headers").items() if k.lower() not in replaced
            }
            headers.update(mutation)
            rest = (
                origin[8 : metadata.get("headers_at")]
                + _pack_headers(headers)
                + origin[metadata.get("payload_at") :]
            )
        return _with_length(wire_id + rest)

    def on_error(self, metadata: Metadata, error: LocalError) -> bytes:
        # A local reply (no route, upstream down, timeout, …) is an ordinary error frame for
        # the request's id, so the client's own error handling sees it.
        headers = {"error-type": error.type.name}
        return build_frame(
            ERROR, metadata.request_id, metadata.operation_name, headers, error.message.encode()
        )
