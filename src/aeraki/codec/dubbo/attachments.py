"""Dubbo attachments: read the map that ends a request or result, and rewrite it (§27.2, §27.6).

Attachments are a Hessian map, untyped (``H … Z``, what Java's HashMap gives) or typed
(``M type … Z``). Entries whose key and value are both strings become routable properties;
any other entry (an int, a list, an object, a null) is skipped with the scanner and kept.

A rewrite keeps every entry byte-exact except the values of replaced keys and appends new keys
as string entries, so a non-string value survives a mutation untouched. Replacing a key changes
only that entry's value; keys match exactly (Dubbo attachment keys are case-sensitive).

Limitation: Hessian refs (``Q``) and class definitions count positions in the whole message.
Replacing a *non-string* value that defined a class or held a container referenced by a later
entry would shift those numbers; Dubbo writes string attachments, so this is left unhandled.

Maps are cached by their bytes (:func:`read_attachments`): a consumer sends the same map with
nearly every request (path, interface, version, timeout, its own keys), so a route, hash
policy or rate-limit condition on an attachment would otherwise walk the same map on every
request (~2.5 µs for five entries, against ~0.15 µs for the lookup). A parse depends only on
the map's bytes when no class definition precedes it in the message, so only such maps are
cached; a parse that raises is never cached (malformed maps raise every time). A map is
cached the second time it is seen: maps that never repeat (a trace id in each) are only
parsed, so they neither evict the steady ones nor slow every request down (caching all of
them cost ~0.45 µs per such request, measured; now within noise of no cache at all).
"""

from __future__ import annotations

from typing import Final

from aeraki.codec.api import Mutation
from aeraki.codec.dubbo.hessian2 import is_string_tag, read_string, skip_type, skip_values
from aeraki.codec.dubbo.hessian2_writer import encode_string
from aeraki.errors import CodecError

__all__ = ["Attachments", "read_attachments"]

_MAP_END: Final = 0x5A  # 'Z'
#: Parsed maps kept by their bytes (see the module docstring); cleared when full.
_CACHE_SIZE: Final = 512
#: Longer maps are not cached (bounds the cache at ~1 MiB; such maps are rare).
_CACHE_MAX_BYTES: Final = 2048
_cache: dict[bytes, Attachments] = {}
#: Maps seen once, not cached (yet); cleared when full.
_seen: set[bytes] = set()

_Entry = tuple[str | None, int, int, int]


class Attachments:
    """Where the attachment map of one message sits, and its entries.

    Attributes:
        start: offset of the map in the frame (header included), or the frame length when the
            message has none.
        prefix: the map's opening bytes (``H``, or ``M`` plus its type), reused on rewrite.
        entries: ``(key, key_start, value_start, value_end)`` per entry, offsets in the frame
            the map was parsed from, where it started at ``origin`` (a cached parse serves
            frames with the map elsewhere); ``key`` is ``None`` unless both key and value are
            strings.
        origin: where the map started in the frame it was parsed from.
        strings: the string entries by lower-cased key (a later duplicate wins): the
            routable properties. Shared by every message with the same map: read only.
    """

    __slots__ = ("entries", "origin", "prefix", "start", "strings")

    def __init__(
        self,
        start: int,
        prefix: bytes,
        entries: list[_Entry],
        strings: dict[str, str] | None = None,
        origin: int | None = None,
    ) -> None:
        self.start = start
        self.prefix = prefix
        self.entries = entries
        self.strings: dict[str, str] = {} if strings is None else strings
        self.origin = start if origin is None else origin

    def at(self, start: int) -> Attachments:
        """This map as found at ``start`` of another frame (a cached parse reused)."""
        if start == self.start:
            return self
        return Attachments(start, self.prefix, self.entries, self.strings, self.origin)

    def render(self, frame: bytes, mutation: Mutation) -> bytes:
        """The map's bytes with ``mutation`` applied (§27.6): kept entries byte-exact."""
        parts = [self.prefix]
        replaced: set[str] = set()
        shift = self.start - self.origin
        for key, key_start, value_start, value_end in self.entries:
            if key is not None and key in mutation:
                parts += [
                    frame[shift + key_start : shift + value_start],
                    encode_string(mutation[key]),
                ]
                replaced.add(key)
            else:
                parts.append(frame[shift + key_start : shift + value_end])
        for key, value in mutation.items():
            if key not in replaced:
                parts += [encode_string(key), encode_string(value)]
        parts.append(b"Z")
        return b"".join(parts)


def read_attachments(frame: bytes, pos: int, classes: list[int]) -> Attachments:
    """The attachment map at ``pos``, which must end exactly at the end of ``frame``.

    ``classes`` holds the class definitions met earlier in the message; when there are none
    the parse is looked up in the cache of maps by their bytes, and cached if the same bytes
    were seen before.

    Nothing at ``pos`` (end of frame) and a lone ``N`` (null map) mean no attachments;
    anything else than a map there is refused rather than silently dropped on rewrite.
    """
    if classes or pos > len(frame):  # past the end: no key, the parse raises
        return _parse_map(frame, pos, classes)
    key = frame[pos:]
    cached = _cache.get(key)
    if cached is not None:
        return cached.at(pos)
    parsed = _parse_map(frame, pos, classes)
    if len(key) <= _CACHE_MAX_BYTES:
        if key not in _seen:
            if len(_seen) >= _CACHE_SIZE:
                _seen.clear()
            _seen.add(key)
        else:
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[key] = parsed
    return parsed


def _parse_map(frame: bytes, pos: int, classes: list[int]) -> Attachments:
    """:func:`read_attachments` without the cache."""
    size = len(frame)
    if pos == size:
        return Attachments(pos, b"H", [])
    tag = frame[pos]
    if tag == 0x4E and pos + 1 == size:  # 'N': a null map, replaced on rewrite
        return Attachments(pos, b"H", [])
    if tag == 0x48:  # 'H'
        body = pos + 1
    elif tag == 0x4D:  # 'M' type
        body = skip_type(frame, pos + 1)
    else:
        raise CodecError(f"dubbo: expected the attachments map, found tag 0x{tag:02x}")
    tail = frame[body:]
    strings: dict[str, str] = {}
    if tail.isascii():  # the usual map: string keys and values, ASCII text
        entries, end = _read_ascii_entries(frame, body, tail.decode("ascii"), classes, strings)
    else:
        entries, end = _read_entries(frame, body, classes, strings)
    if end != size:
        raise CodecError(f"dubbo: {size - end} unexpected bytes after the attachments map")
    return Attachments(pos, frame[pos:body], entries, strings)


def _read_entries(
    frame: bytes, pos: int, classes: list[int], strings: dict[str, str]
) -> tuple[list[_Entry], int]:
    """The entries from ``pos`` to the map's end, and the offset after it."""
    entries: list[_Entry] = []
    while True:
        key_start = pos
        tag = frame[pos]
        if tag == _MAP_END:
            return entries, pos + 1
        # Inline fast path for short ASCII strings, the usual key and value (hot path).
        raw = frame[pos + 1 : pos + 1 + tag] if tag < 0x20 else b""
        if len(raw) == tag and raw.isascii():
            key: str | None = raw.decode("ascii")
            pos += 1 + tag
        else:
            key, pos = _read_text_or_skip(frame, pos, classes)
        value_start = pos
        tag = frame[pos]
        raw = frame[pos + 1 : pos + 1 + tag] if tag < 0x20 else b""
        if len(raw) == tag and raw.isascii():
            value: str | None = raw.decode("ascii")
            pos += 1 + tag
        else:
            value, pos = _read_text_or_skip(frame, pos, classes)
        if key is not None and value is not None:
            strings[key.lower()] = value
        else:
            key = None
        entries.append((key, key_start, value_start, pos))


def _read_ascii_entries(
    frame: bytes, pos: int, text: str, classes: list[int], strings: dict[str, str]
) -> tuple[list[_Entry], int]:
    """:func:`_read_entries` for a map whose bytes are all ASCII (``text`` is their decoded
    copy): a string of either short form is a slice of ``text``, with no check or decode of
    its own (about 0.1 µs less per string). A length running past the frame leaves ``pos``
    beyond it, so the next tag read raises ``IndexError``."""
    base = pos
    entries: list[_Entry] = []
    while True:
        key_start = pos
        tag = frame[pos]
        if tag == _MAP_END:
            return entries, pos + 1
        if tag < 0x20:
            pos += 1 + tag
            key: str | None = text[key_start + 1 - base : pos - base]
        elif 0x30 <= tag <= 0x33:
            pos += 2 + (((tag - 0x30) << 8) | frame[pos + 1])
            key = text[key_start + 2 - base : pos - base]
        else:
            key, pos = _read_text_or_skip(frame, pos, classes)
        value_start = pos
        tag = frame[pos]
        if tag < 0x20:
            pos += 1 + tag
            value: str | None = text[value_start + 1 - base : pos - base]
        elif 0x30 <= tag <= 0x33:
            pos += 2 + (((tag - 0x30) << 8) | frame[pos + 1])
            value = text[value_start + 2 - base : pos - base]
        else:
            value, pos = _read_text_or_skip(frame, pos, classes)
        if key is not None and value is not None:
            strings[key.lower()] = value
        else:
            key = None
        entries.append((key, key_start, value_start, pos))


def _read_text_or_skip(frame: bytes, pos: int, classes: list[int]) -> tuple[str | None, int]:
    """A string (``None`` for any other value, or text that is not valid UTF-8)."""
    if is_string_tag(frame[pos]):
        try:
            return read_string(frame, pos)
        except CodecError:
            pass  # undecodable text: keep the entry, but not as a routable string
    return None, skip_values(frame, pos, 1, classes)
