"""The Hessian2 scanner against hand-written bytes from the Hessian 2.0 serialization spec."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from aeraki.codec.dubbo.codec import count_arguments
from aeraki.codec.dubbo.hessian2 import MAX_DEPTH, read_int, read_string, skip_string, skip_values
from aeraki.codec.dubbo.hessian2_writer import encode_int, encode_string
from aeraki.errors import CodecError
from tests.codec.dubbo import h2w

#: (name, bytes of exactly one value) — the examples of the Hessian 2.0 spec, by section.
SPEC_VALUES: list[tuple[str, bytes]] = [
    ("null", b"N"),
    ("true", b"T"),
    ("false", b"F"),
    # 4.5 int
    ("int 0 compact", b"\x90"),
    ("int -16", b"\x80"),
    ("int 47", b"\xbf"),
    ("int 0 two bytes", b"\xc8\x00"),
    ("int -2048", b"\xc0\x00"),
    ("int -256", b"\xc7\x00"),
    ("int 2047", b"\xcf\xff"),
    ("int 0 three bytes", b"\xd4\x00\x00"),
    ("int -262144", b"\xd0\x00\x00"),
    ("int 262143", b"\xd7\xff\xff"),
    ("int 300 I", b"I\x00\x00\x01\x2c"),
    # 4.7 long
    ("long 0", b"\xe0"),
    ("long -8", b"\xd8"),
    ("long 15", b"\xef"),
    ("long 0 two bytes", b"\xf8\x00"),
    ("long -2048", b"\xf0\x00"),
    ("long 2047", b"\xff\xff"),
    ("long 0 three bytes", b"\x3c\x00\x00"),
    ("long -262144", b"\x38\x00\x00"),
    ("long 262143", b"\x3f\xff\xff"),
    ("long 300 Y", b"\x59\x00\x00\x01\x2c"),
    ("long 300 L", b"L\x00\x00\x00\x00\x00\x00\x01\x2c"),
    # 4.4 double
    ("double 0.0", b"\x5b"),
    ("double 1.0", b"\x5c"),
    ("double byte", b"\x5d\x80"),
    ("double short", b"\x5e\x80\x00"),
    ("double float", b"\x5f\x00\x00\x00\x00"),
    ("double 12.25", b"D\x40\x28\x80\x00\x00\x00\x00\x00"),
    # 4.3 date
    ("date ms", b"\x4a\x00\x00\x00\xd0\x4b\x92\x84\xb8"),
    ("date minutes", b"\x4b\x00\xe3\x83\x8f"),
    # 4.1 binary
    ("binary empty", b"\x20"),
    ("binary 3", b"\x23\x01\x02\x03"),
    ("binary 0x34 form", b"\x34\x05" + b"x" * 5),
    ("binary B", b"B\x00\x03abc"),
    ("binary chunks", b"A\x00\x02abB\x00\x01c"),
    ("binary chunk then compact", b"A\x00\x01a\x21b"),
    # 4.12 string
    ("string empty", b"\x00"),
    ("string hello", b"\x05hello"),
    ("string U+00C3", b"\x01\xc3\x83"),
    ("string S hello", b"S\x00\x05hello"),
    ("string 0x30 form", b"\x30\x03abc"),
    ("string chunked", b"R\x00\x03helS\x00\x02lo"),
    ("string chunk then compact", b"R\x00\x01h\x04ello"),
    # 4.6 list
    ("list V typed fixed", b"V\x04[int\x92\x90\x91"),
    ("list W untyped variable", b"\x57\x90\x91Z"),
    ("list U typed variable", b"\x55\x04[int\x90\x91Z"),
    ("list X untyped fixed", b"X\x92\x90\x91"),
    ("list compact typed", b"\x72\x04[int\x90\x91"),
    ("list compact untyped", b"\x7a\x90\x91"),
    ("list type ref", b"\x72\x90\x90\x91"),
    ("list empty", b"\x78"),
    ("list nested", b"\x79\x79\x79\x90"),
    # 4.8 map
    ("map H", b"H\x91\x03fee\x92\x03fie\x93\x03foeZ"),
    (
        "map M typed",
        b"M\x13com.caucho.test.Car\x05color\x0aaquamarine\x05model\x06Beetle"
        b"\x07mileageI\x00\x01\x00\x00Z",
    ),
    ("map M type ref", b"M\x90\x90\x91Z"),
    ("map empty", b"HZ"),
    # 4.9 / 4.2 objects and class definitions
    (
        "class def + O + compact object",
        b"C\x0bexample.Car\x92\x05color\x05modelO\x90\x03red\x08corvette\x60\x05green\x05civic",
    ),
    # 4.10 ref
    ("list with ref", b"\x79H\x90\x90Z" + b"Q\x90"),
    ("linked list with ref", b"C\x0aLinkedList\x92\x04head\x04tail\x60\x91\x60\x92Q\x90"),
]

#: Values that count as one (a class definition does not count on its own).
ONE_VALUE = {
    "class def + O + compact object": 2,
    "list with ref": 2,
}


@pytest.mark.parametrize(("name", "data"), SPEC_VALUES, ids=[n for n, _ in SPEC_VALUES])
def test_skip_values_stops_exactly_after_each_spec_form(name: str, data: bytes) -> None:
    count = ONE_VALUE.get(name, 1)
    trailing = data + b"\x90"  # a following value must not be consumed
    assert skip_values(trailing, 0, count, []) == len(data)


@pytest.mark.parametrize(("name", "data"), SPEC_VALUES, ids=[n for n, _ in SPEC_VALUES])
def test_every_truncation_of_a_spec_form_is_refused(name: str, data: bytes) -> None:
    count = ONE_VALUE.get(name, 1)
    for cut in range(len(data)):
        try:
            end = skip_values(data[:cut], 0, count, [])
        except (CodecError, IndexError, struct.error):
            continue
        assert end > cut, f"{name}: truncated at {cut} but scanner reports end {end}"


def test_objects_resolve_class_definitions_across_calls() -> None:
    classes: list[int] = []
    definition = b"C\x0bexample.Car\x92\x05color\x05model\x60\x03red\x03vw1"
    end = skip_values(definition, 0, 1, classes)
    assert (end, classes) == (len(definition), [2])
    later = b"\x60\x04blue\x03vw2O\x90\x01a\x01b"
    assert skip_values(later, 0, 2, classes) == len(later)


def test_object_with_undefined_class_is_refused() -> None:
    with pytest.raises(CodecError, match="undefined class"):
        skip_values(b"\x61\x90", 0, 1, [1])


@pytest.mark.parametrize("tag", [b"@", b"E", b"G", b"P", b"Z"])
def test_reserved_tags_are_refused(tag: bytes) -> None:
    with pytest.raises(CodecError):
        skip_values(tag + b"\x90\x90", 0, 1, [])


def test_nesting_beyond_max_depth_is_refused_and_at_it_accepted() -> None:
    ok = b"\x79" * MAX_DEPTH + b"\x90"
    assert skip_values(ok, 0, 1, []) == len(ok)
    with pytest.raises(CodecError, match="nested deeper"):
        skip_values(b"\x79" + ok, 0, 1, [])
    with pytest.raises(CodecError, match="nested deeper"):
        skip_values(b"W" * (MAX_DEPTH + 1) + b"Z" * (MAX_DEPTH + 1), 0, 1, [])


def test_negative_list_length_is_refused() -> None:
    with pytest.raises(CodecError, match="negative"):
        skip_values(b"X\x8f", 0, 1, [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "é",
        "中文字符串",
        "emoji 😀 pair",
        "😀",
        "x" * 31,
        "x" * 32,
        "é" * 1023,
        "é" * 1024,
        "中" * 40000,
        "a😀" * 20000,
    ],
    ids=lambda t: f"{len(t)}:{t[:6]!r}",
)
def test_strings_all_forms_read_and_skip(text: str) -> None:
    for form in ("short", "S"):
        for chunk in (0x8000, 7):
            data = h2w.string(text, chunk=chunk, form=form) + b"\xa5"  # 0xa5: an int
            size = len(data) - 1
            assert skip_string(data, 0) == size
            assert read_string(data, 0) == (text, size)
            assert skip_values(data, 0, 1, []) == size


def test_codec_writer_matches_the_test_writer() -> None:
    for text in ["", "abc", "é" * 40, "😀x", "中" * 70000]:
        assert encode_string(text) == h2w.string(text)
        assert read_string(encode_string(text), 0)[0] == text
    for value in [0, -16, 47, 48, -17, 2047, -2048, 2048, 262143, -262144, 262144, -(2**31)]:
        assert encode_int(value) == h2w.int_(value)
        assert read_int(encode_int(value), 0) == (value, len(encode_int(value)))


def test_four_byte_utf8_counts_two_units() -> None:
    data = b"\x02\xf0\x9f\x98\x80\x90"  # "😀" as real UTF-8, counted as 2 UTF-16 units
    assert read_string(data, 0) == ("😀", 5)
    with pytest.raises(CodecError, match="supplementary"):
        skip_string(b"\x01\xf0\x9f\x98\x80", 0)


def test_multibyte_char_at_end_does_not_swallow_a_following_int() -> None:
    data = b"\x01\xc3\xa9\x90"  # "é" then int 0 (0x90 looks like a continuation byte)
    assert skip_string(data, 0) == 3


def test_string_past_the_end_is_refused() -> None:
    for data in [b"\x05abc", b"\x02\xe4\xb8", b"S\x00\x09abc", b"R\x00\x01a"]:
        with pytest.raises((CodecError, IndexError)):
            skip_string(data, 0)


def test_invalid_utf8_is_refused_when_read() -> None:
    with pytest.raises(CodecError, match="UTF-8"):
        read_string(b"\x01\xff", 0)
    with pytest.raises(CodecError, match="UTF-8"):
        read_string(b"\x01\xed\xa0\x80", 0)  # a lone surrogate


def test_read_string_null_is_empty() -> None:
    assert read_string(b"N", 0) == ("", 1)


@pytest.mark.parametrize(
    ("descriptor", "count"),
    [
        ("", 0),
        ("Ljava/lang/String;", 1),
        ("II", 2),
        ("[Ljava/lang/String;[[IJLjava/util/Map;Z", 5),
        ("VZBCDFIJS", 9),
    ],
)
def test_count_arguments(descriptor: str, count: int) -> None:
    assert count_arguments(descriptor) == count


@pytest.mark.parametrize("descriptor", ["Ljava/lang/String", "Q", "I;"])
def test_count_arguments_refuses_bad_descriptors(descriptor: str) -> None:
    with pytest.raises(CodecError):
        count_arguments(descriptor)


SHORT_STRINGS = [
    b"\x00",
    b"\x05world",
    b"\x1f" + b"x" * 31,
    b"\x02\xc3\xa9\xc3\xa9",  # "éé": not ASCII, the general skip
    b"\x01\xf0\x9f\x98\x80",  # one 4-byte character counted as one unit: refused
    b"\x05wor",  # cut by the end of the data
    b"\x03a\xffb",  # invalid UTF-8 byte: the scanner skips by units, as before
]


@pytest.mark.parametrize("data", SHORT_STRINGS)
def test_skip_values_skips_short_strings_as_skip_string(data: bytes) -> None:
    """The inline skip of short ASCII strings in :func:`skip_values` ends where
    :func:`skip_string` ends and fails as it fails, alone or inside a list."""

    def outcome(skip: Callable[[], int]) -> int | type[Exception]:
        try:
            return skip()
        except (CodecError, IndexError) as exc:
            return type(exc)

    expected = outcome(lambda: skip_string(data, 0))
    assert outcome(lambda: skip_values(data, 0, 1, [])) == expected
    listed = b"\x79" + data  # a one-element untyped list around it
    in_list = outcome(lambda: skip_values(listed, 0, 1, []))
    assert in_list == (expected + 1 if isinstance(expected, int) else expected)
