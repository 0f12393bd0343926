"""A small length-prefixed protocol used to test the proxy core without a real protocol.

It is also a complete, readable example of the codec SDK (see ``docs/writing-a-codec.md``).

Wire format (big-endian)::

    u32  length of everything after this field
    u8   message type (aeraki.codec.MessageType value)
    u8   status (0 ok, 1 error, 2 retriable error)
    u64  request id
    u16  number of headers, then per header: u16 key length, key, u16 value length, value
    ...  payload (opaque) up to the end of the frame

Headers are routable properties; a mutation adds or replaces headers; error replies carry
``error-type`` and ``error-message`` headers.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from aeraki.codec.api import (
    Capabilities,
    Codec,
    LocalError,
    MessageType,
    Metadata,
    Mutation,
    ResponseStatus,
    Side,
)
from aeraki.errors import CodecError

__all__ = ["FakeCodec", "build_frame"]

_PREFIX = struct.Struct(">I")
_FIXED = struct.Struct(">BBQH")
_U16 = struct.Struct(">H")
#: Frames above this size are refused: a garbage length must not make us buffer forever.
MAX_FRAME = 16 * 1024 * 1024


def build_frame(
    message_type: MessageType,
    request_id: int,
    headers: dict[str, str] | None = None,
    payload: bytes = b"",
    *,
    status: ResponseStatus = ResponseStatus.OK,
) -> bytes:
    """Serialize one frame; used by the codec itself and by tests acting as peers.

    Raises:
        CodecError: a header key or value longer than its u16 length field (in UTF-8 bytes).
    """
    parts = [_FIXED.pack(int(message_type), int(status), request_id, len(headers or {}))]
    for key, value in (headers or {}).items():
        k, v = key.encode(), value.encode()
        if max(len(k), len(v)) > 0xFFFF:
            raise CodecError(f"fake codec: header {key[:32]!r}... exceeds 65535 bytes")
        parts += [_U16.pack(len(k)), k, _U16.pack(len(v)), v]
    parts.append(payload)
    body = b"".join(parts)
    return _PREFIX.pack(len(body)) + body


class FakeCodec(Codec):
    """Codec for the fake length-prefixed protocol (supports heartbeats and mutation)."""

    name: ClassVar[str] = "aeraki.meta_protocol.codec.fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        request_ids=True, heartbeats=True, response_mutation=True, rewrites_request_id=True
    )

    def __init__(self, side: Side) -> None:
        super().__init__(side)
        self._buffer = bytearray()

    def decode(self, data: bytes) -> list[Metadata]:
        self._buffer += data
        out: list[Metadata] = []
        buf = self._buffer
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = _PREFIX.unpack_from(buf, offset)
            if length < _FIXED.size or length > MAX_FRAME:
                raise CodecError(f"fake codec: invalid frame length {length}")
            end = offset + 4 + length
            if len(buf) < end:
                break
            out.append(self._parse(bytes(buf[offset:end])))
            offset = end
        if offset:
            del buf[:offset]
        return out

    def _parse(self, frame: bytes) -> Metadata:
        mtype, status, request_id, count = _FIXED.unpack_from(frame, 4)
        try:
            message_type = MessageType(mtype)
            response_status = ResponseStatus(status)
        except ValueError as exc:
            raise CodecError(f"fake codec: {exc}") from exc
        md = Metadata(message_type, request_id=request_id, origin=frame)
        md.response_status = response_status
        pos = 4 + _FIXED.size
        headers: dict[str, str] = {}
        for _ in range(count):
            key, pos = _read_string(frame, pos)
            value, pos = _read_string(frame, pos)
            headers[key] = value
            md.put_string(key, value)
        md.header_size = pos
        md.body_size = len(frame) - pos
        md.put("headers", headers)
        # Lets tests exercise codec-declared idempotency (retries never repeat such calls).
        if headers.get("idempotent") == "false":
            md.idempotent = False
        md.put("payload_offset", pos)
        md.operation_name = headers.get("method", "")
        return md

    def encode(
        self, metadata: Metadata, mutation: Mutation, *, request_id: int | None = None
    ) -> bytes:
        if request_id is not None and request_id != metadata.request_id:
            if not 0 <= request_id < 1 << 64:  # struct.error must not escape (codec contract)
                raise CodecError(f"fake codec: request id {request_id} does not fit in 64 bits")
            origin = metadata.origin
            patched = origin[:6] + struct.pack(">Q", request_id) + origin[14:]
            if not mutation:
                return patched
        if not mutation:
            return metadata.origin
        headers = dict(metadata.get("headers") or {})
        headers.update(mutation)
        payload = metadata.origin[metadata.get("payload_offset", len(metadata.origin)) :]
        return build_frame(
            metadata.message_type,
            metadata.request_id if request_id is None else request_id,
            headers,
            payload,
            status=metadata.response_status,
        )

    def on_error(self, metadata: Metadata, error: LocalError) -> bytes:
        # A reply must always be possible: a message longer than the u16 field is cut.
        message = error.message.encode()[:0xFFFF].decode(errors="ignore")
        headers = {"error-type": error.type.name, "error-message": message}
        return build_frame(
            MessageType.ERROR, metadata.request_id, headers, status=ResponseStatus.ERROR
        )

    def heartbeat_reply(self, metadata: Metadata) -> bytes:
        return build_frame(MessageType.HEARTBEAT, metadata.request_id)


def _read_string(frame: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(frame):
        raise CodecError("fake codec: header runs past the frame")
    (size,) = _U16.unpack_from(frame, pos)
    end = pos + 2 + size
    if end > len(frame):
        raise CodecError("fake codec: header runs past the frame")
    try:
        return frame[pos + 2 : end].decode(), end
    except UnicodeDecodeError as exc:
        raise CodecError(f"fake codec: header is not UTF-8: {exc}") from exc
