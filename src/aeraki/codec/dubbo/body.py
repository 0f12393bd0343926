"""The part of a Dubbo body read on demand: arguments, values and attachments (§27.2, §27.4).

Why on demand: a request's attachments sit behind its arguments, so reaching them means
scanning every argument (:func:`~.hessian2.skip_values`) and then walking the map — about
4 µs of the ~8 µs a full request decode cost, paid by every request although most routes
match only the interface and method, which come first. Envoy's dubbo_proxy defers parameters
and attachments for the same reason. So decode reads the fixed part (the header, the strings
before the descriptor, a result's type) and leaves a :class:`DubboFrame` that parses the rest
the first time something needs it:

* a routable property that is not there yet — :meth:`DubboFrame.load_strings` (the
  :class:`~aeraki.codec.api.DeferredStrings` of the message) merges the string attachments;
* a mutation — ``encode`` needs the map's position (:attr:`DubboFrame.attachments`).

Consequences, both deliberate:

* **fixed-part properties win**: ``interface``, ``method`` and ``version`` come from the body's
  own strings; an attachment with one of those keys does not replace them (the reference let
  it, §27.5; Envoy's dubbo_proxy routes on the body's service name too). Every other
  attachment is routable as before.
* **malformed arguments or attachments are found when needed**, not at decode: a frame whose
  header and fixed strings are sound is routed on them; loading its properties adds none, and
  a mutation makes ``encode`` raise :class:`~aeraki.errors.CodecError` (the proxy answers
  the client with an error). Without a mutation the bytes go to the provider unchanged, which
  rejects them as it would without a proxy.
"""

from __future__ import annotations

import struct
from typing import Final

from aeraki.codec.api import Metadata
from aeraki.codec.dubbo.attachments import Attachments, read_attachments
from aeraki.codec.dubbo.framing import FLAG_REQUEST
from aeraki.codec.dubbo.hessian2 import read_string, skip_values
from aeraki.errors import CodecError

__all__ = ["FRAME_KEY", "DubboFrame", "count_arguments"]

#: Key of the :class:`DubboFrame` in ``Metadata.values``.
FRAME_KEY: Final = "dubbo"

_RESULT_HAS_VALUE: Final = frozenset({0, 1, 3, 4})
#: What a frame without a parsable body holds: no map to rewrite, no properties.
_NOTHING: Final = Attachments(0, b"H", [])


class DubboFrame:
    """Codec-private facts about one decoded frame (``metadata.get("dubbo")``), and the
    loader of its deferred routable properties (``metadata.deferred``).

    Attributes:
        flag, status: header bytes 2 and 3.
        frame: the whole message (header included), as decoded.
        body_at: requests: offset of the parameter descriptor (the body after interface,
            version and method); OK responses: offset after the result type int.
        result_type: RpcResponseType of an OK response, else -1.
    """

    __slots__ = ("_parsed", "body_at", "flag", "frame", "result_type", "status")

    def __init__(
        self, flag: int, status: int, frame: bytes, body_at: int = 0, result_type: int = -1
    ) -> None:
        self.flag = flag
        self.status = status
        self.frame = frame
        self.body_at = body_at
        self.result_type = result_type
        #: requests and OK responses parse their tail on first use; other frames have none.
        self._parsed: Attachments | None = None if body_at else _NOTHING

    @property
    def result_end(self) -> int:
        """Offset after the result type int of an OK response (where the value starts)."""
        return self.body_at

    @property
    def dubbo_version(self) -> str:
        """The request's Dubbo protocol version string ("" for other frames)."""
        if not self.flag & FLAG_REQUEST or not self.body_at:
            return ""
        return read_string(self.frame, 16)[0]

    @property
    def attachments(self) -> Attachments | None:
        """Where the attachment map is; ``None`` when the message has none to rewrite.

        Raises:
            CodecError: the arguments, value or map are malformed.
        """
        parsed = self._parse()
        return None if parsed is _NOTHING else parsed

    def load_strings(self, metadata: Metadata) -> None:
        """Add the string attachments to ``metadata.strings`` without replacing any key
        already there (:class:`~aeraki.codec.api.DeferredStrings`)."""
        strings = metadata.strings
        for key, value in self._parse().strings.items():
            if key not in strings:
                strings[key] = value

    def _parse(self) -> Attachments:
        parsed = self._parsed
        if parsed is None:
            try:
                if self.flag & FLAG_REQUEST:
                    parsed = _parse_request_tail(self.frame, self.body_at)
                else:
                    parsed = _parse_result_tail(self.frame, self.body_at, self.result_type)
            except (IndexError, ValueError, struct.error) as exc:  # reads past the frame
                raise CodecError(f"dubbo: truncated or malformed body: {exc}") from exc
            self._parsed = parsed
        return parsed


def _parse_request_tail(frame: bytes, pos: int) -> Attachments:
    """Descriptor, arguments (skipped) and attachments of a request (§27.2 items 5-7)."""
    count, pos = _read_descriptor(frame, pos)
    classes: list[int] = []
    pos = skip_values(frame, pos, count, classes)
    return read_attachments(frame, pos, classes)


def _read_descriptor(frame: bytes, pos: int) -> tuple[int, int]:
    """The number of arguments the descriptor at ``pos`` lists, and the offset after it.

    A short-form descriptor is looked up by its bytes, tag byte included (~0.1 µs against
    ~0.3 µs to read and count it): the tag fixes the length, so a key matches only a whole
    descriptor with those exact bytes, whose reading it is; a cut one never matches.
    """
    tag = frame[pos]
    if tag < 0x20:
        end = pos + 1 + tag
        count = _RAW_COUNTS.get(frame[pos:end])
        if count is not None:
            return count, end
    descriptor, end = read_string(frame, pos)
    count = count_arguments(descriptor)
    if tag < 0x20:
        if len(_RAW_COUNTS) >= 4096:
            _RAW_COUNTS.clear()
        _RAW_COUNTS[frame[pos:end]] = count
    return count, end


def _parse_result_tail(frame: bytes, pos: int, result_type: int) -> Attachments:
    """Value or exception (skipped) and attachments of an OK response (§27.4)."""
    classes: list[int] = []
    if result_type in _RESULT_HAS_VALUE:
        pos = skip_values(frame, pos, 1, classes)
    if result_type < 3:
        if pos != len(frame):
            raise CodecError(f"dubbo: {len(frame) - pos} unexpected bytes after the result")
        return _NOTHING
    return read_attachments(frame, pos, classes)


_ARG_COUNTS: dict[str, int] = {}
#: Argument counts by the bytes of short-form descriptors (:func:`_read_descriptor`).
_RAW_COUNTS: dict[bytes, int] = {}
_PRIMITIVES: Final = frozenset("VZBCDFIJS")


def count_arguments(descriptor: str) -> int:
    """Number of parameters in a JVM descriptor list such as ``Ljava/lang/String;[II`` (§27.2
    item 6: ``[`` prefixes skipped, ``VZBCDFIJS`` and ``L…;`` count one each).

    Results are cached (descriptors repeat per method); the cache is bounded.
    """
    cached = _ARG_COUNTS.get(descriptor)
    if cached is not None:
        return cached
    count, i, size = 0, 0, len(descriptor)
    while i < size:
        ch = descriptor[i]
        if ch == "L":
            i = descriptor.find(";", i)
            if i < 0:
                raise CodecError(f"dubbo: unterminated class in descriptor {descriptor!r}")
        elif ch == "[":
            i += 1
            continue
        elif ch not in _PRIMITIVES:
            raise CodecError(f"dubbo: invalid parameter descriptor {descriptor!r}")
        count += 1
        i += 1
    if len(_ARG_COUNTS) >= 4096:
        _ARG_COUNTS.clear()
    _ARG_COUNTS[descriptor] = count
    return count
