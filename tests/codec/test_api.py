"""``Metadata`` construction: positional and keyword arguments build the same message (codecs
pass them positionally on the hot path, where keywords cost ~0.12 µs more per message)."""

from __future__ import annotations

from aeraki.codec.api import MessageType, Metadata, ResponseStatus


def _fields(md: Metadata) -> tuple[object, ...]:
    return (
        md.message_type,
        md.response_status,
        md.idempotent,
        md.request_id,
        md.stream_id,
        md.header_size,
        md.body_size,
        md.operation_name,
        md.origin,
        md.strings,
        md.values,
        md.deferred,
    )


def test_positional_and_keyword_arguments_agree() -> None:
    by_position = Metadata(MessageType.RESPONSE, 7, b"abc")
    by_keyword = Metadata(MessageType.RESPONSE, request_id=7, origin=b"abc")
    assert _fields(by_position) == _fields(by_keyword)
    assert _fields(by_position) == (
        MessageType.RESPONSE, ResponseStatus.OK, True, 7, 0, 0, 0, "", b"abc", {}, {}, None
    )  # fmt: skip


def test_defaults() -> None:
    md = Metadata()
    assert (md.message_type, md.request_id, md.origin) == (MessageType.REQUEST, 0, b"")
    assert md.message_size == 0


def test_each_message_has_its_own_property_maps() -> None:
    first, second = Metadata(), Metadata()
    first.strings["k"] = "v"
    first.values["k"] = 1
    assert (second.strings, second.values) == ({}, {})
