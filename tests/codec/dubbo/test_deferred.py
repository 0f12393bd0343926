"""DubboCodec reads the fixed part of a body at decode and the rest on demand (``.body``):
what is there before and after a load, which values win, and what happens to bodies whose
deferred part is malformed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aeraki.codec.api import MessageType, Metadata, Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.body import DubboFrame
from aeraki.errors import CodecError
from tests.codec.dubbo import h2w
from tests.codec.dubbo.samples import BAD_BODIES, REQUESTS, RESPONSES

FIXED = {"interface": h2w.SVC, "method": "sayHi", "version": "1.0.0"}


def decode_one(data: bytes, side: Side = Side.REQUEST) -> Metadata:
    out = DubboCodec(side).decode(data)
    assert len(out) == 1
    return out[0]


def test_request_decode_reads_only_the_fixed_part() -> None:
    md = decode_one(REQUESTS[0])
    assert md.strings == FIXED
    assert isinstance(md.deferred, DubboFrame)
    assert md.deferred is md.get("dubbo")


def test_asking_for_an_attachment_loads_them_all_once() -> None:
    md = decode_one(REQUESTS[0])
    assert md.get_string("X-User") == "jason"
    assert md.deferred is None
    assert md.strings == FIXED | {"path": h2w.SVC, "timeout": "3000", "x-user": "jason"}


def test_asking_for_a_fixed_key_does_not_load() -> None:
    md = decode_one(REQUESTS[0])
    assert md.get_string("method") == "sayHi"
    assert md.has_string("interface")
    assert md.deferred is not None


@pytest.mark.parametrize(
    ("ask", "expected"),
    [
        (lambda md: md.has_string("timeout"), True),
        (lambda md: md.has_string("absent"), False),
        (lambda md: md.get_string("absent", "dflt"), "dflt"),
        (lambda md: dict(md.iter_strings())["path"], h2w.SVC),
    ],
)
def test_every_reader_of_the_public_api_loads(
    ask: Callable[[Metadata], object], expected: object
) -> None:
    md = decode_one(REQUESTS[0])
    assert ask(md) == expected
    assert md.deferred is None


def test_keys_set_before_the_load_win_and_removed_keys_stay_removed() -> None:
    md = decode_one(REQUESTS[0])
    md.put_string("x-user", "from-a-filter")
    md.strings["x-meta-protocol-application-protocol"] = "dubbo"  # as the proxy sets it
    md.remove_string("timeout")  # loads first: a later load cannot bring it back
    assert md.deferred is None
    assert md.get_string("x-user") == "from-a-filter"
    assert not md.has_string("timeout")
    assert md.get_string("path") == h2w.SVC


def test_a_clone_loads_on_its_own() -> None:
    md = decode_one(REQUESTS[0])
    twin = md.clone()
    assert twin.get_string("x-user") == "jason"
    assert "x-user" not in md.strings
    assert md.deferred is not None
    assert md.get_string("timeout") == "3000"


def test_mutation_without_a_load_rewrites_the_map() -> None:
    md = decode_one(REQUESTS[0])
    out = DubboCodec(Side.REQUEST).encode(md, {"x-user": "r"})
    assert md.deferred is not None  # encode parsed the map without touching the properties
    assert decode_one(out).get_string("x-user") == "r"


def test_dubbo_version_is_read_when_asked_for() -> None:
    info = decode_one(h2w.request(dubbo_version="2.7.8")).get("dubbo")
    assert isinstance(info, DubboFrame)
    assert info.dubbo_version == "2.7.8"
    heartbeat = decode_one(h2w.heartbeat_request(3)).get("dubbo")
    assert isinstance(heartbeat, DubboFrame)
    assert heartbeat.dubbo_version == ""


def test_response_attachments_are_deferred_and_plain_values_have_none() -> None:
    with_map = decode_one(RESPONSES[7], Side.RESPONSE)
    assert with_map.strings == {}
    assert with_map.get_string("server") == "provider-1"
    value_only = decode_one(RESPONSES[0], Side.RESPONSE)
    assert value_only.deferred is None
    assert value_only.load_strings() == {}


@pytest.mark.parametrize("frame", BAD_BODIES)
def test_malformed_deferred_part_decodes_routes_on_the_fixed_part_and_fails_on_rewrite(
    frame: bytes,
) -> None:
    side = Side.REQUEST if frame[2] & 0x80 else Side.RESPONSE
    md = decode_one(frame, side)
    before = dict(md.strings)
    assert md.load_strings() == before  # nothing added, nothing raised
    codec = DubboCodec(side)
    assert codec.encode(md, {}) is md.origin  # forwarded as received
    assert codec.encode(md, {}, request_id=9)[16:] == frame[16:]
    with pytest.raises(CodecError):
        codec.encode(md, {"x-request-id": "1"})


def test_malformed_request_still_has_its_routing_keys() -> None:
    md = decode_one(BAD_BODIES[0])
    assert md.message_type is MessageType.REQUEST
    assert md.get_string("interface") == h2w.SVC
    assert md.get_string("x-user") == ""
