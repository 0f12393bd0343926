"""``ThriftCodec``: Apache Thrift for the proxy (reference ``meta-protocol-proxy.md`` §28).

Transport (unframed, framed, THeader) and protocol (binary, compact) are detected from the
first bytes of each codec instance and then fixed (§28.1). Decoding is lazy (DESIGN §4): a
framed or THeader message ends where its length prefix says, so only the message begin
(name, type, sequence id) is parsed; an unframed message's end is found with a skip-scanner
that builds no Python values. The received bytes are kept as ``origin`` and forwarded
untouched unless something changes.

Fixes of the reference's defects (§33 item 12): THeader info headers are routable; a
mutation is written as THeader headers; local replies work on THeader; the
TApplicationException type follows the error; header and body sizes are set.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final

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
from aeraki.codec.thrift.protocol import (
    MESSAGE_EXCEPTION,
    Buf,
    MessageBegin,
    NeedMore,
    Protocol,
    application_exception,
    detect_protocol,
    parse_message_begin,
    rewrite_seqid,
    skip_struct,
)
from aeraki.codec.thrift.transport import (
    HEADER_FIXED_SIZE,
    MAX_FRAME_SIZE,
    MAX_UNFRAMED_SIZE,
    HeaderInfo,
    Transport,
    detect_transport,
    frame,
    frame_size,
    header_region,
    parse_header,
    write_header_frame,
)
from aeraki.errors import CodecError

__all__ = ["EXCEPTION_TYPES", "ThriftCodec", "ThriftMessage"]

#: Key of the codec-private :class:`ThriftMessage` in ``Metadata.values``.
_KEY: Final = "thrift"
_MESSAGE_TYPES: Final = {
    1: MessageType.REQUEST,  # CALL
    2: MessageType.RESPONSE,  # REPLY (status OK even for IDL-declared exceptions)
    3: MessageType.ERROR,  # EXCEPTION
    4: MessageType.ONEWAY,  # ONEWAY
}

#: ErrorType -> TApplicationException type (standard Apache Thrift values only, so every
#: client library knows them; see :meth:`ThriftCodec.on_error`).
EXCEPTION_TYPES: Final = {
    ErrorType.ROUTE_NOT_FOUND: 1,  # UNKNOWN_METHOD: nothing serves this method here
    ErrorType.CLUSTER_NOT_FOUND: 6,  # INTERNAL_ERROR
    ErrorType.NO_HEALTHY_UPSTREAM: 6,  # INTERNAL_ERROR
    ErrorType.BAD_RESPONSE: 7,  # PROTOCOL_ERROR: the upstream reply could not be decoded
    ErrorType.UNSPECIFIED: 6,  # INTERNAL_ERROR
    ErrorType.OVER_LIMIT: 6,  # INTERNAL_ERROR (LOADSHEDDING is fbthrift-only)
    ErrorType.TIMEOUT: 6,  # INTERNAL_ERROR (TIMEOUT is fbthrift-only)
}
_U32_MASK: Final = 0xFFFFFFFF
#: A framed strict-binary message's first 12 bytes: frame length, version, (pad) type, name
#: length; then the name and the u32 sequence id (:meth:`ThriftCodec._framed_binary`).
_FRAMED_BINARY_HEAD: Final = struct.Struct(">iHxbi")
_SEQID: Final = struct.Struct(">I")
_BINARY_VERSION: Final = 0x8001
#: The shortest framed binary message: the 12 bytes above, an empty name, the sequence id.
_FRAMED_BINARY_MIN: Final = 16
#: ``Metadata.values[_KEY]`` of a message :meth:`ThriftCodec._framed_binary` decoded: its
#: :class:`ThriftMessage` is built from ``origin`` when ``encode`` or ``on_error`` first need
#: it (:func:`_message_info`). Most messages are forwarded untouched and never do; building
#: it for each costs ~0.5 µs (DESIGN §4 rule 2, parse lazily).
_FRAMED_BINARY: Final = "framed binary, begin not built"


class ThriftMessage:
    """Codec-private facts about a decoded message (stored under ``Metadata.values``)."""

    __slots__ = ("begin", "header", "offset", "protocol", "transport")

    def __init__(
        self,
        transport: Transport,
        protocol: Protocol,
        offset: int,
        begin: MessageBegin,
        header: HeaderInfo | None,
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        #: where the protocol message starts in ``origin`` (after framing / THeader).
        self.offset = offset
        #: message begin; its offsets are relative to ``origin``.
        self.begin = begin
        self.header = header


class ThriftCodec(Codec):
    """Thrift over unframed/framed/THeader transport with binary or compact protocol.

    Request ids are sequence ids as unsigned 32-bit values (a negative int32 ``-1`` is
    ``0xFFFFFFFF``), written back the same way, so every id round-trips exactly.

    Mutations become THeader info headers; framed and unframed Thrift have no place for
    out-of-band key/values (adding fields to the struct would change the IDL contract), so
    there the message is forwarded unchanged. THeader responses carry headers the same way
    as requests, hence ``response_mutation=True``.
    """

    name: ClassVar[str] = "aeraki.meta_protocol.codec.thrift"
    capabilities: ClassVar[Capabilities] = Capabilities(
        request_ids=True, heartbeats=False, response_mutation=True, rewrites_request_id=True
    )

    def __init__(self, side: Side) -> None:
        super().__init__(side)
        self._buf = bytearray()
        self._transport: Transport | None = None
        self._protocol: Protocol | None = None
        #: bytes (from the pending message's start) needed before decoding is worth retrying.
        self._need = 0
        #: unframed: offset (from the message start) of the first top-level field not yet
        #: scanned completely; scanning resumes there (0: not started).
        self._resume = 0
        #: the connection speaks framed binary (seen on a first message): a read that is
        #: exactly one whole message takes the one-pass :meth:`_framed_binary`.
        self._framed_binary_seen = False

    # -- decode ---------------------------------------------------------------------------
    def decode(self, data: bytes) -> list[Metadata]:
        """Feed bytes; return the messages completed by them (§28.3, lazily)."""
        if self._framed_binary_seen and not self._buf:
            # The common read of a framed binary connection: one whole message.
            md = self._framed_binary(data)
            if md is not None:
                return [md]
        buf: Buf
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        out: list[Metadata] = []
        pos = 0
        try:
            while len(buf) - pos >= max(self._need, 1):
                end = self._decode_one(buf, pos, out)
                if end < 0:
                    break
                pos = end
        except (IndexError, struct.error, ValueError, OverflowError) as exc:
            raise CodecError(f"thrift: malformed message: {exc}") from exc
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        return out

    def _decode_one(self, buf: Buf, pos: int, out: list[Metadata]) -> int:
        """Decode the message at ``pos`` into ``out``: its end, or -1 if incomplete."""
        transport = self._transport
        if transport is None:
            transport = detect_transport(buf[pos : pos + 8])
            if transport is None:
                self._need = len(buf) - pos + 1
                return -1
            self._transport = transport
        if transport is Transport.UNFRAMED:
            return self._decode_unframed(buf, pos, out)
        if len(buf) - pos < 4:
            self._need = 4
            return -1
        end = pos + 4 + frame_size(buf, pos)
        if end > len(buf):
            self._need = end - pos
            return -1
        origin = _slice(buf, pos, end)
        if transport is Transport.FRAMED:
            out.append(self._framed(origin))
        else:
            out.append(self._header(origin))
        self._need = 0
        return end

    def _framed(self, origin: bytes) -> Metadata:
        if self._framed_binary_seen:
            md = self._framed_binary(origin)
            if md is not None:
                return md
        protocol = self._check_protocol(origin, 4, None)
        begin = _begin_in_frame(origin, 4, protocol)
        md = self._metadata(origin, ThriftMessage(Transport.FRAMED, protocol, 4, begin, None))
        self._framed_binary_seen = protocol is Protocol.BINARY
        return md

    def _framed_binary(self, origin: bytes) -> Metadata | None:
        """``origin`` decoded in one pass if it is exactly one ordinary framed strict-binary
        message, else ``None``.

        Why: it is what nearly every read of a framed binary connection holds, and the
        general path (frame check, protocol check, message begin, metadata; ~3 µs) spends
        most of its time in calls and re-checks. Only the happy case is taken here; anything
        else (a partial or extra frame, a bad version or name length, an unknown message
        type) returns ``None`` and goes the general way, which decodes or rejects it with
        its usual errors, so the result never depends on which path ran.
        """
        end = len(origin)
        if end < _FRAMED_BINARY_MIN:
            return None
        size, version, mtype, name_size = _FRAMED_BINARY_HEAD.unpack_from(origin)
        seqid_pos = 12 + name_size
        body = seqid_pos + 4
        if size + 4 != end or version != _BINARY_VERSION or name_size < 0 or body > end:
            return None
        message_type = _MESSAGE_TYPES.get(mtype)
        if message_type is None or size > MAX_FRAME_SIZE:
            return None
        name = origin[12:seqid_pos].decode("utf-8", "surrogateescape")
        (seqid,) = _SEQID.unpack_from(origin, seqid_pos)
        md = Metadata(message_type, seqid, origin)  # positional: ~0.1 µs cheaper
        if mtype == MESSAGE_EXCEPTION:
            md.response_status = ResponseStatus.ERROR
        if ":" in name:
            service, _, method = name.partition(":")
            md.strings["service"] = service
            md.strings["method"] = method
            md.operation_name = f"{service}/{method}"
        elif name:
            md.strings["method"] = name
            md.operation_name = name
        md.header_size = body
        md.body_size = end - body
        md.values[_KEY] = _FRAMED_BINARY
        return md

    def _header(self, origin: bytes) -> Metadata:
        header = parse_header(origin, 0, len(origin))
        protocol = self._check_protocol(origin, header.payload, header.protocol)
        begin = _begin_in_frame(origin, header.payload, protocol)
        info = ThriftMessage(Transport.HEADER, protocol, header.payload, begin, header)
        return self._metadata(origin, info)

    def _decode_unframed(self, buf: Buf, pos: int, out: list[Metadata]) -> int:
        limit = pos + MAX_UNFRAMED_SIZE
        mark: list[int] = []
        try:
            if len(buf) - pos < 2:
                raise NeedMore(pos + 2)
            protocol = self._check_protocol(buf, pos, None)
            begin = parse_message_begin(buf, pos, protocol, len(buf))
            mark = [pos + self._resume if self._resume else begin.body]
            end = skip_struct(buf, mark[0], protocol, mark)
        except NeedMore as more:
            if more.need > limit:
                message = f"thrift: unframed message exceeds {MAX_UNFRAMED_SIZE} bytes"
                raise CodecError(message) from None
            self._need = more.need - pos
            if mark:
                self._resume = mark[0] - pos
            return -1
        self._resume = 0
        begin.seqid_pos -= pos
        begin.seqid_end -= pos
        begin.body -= pos
        info = ThriftMessage(Transport.UNFRAMED, protocol, 0, begin, None)
        out.append(self._metadata(_slice(buf, pos, end), info))
        self._need = 0
        return end

    def _check_protocol(self, buf: Buf, pos: int, declared: Protocol | None) -> Protocol:
        """The protocol at ``pos``; it must match THeader's id and earlier messages."""
        if len(buf) - pos < 2:
            raise CodecError("thrift: frame too short for a message")
        protocol = detect_protocol(buf, pos)
        if protocol is None:
            start = bytes(buf[pos : pos + 8]).hex()
            raise CodecError(f"thrift: unknown protocol, message starts {start}")
        if declared is not None and declared is not protocol:
            raise CodecError(f"thrift header: declares {declared.name}, message is {protocol.name}")
        if self._protocol is None:
            self._protocol = protocol
        elif self._protocol is not protocol:
            raise CodecError(f"thrift: {protocol.name} message after {self._protocol.name}")
        return protocol

    def _metadata(self, origin: bytes, info: ThriftMessage) -> Metadata:
        begin = info.begin
        message_type = _MESSAGE_TYPES.get(begin.message_type)
        if message_type is None:
            raise CodecError(f"thrift: unknown message type {begin.message_type}")
        md = Metadata(message_type, begin.seqid, origin)
        if begin.message_type == MESSAGE_EXCEPTION:
            md.response_status = ResponseStatus.ERROR
        # Keys below are lower-case already, so they go straight into ``strings`` (what
        # put_string would do, minus a lower() call per key on the hot path).
        strings = md.strings
        if info.header is not None:
            for key, value in info.header.headers:
                strings[_text(key).lower()] = _text(value)
        name = begin.name
        if ":" in name:
            service, _, method = name.partition(":")
            strings["service"] = service
            strings["method"] = method
            md.operation_name = f"{service}/{method}"
        elif name:
            strings["method"] = name
            md.operation_name = name
        md.header_size = begin.body
        md.body_size = len(origin) - begin.body
        md.values[_KEY] = info
        return md

    # -- encode ---------------------------------------------------------------------------
    def encode(
        self, metadata: Metadata, mutation: Mutation, *, request_id: int | None = None
    ) -> bytes:
        """``origin`` itself unless the sequence id or (THeader only) headers change."""
        info = _message_info(metadata)
        if info is None:
            raise CodecError("thrift: metadata was not decoded by the thrift codec")
        seqid = _new_seqid(info, request_id)
        is_header = info.transport is Transport.HEADER
        if seqid is None and not (mutation and is_header):
            return metadata.origin
        origin = metadata.origin
        if seqid is not None:
            origin = rewrite_seqid(origin, info.begin, info.protocol, seqid)
        message = origin[info.offset :]
        if info.transport is Transport.FRAMED:
            return frame(message)
        if info.transport is Transport.UNFRAMED:
            return origin
        header = info.header
        assert header is not None  # THeader messages always carry their HeaderInfo
        if mutation:
            region = header_region(info.protocol, _merge(header.headers, mutation))
        else:
            region = origin[HEADER_FIXED_SIZE : info.offset]
        seq_id = header.seq_id if seqid is None else seqid
        return write_header_frame(header.flags, seq_id, region, message)

    # -- local replies --------------------------------------------------------------------
    def on_error(self, metadata: Metadata, error: LocalError) -> bytes:
        """A TApplicationException reply in the request's transport and protocol (§28.5).

        ========================  =====================================================
        ErrorType                 TApplicationException type
        ========================  =====================================================
        ROUTE_NOT_FOUND           1 UNKNOWN_METHOD (no route serves the method)
        BAD_RESPONSE              7 PROTOCOL_ERROR (the upstream reply was malformed)
        CLUSTER_NOT_FOUND         6 INTERNAL_ERROR
        NO_HEALTHY_UPSTREAM       6 INTERNAL_ERROR
        UNSPECIFIED               6 INTERNAL_ERROR
        OVER_LIMIT                6 INTERNAL_ERROR (fbthrift's LOADSHEDDING is non-standard)
        TIMEOUT                   6 INTERNAL_ERROR (fbthrift's TIMEOUT is non-standard)
        ========================  =====================================================

        The reply carries the method name without a ``Service:`` prefix, as multiplexed
        servers answer (Go clients compare it). THeader replies keep the request's flags
        and sequence id, which the reference fails to write. One-way requests get no reply
        (the client reads none), so the result is empty.
        """
        if metadata.message_type is MessageType.ONEWAY:
            return b""
        info = _message_info(metadata)
        if info is not None:
            transport, protocol, header = info.transport, info.protocol, info.header
        else:
            transport = self._transport or Transport.FRAMED
            protocol, header = self._protocol or Protocol.BINARY, None
        body = application_exception(
            protocol,
            metadata.get_string("method"),
            metadata.request_id,
            error.message,
            EXCEPTION_TYPES.get(error.type, 6),
        )
        if transport is Transport.FRAMED:
            return frame(body)
        if transport is Transport.UNFRAMED:
            return body
        flags = header.flags if header is not None else 0
        region = header_region(protocol, [])
        return write_header_frame(flags, metadata.request_id, region, body)


def _message_info(metadata: Metadata) -> ThriftMessage | None:
    """The :class:`ThriftMessage` of a message this codec decoded (built now, and kept, for
    one decoded by the one-pass path), or ``None`` for any other metadata."""
    info = metadata.values.get(_KEY)
    if info is _FRAMED_BINARY:
        origin = metadata.origin
        _, _, mtype, name_size = _FRAMED_BINARY_HEAD.unpack_from(origin)
        seqid_pos = 12 + name_size
        (seqid,) = _SEQID.unpack_from(origin, seqid_pos)
        name = origin[12:seqid_pos].decode("utf-8", "surrogateescape")
        begin = MessageBegin(name, mtype, seqid, seqid_pos, seqid_pos + 4, seqid_pos + 4)
        info = ThriftMessage(Transport.FRAMED, Protocol.BINARY, 4, begin, None)
        metadata.values[_KEY] = info
    return info if isinstance(info, ThriftMessage) else None


def _begin_in_frame(origin: bytes, pos: int, protocol: Protocol) -> MessageBegin:
    try:
        return parse_message_begin(origin, pos, protocol, len(origin))
    except NeedMore as exc:
        raise CodecError("thrift: message begin runs past the end of its frame") from exc


def _slice(buf: Buf, start: int, end: int) -> bytes:
    """``buf[start:end]`` as bytes; for a whole ``bytes`` buffer this is the object itself."""
    if isinstance(buf, bytes):
        return buf[start:end]
    return bytes(memoryview(buf)[start:end])


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _new_seqid(info: ThriftMessage, request_id: int | None) -> int | None:
    """The sequence id to write, or None when it stays as received."""
    if request_id is None:
        return None
    if not -0x80000000 <= request_id <= _U32_MASK:
        raise CodecError(f"thrift: request id {request_id} does not fit a 32-bit sequence id")
    value = request_id & _U32_MASK
    return None if value == info.begin.seqid else value


def _merge(headers: list[tuple[bytes, bytes]], mutation: Mutation) -> list[tuple[bytes, bytes]]:
    """THeader headers with ``mutation`` applied: same keys (case-insensitively, as routing
    sees them) are replaced in place, new keys appended in mutation order (§18)."""
    updates = {key.lower(): (key, value) for key, value in mutation.items()}
    merged: list[tuple[bytes, bytes]] = []
    written: set[str] = set()
    for key, value in headers:
        low = _text(key).lower()
        if low not in updates:
            merged.append((key, value))
        elif low not in written:
            new_key, new_value = updates[low]
            merged.append((_raw(new_key), _raw(new_value)))
            written.add(low)
    for low, (new_key, new_value) in updates.items():
        if low not in written:
            merged.append((_raw(new_key), _raw(new_value)))
    return merged
