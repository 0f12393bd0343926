"""DubboCodec: conformance, metadata, mutation, request-id rewrite, local replies (§27)."""

from __future__ import annotations

import struct

import pytest

from aeraki.codec.api import ErrorType, LocalError, MessageType, Metadata, ResponseStatus, Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.codec import DubboFrame
from aeraki.codec.registry import resolve_codec
from aeraki.errors import CodecError
from aeraki.testing import check_codec
from tests.codec.dubbo import h2w
from tests.codec.dubbo.samples import BAD_BODIES, GARBAGE, REQUESTS, RESPONSES


def decode_one(data: bytes, side: Side = Side.REQUEST) -> Metadata:
    out = DubboCodec(side).decode(data)
    assert len(out) == 1
    return out[0]


def test_conformance() -> None:
    check_codec(DubboCodec, REQUESTS, RESPONSES, garbage=GARBAGE + BAD_BODIES, mutations=2000)


def test_registered_under_aerakis_name() -> None:
    assert resolve_codec("aeraki.meta_protocol.codec.dubbo") is DubboCodec


@pytest.mark.parametrize("junk", GARBAGE)
def test_garbage_raises_codec_error(junk: bytes) -> None:
    with pytest.raises(CodecError):
        DubboCodec(Side.REQUEST).decode(junk)


def test_request_metadata() -> None:
    md = decode_one(REQUESTS[0])
    assert md.message_type is MessageType.REQUEST
    assert md.request_id == 1
    assert md.operation_name == f"{h2w.SVC}/sayHi"
    assert (md.header_size, md.body_size) == (16, len(REQUESTS[0]) - 16)
    assert md.load_strings() == {
        "interface": h2w.SVC,
        "method": "sayHi",
        "version": "1.0.0",
        "path": h2w.SVC,
        "timeout": "3000",
        "x-user": "jason",
    }
    info = md.get("dubbo")
    assert isinstance(info, DubboFrame)
    assert info.dubbo_version == "2.0.2"


def test_oneway_and_heartbeat_types() -> None:
    assert decode_one(REQUESTS[1]).message_type is MessageType.ONEWAY
    heartbeat = decode_one(REQUESTS[2])
    assert (heartbeat.message_type, heartbeat.request_id) == (MessageType.HEARTBEAT, 3)
    # a provider's heartbeat request decodes on the upstream side too
    assert decode_one(REQUESTS[2], Side.RESPONSE).message_type is MessageType.HEARTBEAT


def test_fixed_part_wins_over_attachments_of_the_same_name() -> None:
    """The body's interface is final (as Envoy's dubbo_proxy routes); an attachment named
    ``interface`` is forwarded but does not replace it. Other attachments are routable."""
    md = decode_one(REQUESTS[3])
    assert md.get_string("group") == "g1"
    assert md.get_string("interface") == h2w.SVC
    assert b"override.Iface" in DubboCodec(Side.REQUEST).encode(md, {"k": "v"})
    assert md.operation_name == f"{h2w.SVC}/add"


def test_only_string_attachments_are_routable() -> None:
    md = decode_one(REQUESTS[4])
    assert md.get_string("group") == "blue"
    for key in ("timeout", "tags", "car", "nothing"):
        assert not md.has_string(key)


def test_requests_without_or_with_null_or_typed_attachments() -> None:
    assert decode_one(REQUESTS[5]).load_strings() == {"interface": h2w.SVC, "method": "sayHi"} | {
        "version": "1.0.0"
    }
    assert decode_one(REQUESTS[6]).get_string("method") == "sayHi"
    assert decode_one(REQUESTS[7]).get_string("k") == "v"
    assert decode_one(REQUESTS[8]).request_id == 2**63 + 5


@pytest.mark.parametrize(
    ("index", "message_type", "status"),
    [
        (0, MessageType.RESPONSE, ResponseStatus.OK),
        (1, MessageType.RESPONSE, ResponseStatus.OK),
        (4, MessageType.RESPONSE, ResponseStatus.OK),
        (5, MessageType.ERROR, ResponseStatus.ERROR),
        (6, MessageType.ERROR, ResponseStatus.ERROR),
        (8, MessageType.RESPONSE, ResponseStatus.OK),
        (10, MessageType.HEARTBEAT, ResponseStatus.OK),
        (11, MessageType.ERROR, ResponseStatus.ERROR),
        (17, MessageType.ERROR, ResponseStatus.ERROR),  # status 80 accepted (§33 item 3)
    ],
)
def test_response_types(index: int, message_type: MessageType, status: ResponseStatus) -> None:
    md = decode_one(RESPONSES[index], Side.RESPONSE)
    assert (md.message_type, md.response_status) == (message_type, status)


def test_result_attachments_are_routable() -> None:
    md = decode_one(RESPONSES[7], Side.RESPONSE)
    assert md.load_strings() == {"server": "provider-1", "dubbo": "2.0.2"}
    assert decode_one(RESPONSES[8], Side.RESPONSE).get_string("group") == "blue"


@pytest.mark.parametrize("result_type", [6, -1, 100])
def test_unknown_result_type_is_refused(result_type: int) -> None:
    with pytest.raises(CodecError, match="result type"):
        DubboCodec(Side.RESPONSE).decode(h2w.response(result_type))


def test_trailing_bytes_after_a_value_are_refused_when_the_value_is_kept() -> None:
    """The value is only scanned when a rewrite keeps it (upgrading 1 -> 4); forwarded as
    received otherwise."""
    md = decode_one(h2w.response(1, b"\x90\x90"), Side.RESPONSE)
    assert DubboCodec(Side.RESPONSE).encode(md, {"x": "y"}) is md.origin
    with pytest.raises(CodecError, match="unexpected bytes"):
        UpgradingDubboCodec(Side.RESPONSE).encode(md, {"x": "y"})


def test_ok_response_in_another_serialization_is_refused() -> None:
    with pytest.raises(CodecError, match="serialization"):
        DubboCodec(Side.RESPONSE).decode(h2w.frame(0x06, 20, 1, b"\x91\x90"))


def test_decode_many_frames_split_anywhere() -> None:
    stream = b"".join(REQUESTS)
    for cut in (1, 15, 16, 17, len(REQUESTS[0]), len(REQUESTS[0]) + 3, len(stream) - 1):
        codec = DubboCodec(Side.REQUEST)
        got = codec.decode(stream[:cut]) + codec.decode(stream[cut:])
        assert [md.origin for md in got] == REQUESTS


def test_whole_frame_is_not_copied() -> None:
    frame = REQUESTS[0]
    assert decode_one(frame).origin is frame


# -- encode -----------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", REQUESTS + RESPONSES)
def test_encode_without_mutation_returns_origin_itself(frame: bytes) -> None:
    side = Side.REQUEST if frame[2] & 0x80 else Side.RESPONSE
    md = decode_one(frame, side)
    assert DubboCodec(side).encode(md, {}) is md.origin


def _reencoded(frame: bytes, mutation: dict[str, str], side: Side = Side.REQUEST) -> Metadata:
    md = decode_one(frame, side)
    out = DubboCodec(side).encode(md, mutation)
    (length,) = struct.unpack_from(">i", out, 12)
    assert length == len(out) - 16
    assert out[:12] == frame[:12]
    return decode_one(out, side)


def test_request_mutation_adds_and_replaces_attachments() -> None:
    again = _reencoded(REQUESTS[0], {"x-request-id": "r-1", "timeout": "10", "é😀": "中"})
    assert again.get_string("x-request-id") == "r-1"
    assert again.get_string("timeout") == "10"
    assert again.get_string("é😀") == "中"
    assert again.get_string("x-user") == "jason"
    assert again.operation_name == f"{h2w.SVC}/sayHi"


def test_request_mutation_keeps_non_string_entries_byte_exact() -> None:
    frame = REQUESTS[4]
    again = _reencoded(frame, {"group": "green", "new": "1"})
    assert again.get_string("group") == "green"
    assert again.get_string("new") == "1"
    origin = again.origin
    for kept in (h2w.int_(3000), h2w.list_([h2w.string("a"), h2w.string("b")])):
        assert kept in origin
    # arguments before the map are untouched
    start = frame.index(b"H\x04path")
    assert origin[:12] == frame[:12]
    assert origin[16:start] == frame[16:start]


@pytest.mark.parametrize("index", [5, 6, 7])
def test_request_mutation_without_or_with_odd_maps(index: int) -> None:
    again = _reencoded(REQUESTS[index], {"a": "b"})
    assert again.get_string("a") == "b"


def test_response_mutation_with_attachments() -> None:
    for frame in (RESPONSES[6], RESPONSES[7], RESPONSES[9]):
        again = _reencoded(frame, {"server": "proxy", "x": "y"}, Side.RESPONSE)
        assert (again.get_string("server"), again.get_string("x")) == ("proxy", "y")
        assert again.get_string("dubbo") == "2.0.2"


@pytest.mark.parametrize("index", [0, 3, 4, 5, 10, 11, 17])
def test_response_mutation_without_attachments_leaves_it_untouched(index: int) -> None:
    md = decode_one(RESPONSES[index], Side.RESPONSE)
    assert DubboCodec(Side.RESPONSE).encode(md, {"x": "y"}) is md.origin


class UpgradingDubboCodec(DubboCodec):
    upgrade_results = True


@pytest.mark.parametrize(("index", "new_type"), [(0, 4), (3, 4), (4, 5)])
def test_opt_in_upgrade_converts_result_types(index: int, new_type: int) -> None:
    md = decode_one(RESPONSES[index], Side.RESPONSE)
    out = UpgradingDubboCodec(Side.RESPONSE).encode(md, {"x": "y"})
    again = decode_one(out, Side.RESPONSE)
    assert out[16] == 0x90 + new_type
    assert again.get_string("x") == "y"
    assert struct.unpack_from(">i", out, 12)[0] == len(out) - 16
    assert out[17 : len(RESPONSES[index])] == RESPONSES[index][17:]


def test_request_id_rewrite() -> None:
    codec = DubboCodec(Side.REQUEST)
    md = decode_one(REQUESTS[0])
    out = codec.encode(md, {}, request_id=0x0102030405060708)
    assert out[4:12] == bytes(range(1, 9))
    assert out[:4] == md.origin[:4]
    assert out[12:] == md.origin[12:]
    assert codec.encode(md, {}, request_id=md.request_id) is md.origin
    both = decode_one(codec.encode(md, {"k": "v"}, request_id=77))
    assert (both.request_id, both.get_string("k")) == (77, "v")
    with pytest.raises(CodecError):
        codec.encode(md, {}, request_id=2**64)


# -- local replies ----------------------------------------------------------------------------


def test_heartbeat_reply_bytes_from_the_spec() -> None:
    md = decode_one(h2w.heartbeat_request(7))
    reply = DubboCodec(Side.REQUEST).heartbeat_reply(md)
    assert reply == bytes.fromhex("dabb2214000000000000000700000001 4e")
    assert decode_one(reply, Side.RESPONSE).message_type is MessageType.HEARTBEAT


SPEC_ROUTE_NOT_FOUND = bytes.fromhex("dabb023c000000000000000100000005 90 03616263")


def test_on_error_route_not_found_is_a_dubbo_error_string() -> None:
    md = Metadata(request_id=1)
    reply = DubboCodec(Side.REQUEST).on_error(md, LocalError(ErrorType.ROUTE_NOT_FOUND, "abc"))
    # §27.7's example minus the 0x90 result-type int: for a non-20 status, Dubbo consumers
    # read the body as a single string (readUTF), so the message must come first.
    assert reply == bytes.fromhex("dabb023c000000000000000100000004 03616263")
    assert reply[:15] + reply[16:] == SPEC_ROUTE_NOT_FOUND[:15] + SPEC_ROUTE_NOT_FOUND[17:]
    for frame in (reply, SPEC_ROUTE_NOT_FOUND):  # both decode as error responses
        answer = decode_one(frame, Side.RESPONSE)
        assert (answer.message_type, answer.request_id) == (MessageType.ERROR, 1)


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        (ErrorType.ROUTE_NOT_FOUND, 60),
        (ErrorType.BAD_RESPONSE, 50),
        (ErrorType.TIMEOUT, 31),
        (ErrorType.OVER_LIMIT, 100),
        (ErrorType.CLUSTER_NOT_FOUND, 80),
        (ErrorType.NO_HEALTHY_UPSTREAM, 80),
        (ErrorType.UNSPECIFIED, 80),
    ],
)
def test_on_error_statuses(error_type: ErrorType, status: int) -> None:
    md = decode_one(REQUESTS[0])
    message = "no route for é😀 " + "x" * 50
    reply = DubboCodec(Side.REQUEST).on_error(md, LocalError(error_type, message))
    assert reply[2:4] == bytes([0x02, status])
    assert reply[4:12] == md.origin[4:12]
    assert reply[16:] == h2w.string(message)
    answer = decode_one(reply, Side.RESPONSE)
    # Statuses another provider may not repeat are retriable (Dubbo's failover retries them).
    retriable = status in (31, 60, 100)
    expected = ResponseStatus.RETRIABLE_ERROR if retriable else ResponseStatus.ERROR
    assert answer.response_status is expected


def test_body_length_limit_is_checked_on_the_header() -> None:
    header = bytes.fromhex("dabbc200 0000000000000001") + (16 * 1024 * 1024).to_bytes(4, "big")
    assert DubboCodec(Side.REQUEST).decode(header) == []  # exactly 16 MiB: waits for the body
    too_big = header[:12] + (16 * 1024 * 1024 + 1).to_bytes(4, "big")
    codec = DubboCodec(Side.REQUEST)
    assert codec.decode(too_big[:15]) == []
    with pytest.raises(CodecError, match="body length"):
        codec.decode(too_big[15:])


# -- attachment maps whose bytes are all ASCII (sliced from one decoded copy) ---------------


ASCII_MAP = h2w.map_(
    [
        (h2w.string("a"), h2w.string("1")),
        (h2w.string("null"), h2w.null()),
        (h2w.string("yes"), h2w.boolean(True)),
        (h2w.string("int"), h2w.int_(7, form="I")),  # b"I\x00\x00\x00\x07": ASCII bytes
        (h2w.string("nested"), h2w.map_([(h2w.string("k"), h2w.string("v"))])),
        (h2w.string("Medium"), h2w.string("m" * 40)),  # the two-byte length form
        (h2w.string("a"), h2w.string("2")),  # a later duplicate wins
    ]
)


def test_ascii_attachment_map_with_values_of_every_kind() -> None:
    frame = h2w.request(attachments=ASCII_MAP)
    assert frame[frame.index(ASCII_MAP) :].isascii()
    md = decode_one(frame)
    assert md.load_strings() == {
        "interface": h2w.SVC,
        "method": "sayHi",
        "version": "1.0.0",
        "a": "2",
        "medium": "m" * 40,
    }
    again = _reencoded(frame, {"Medium": "x", "int": "8"})
    assert (again.get_string("medium"), again.get_string("int")) == ("x", "8")
    for kept in (h2w.null(), h2w.boolean(True), h2w.map_([(h2w.string("k"), h2w.string("v"))])):
        assert kept in again.origin


@pytest.mark.parametrize("cut", range(1, len(ASCII_MAP)))
def test_ascii_attachment_map_cut_anywhere_is_refused_on_rewrite(cut: int) -> None:
    frame = h2w.request(attachments=ASCII_MAP[:cut])
    md = decode_one(frame)
    assert md.load_strings() == {"interface": h2w.SVC, "method": "sayHi", "version": "1.0.0"}
    with pytest.raises(CodecError):
        DubboCodec(Side.REQUEST).encode(md, {"k": "v"})
