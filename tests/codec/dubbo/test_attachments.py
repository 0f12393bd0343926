"""The cache of parsed attachment maps (``attachments.read_attachments``): a map read from the
cache is, field by field, the map the uncached parse reads from the same frame, wherever the
map sits; a map is cached the second time it is seen; maps whose parse depends on more than
their bytes never use it; failures are never cached; the cache is bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aeraki.codec.api import Side
from aeraki.codec.dubbo import DubboCodec, attachments
from aeraki.codec.dubbo.attachments import Attachments, read_attachments
from aeraki.codec.dubbo.body import count_arguments
from aeraki.codec.dubbo.hessian2 import read_int, read_string, skip_values
from aeraki.errors import CodecError
from tests.codec.dubbo import h2w
from tests.codec.dubbo.samples import CAR, CAR_DEF, OK_ATTACHMENTS, REQUESTS, RESPONSES

MAP = h2w.str_map({"Path": h2w.SVC, "x-user": "jason", "timeout": "3000"})


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    clear()
    yield
    clear()


def clear() -> None:
    attachments._cache.clear()
    attachments._seen.clear()


def fields(found: Attachments) -> tuple[object, ...]:
    """What a parse says about the map in the frame it was read from (entries at their
    offsets in that frame)."""
    shift = found.start - found.origin
    entries = [(key, ks + shift, vs + shift, ve + shift) for key, ks, vs, ve in found.entries]
    return found.start, found.prefix, entries, found.strings


def read_thrice(frame: bytes, pos: int, classes: list[int]) -> list[Attachments]:
    """Seen once, seen twice (cached then), read from the cache."""
    return [read_attachments(frame, pos, list(classes)) for _ in range(3)]


def map_start(frame: bytes) -> tuple[int, list[int]]:
    """Where a request's or OK result's map starts, and the classes met before it, found
    with the scanner alone (no cache involved)."""
    classes: list[int] = []
    if frame[2] & 0x80:
        pos = read_string(frame, 16)[1]
        for _ in range(3):
            pos = read_string(frame, pos)[1]
        descriptor, pos = read_string(frame, pos)
        return skip_values(frame, pos, count_arguments(descriptor), classes), classes
    result_type, pos = read_int(frame, 16)
    if result_type in (3, 4):
        pos = skip_values(frame, pos, 1, classes)
    return pos, classes


WITH_MAPS = [
    f
    for f in [*REQUESTS, *RESPONSES]
    if (f[2] & 0x80 and not f[2] & 0x20) or (not f[2] & 0xA0 and f[3] == 20 and f[16] >= 0x93)
]


@pytest.mark.parametrize("frame", WITH_MAPS)
def test_a_cached_map_is_the_uncached_parse_field_by_field(frame: bytes) -> None:
    pos, classes = map_start(frame)
    expected = fields(attachments._parse_map(frame, pos, list(classes)))
    assert [fields(found) for found in read_thrice(frame, pos, classes)] == [expected] * 3
    assert bool(attachments._cache) == (not classes)  # cached only without earlier classes


def test_a_map_met_at_another_offset_is_read_there() -> None:
    short = h2w.request(args=(h2w.string("a"),), attachments=MAP)
    long = h2w.request(args=(h2w.string("a much longer argument"),), attachments=MAP)
    first = read_thrice(short, map_start(short)[0], [])[-1]
    pos = map_start(long)[0]
    again = read_attachments(long, pos, [])
    assert again.start == pos != first.start
    assert fields(again) == fields(attachments._parse_map(long, pos, []))
    assert again.strings is first.strings  # one parse, shared


def test_a_cached_map_renders_mutations_as_the_uncached_one() -> None:
    for args in [(h2w.string("a"),), (h2w.int_(1), h2w.string("bb" * 20))]:
        frame = h2w.request(descriptor="Ljava/lang/Object;" * len(args), args=args)
        pos = map_start(frame)[0]
        mutation = {"x-user": "r", "new": "n"}
        expected = attachments._parse_map(frame, pos, []).render(frame, mutation)
        for found in read_thrice(frame, pos, []):
            assert found.render(frame, mutation) == expected
    assert len(attachments._cache) == 1


def test_a_map_after_class_definitions_is_neither_cached_nor_looked_up() -> None:
    """``0x60`` (an object of class 0) in the map reads only if the arguments defined it."""
    odd_map = h2w.map_([(h2w.string("car"), CAR), (h2w.string("k"), h2w.string("v"))])
    with_class = h2w.request(descriptor="Lexample/Car;", args=(CAR_DEF + CAR,), attachments=odd_map)
    without = h2w.request(descriptor="I", args=(h2w.int_(1),), attachments=odd_map)
    pos, classes = map_start(with_class)
    assert [found.strings for found in read_thrice(with_class, pos, classes)] == [{"k": "v"}] * 3
    assert not attachments._cache
    for _ in range(3):
        with pytest.raises(CodecError, match="undefined class"):
            read_attachments(without, map_start(without)[0], [])
    assert not attachments._cache  # a failed parse is not cached
    assert read_attachments(with_class, pos, list(classes)).strings == {"k": "v"}


def test_a_position_past_the_frame_never_reads_the_empty_map_from_the_cache() -> None:
    no_map = h2w.request(descriptor="", args=(), attachments=b"")
    read_thrice(no_map, len(no_map), [])  # caches the empty tail
    assert b"" in attachments._cache
    cut = h2w.request(descriptor="I", args=(b"I\x00\x00",), attachments=b"")  # 4-byte int cut
    pos = map_start(cut)[0]
    assert pos > len(cut)
    with pytest.raises(IndexError):
        read_attachments(cut, pos, [])
    md = DubboCodec(Side.REQUEST).decode(cut)[0]
    assert md.load_strings() == {"interface": h2w.SVC, "method": "sayHi", "version": "1.0.0"}
    with pytest.raises(CodecError):
        DubboCodec(Side.REQUEST).encode(md, {"k": "v"})


def test_decoded_messages_load_the_same_strings_cold_and_warm() -> None:
    for frame in WITH_MAPS:
        side = Side.REQUEST if frame[2] & 0x80 else Side.RESPONSE
        clear()
        cold = DubboCodec(side).decode(frame)[0]
        cold_strings = dict(cold.load_strings())
        cold_out = DubboCodec(side).encode(cold, {"x-k": "v"})
        for _ in range(2):  # cached, then from the cache
            warm = DubboCodec(side).decode(frame)[0]
            assert warm.load_strings() == cold_strings
            assert DubboCodec(side).encode(warm, {"x-k": "v"}) == cold_out


def test_a_shared_parse_is_not_changed_by_what_is_done_to_a_message() -> None:
    frame = h2w.response(4, h2w.string("v"), OK_ATTACHMENTS)
    DubboCodec(Side.RESPONSE).decode(frame)[0].load_strings()  # seen once
    first = DubboCodec(Side.RESPONSE).decode(frame)[0]
    first.put_string("server", "mine")
    first.load_strings()["dubbo"] = "changed"
    first.remove_string("dubbo")
    second = DubboCodec(Side.RESPONSE).decode(frame)[0]
    assert second.load_strings() == {"server": "provider-1", "dubbo": "2.0.2"}


def test_the_cache_is_bounded_in_entries_and_in_map_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attachments, "_CACHE_SIZE", 3)
    for n in range(7):
        frame = h2w.request(attachments=h2w.str_map({"n": str(n)}))
        read_thrice(frame, map_start(frame)[0], [])
        assert 1 <= len(attachments._cache) <= 3
        assert 1 <= len(attachments._seen) <= 3
    clear()
    big = h2w.str_map({"big": "x" * attachments._CACHE_MAX_BYTES})
    frame = h2w.request(attachments=big)
    for found in read_thrice(frame, map_start(frame)[0], []):
        assert found.strings["big"].startswith("xx")
    assert not attachments._cache
    assert not attachments._seen


def test_maps_seen_once_stay_out_of_the_cache() -> None:
    """Maps that never repeat (a trace id in each) are parsed, not cached; a map that
    repeats among them is cached on its second sighting."""
    steady = h2w.request(attachments=MAP)
    for n in range(20):
        traced = h2w.request(attachments=h2w.str_map({"trace": f"{n:016x}"}))
        assert read_attachments(traced, map_start(traced)[0], []).strings == {"trace": f"{n:016x}"}
        assert read_attachments(steady, map_start(steady)[0], []).strings["x-user"] == "jason"
    assert list(attachments._cache) == [steady[map_start(steady)[0] :]]
