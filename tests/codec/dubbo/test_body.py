"""``body._read_descriptor``: the argument count of a request's descriptor, looked up by its
bytes, is what reading and counting the descriptor gives, and fails as that fails."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from aeraki.codec.dubbo import body
from aeraki.codec.dubbo.body import count_arguments
from aeraki.codec.dubbo.hessian2 import read_string
from aeraki.errors import CodecError
from tests.codec.dubbo import h2w


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    body._RAW_COUNTS.clear()
    yield
    body._RAW_COUNTS.clear()


def general(data: bytes) -> tuple[int, int] | type[Exception]:
    """What reading the descriptor and counting it gives (no byte cache)."""
    try:
        descriptor, end = read_string(data, 0)
        return count_arguments(descriptor), end
    except (CodecError, IndexError) as exc:
        return type(exc)


def cached(data: bytes) -> tuple[int, int] | type[Exception]:
    try:
        return body._read_descriptor(data, 0)
    except (CodecError, IndexError) as exc:
        return type(exc)


DESCRIPTORS = [
    "",
    "I",
    "Ljava/lang/String;",
    "Ljava/lang/String;[II",
    "Lexample/Café;J",  # non-ASCII: read by the general string path, then cached
    "L" + "x" * 40 + ";",  # medium form: never cached by bytes
    "Ljava/lang/String",  # unterminated class: refused
    "Q",  # not a type: refused
]


@pytest.mark.parametrize("descriptor", DESCRIPTORS)
def test_cold_and_warm_reads_match_the_general_read(descriptor: str) -> None:
    data = h2w.string(descriptor) + b"\x90"
    expected = general(data)
    assert cached(data) == expected
    assert cached(data) == expected
    cacheable = isinstance(expected, tuple) and data[0] < 0x20
    assert len(body._RAW_COUNTS) == (1 if cacheable else 0)


def test_a_descriptor_cut_by_the_frame_end_never_matches_a_cached_one() -> None:
    whole = h2w.string("II")
    assert cached(whole + b"\x90") == (2, 3)
    for cut in range(1, len(whole)):
        assert cached(whole[:cut]) == general(whole[:cut])
        assert not isinstance(general(whole[:cut]), tuple)


def test_same_bytes_elsewhere_in_a_frame_read_the_same() -> None:
    data = h2w.string("JD") + b"\x91" + h2w.string("JD")
    assert cached(data) == (2, 3)
    assert body._read_descriptor(data, 4) == (2, 7)


def test_the_byte_cache_is_bounded() -> None:
    descriptors = ["".join(p) for p in itertools.product("VZBCDFIJS", repeat=4)]
    for descriptor in descriptors[:4100]:
        assert body._read_descriptor(h2w.string(descriptor), 0) == (4, 5)
        assert 1 <= len(body._RAW_COUNTS) <= 4096
    assert len(body._RAW_COUNTS) < 4096  # it was cleared once
