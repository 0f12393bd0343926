"""Envoy access-log command operators, compiled once per format (reference §25).

A format string such as ``[%START_TIME%] %REQ(METHOD?OPERATION):20% %RESPONSE_FLAGS%`` is
parsed when the config is loaded into literal text and *operators* — plain functions of an
ended :class:`~aeraki.proxy.request.ActiveRequest` — so writing a line costs one call per
operator and one ``join``; nothing is parsed per request. A bad format (an unknown operator,
a stray ``%``) is a :class:`~aeraki.errors.ConfigError` naming the position.

What each operator reads, and what can be known (MetaProtocol requests are not HTTP):

* ``%REQ(X?Y):N%`` / ``%RESP(X?Y):N%``: routable metadata of the request / forwarded upstream
  response (case-insensitive key ``X``, else ``Y``), truncated to ``N`` characters.
* ``%RESPONSE_CODE%``: ``0`` upstream answered OK, or nothing was answered (one-way, client
  gone); ``1`` an error response or a local reply (reference §25).
* ``%RESPONSE_CODE_DETAILS%``: ``via_upstream``; a local reply's message with whitespace as
  ``_`` (as Envoy writes details); ``downstream_remote_disconnect`` when the client left.
* ``%RESPONSE_FLAGS%``: see :func:`response_flags`.
* ``%BYTES_RECEIVED%`` / ``%BYTES_SENT%``: Envoy's sense — the request's size from the client,
  the forwarded response's size to it (0 for local replies: the codec renders them after the
  log entry is made). Aeraki's MetaProtocol proxy has these two inverted (§25); we do not.
* ``%DURATION%``: whole milliseconds (truncated, as Envoy) from decode to the end, for every
  outcome (the reference knows it only on success).
* ``%START_TIME(FMT)%``: strftime in UTC plus Envoy's ``%s`` (epoch seconds) and ``%f``/``%Nf``
  (fractional seconds, ``N`` digits, default 9); default ``%Y-%m-%dT%H:%M:%S.%3fZ``.
* ``%UPSTREAM_CLUSTER%``, ``%UPSTREAM_HOST%`` (last host tried), ``%UPSTREAM_LOCAL_ADDRESS%``,
  ``%UPSTREAM_TRANSPORT_FAILURE_REASON%`` (the connect error), ``%DOWNSTREAM_REMOTE_ADDRESS%``
  (``_WITHOUT_PORT`` too), ``%DOWNSTREAM_LOCAL_ADDRESS%``, ``%ROUTE_NAME%``, ``%PROTOCOL%``
  (application protocol), ``%METHOD%`` (operation name, else the ``method`` property),
  ``%ATTEMPTS%`` = ``%UPSTREAM_REQUEST_ATTEMPT_COUNT%``, ``%HOSTNAME%``,
  ``%CONNECTION_TERMINATION_DETAILS%`` (never known: ``-``).

An unknown value is ``None``: ``-`` in text, ``null`` in JSON.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aeraki.codec.api import ErrorType, ResponseStatus
from aeraki.errors import ConfigError

if TYPE_CHECKING:
    from aeraki.proxy.request import ActiveRequest

__all__ = [
    "DEFAULT_TEXT_FORMAT",
    "Operator",
    "TextFormat",
    "Value",
    "compile_operator",
    "compile_text",
    "response_flags",
]

Value = str | int | None
Operator = Callable[["ActiveRequest"], Value]

#: Envoy's default access-log line, with MetaProtocol fields for the HTTP ones.
DEFAULT_TEXT_FORMAT = (
    '[%START_TIME%] "%PROTOCOL% %METHOD%" %RESPONSE_CODE% %RESPONSE_FLAGS% '
    '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(X-REQUEST-ID)%" "%UPSTREAM_CLUSTER%" '
    '"%UPSTREAM_HOST%" %DOWNSTREAM_REMOTE_ADDRESS% %RESPONSE_CODE_DETAILS%\n'
)

_COMMAND = re.compile(r"%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::([0-9]+))?%")
_DEFAULT_TIME = "%Y-%m-%dT%H:%M:%S.%3fZ"
_TIME_SPECIAL = re.compile(r"%([1-9]?)f|%s")
_WHITESPACE = re.compile(r"\s")
_OK = ResponseStatus.OK
_HOSTNAME = socket.gethostname()


# -- response flags ----------------------------------------------------------------------------
_FLAG_OF_ERROR = {
    ErrorType.ROUTE_NOT_FOUND: "NR",
    ErrorType.CLUSTER_NOT_FOUND: "NC",
    ErrorType.NO_HEALTHY_UPSTREAM: "UH",
    ErrorType.BAD_RESPONSE: "UPE",
    ErrorType.TIMEOUT: "UT",
}
_PER_TRY_TIMEOUT = "meta protocol router: attempt "
_RATE_LIMIT_SERVICE_FAILED = "rate limit service failed"
#: how the pool words a connection it could not give (the router's own errors differ).
_POOL_FAILURE = "meta protocol upstream request:"


def response_flags(request: ActiveRequest) -> str | None:
    """Envoy's response flags, as far as the ended request tells them.

    ``NR`` no route, ``NC`` unknown cluster, ``UH`` no healthy host, ``UPE`` bad upstream
    response, ``UT`` timeout (route or last per-try), ``UF`` connect failure (an attempt got
    no connection), ``UC`` connection lost after sending, ``UO`` circuit breaker overflow,
    ``RL`` rate limited (an OverLimit reply before routing: only rate-limit filters give one),
    ``RLSE`` refused because the rate limit service failed (``failure_mode_deny``),
    ``FI`` fault abort (the reply carries the route's abort message), ``URX`` added when an
    upstream failure ended a request that was retried, ``DC`` client gone before the answer,
    ``DI`` when a fault delay held the request back.
    """
    flags: list[str] = []
    route = request.route
    fault = route.fault if route is not None else None
    if request.delayed:
        flags.append("DI")
    error = request.local_error
    if error is not None:
        flag = _FLAG_OF_ERROR.get(error.type)
        if fault is not None and fault.abort is not None and error.message == fault.abort.message:
            flag = "FI"
        elif error.type is ErrorType.OVER_LIMIT:
            if route is not None:
                flag = "UO"
            else:
                flag = "RLSE" if _RATE_LIMIT_SERVICE_FAILED in error.message else "RL"
        elif flag is None and request.attempts:
            if request.upstream is not None:
                flag = "UC"
            elif error.message.startswith(_POOL_FAILURE):
                flag = "UF"
        if flag is not None:
            flags.append(flag)
        if request.attempts > 1 and (
            flag in ("UF", "UC", "UO", "UPE")
            or (flag == "UT" and error.message.startswith(_PER_TRY_TIMEOUT))
        ):
            flags.append("URX")
    elif request.response is None and not request.is_oneway:
        flags.append("DC")
    return ",".join(flags) if flags else None


# -- simple operators ----------------------------------------------------------------------------
def _response_code(request: ActiveRequest) -> Value:
    if request.local_error is not None:
        return 1
    response = request.response
    return 0 if response is None or response.response_status is _OK else 1


def _response_code_details(request: ActiveRequest) -> Value:
    error = request.local_error
    if error is not None:
        return _WHITESPACE.sub("_", error.message)
    if request.response is not None:
        return "via_upstream"
    return None if request.is_oneway else "downstream_remote_disconnect"


def _failure_reason(request: ActiveRequest) -> Value:
    error = request.local_error
    if (
        error is not None
        and error.type is ErrorType.UNSPECIFIED
        and request.attempts
        and request.upstream is None
        and error.message.startswith(_POOL_FAILURE)
    ):
        return error.message
    return None


def _duration(request: ActiveRequest) -> Value:
    return int((request.ended - request.started) * 1000)  # truncated, as Envoy


def _bytes_received(request: ActiveRequest) -> Value:
    return request.metadata.message_size


def _bytes_sent(request: ActiveRequest) -> Value:
    response = request.response
    return response.message_size if response is not None else 0


def _upstream_cluster(request: ActiveRequest) -> Value:
    return request.cluster_name or None


def _upstream_host(request: ActiveRequest) -> Value:
    host = request.last_host
    return host.key if host is not None else None


def _sockname(transport: object | None) -> Value:
    get = getattr(transport, "get_extra_info", None)
    name = get("sockname") if get is not None else None
    if not isinstance(name, tuple):
        return None
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _upstream_local(request: ActiveRequest) -> Value:
    upstream = request.upstream
    return _sockname(upstream.transport) if upstream is not None else None


def _downstream_remote(request: ActiveRequest) -> Value:
    return request.downstream.peer


def _downstream_remote_no_port(request: ActiveRequest) -> Value:
    return request.downstream.peer.rpartition(":")[0].strip("[]") or None


def _downstream_local(request: ActiveRequest) -> Value:
    downstream = request.downstream
    local = _sockname(downstream.transport)
    return local if local is not None else str(downstream.listener.config.address)


def _route_name(request: ActiveRequest) -> Value:
    route = request.route
    return (route.name or None) if route is not None else None


def _protocol(request: ActiveRequest) -> Value:
    return request.downstream.listener.application_protocol


def _method(request: ActiveRequest) -> Value:
    md = request.metadata
    return md.operation_name or md.get_string("method") or None


def _attempts(request: ActiveRequest) -> Value:
    return request.attempts


def _hostname(request: ActiveRequest) -> Value:
    return _HOSTNAME


def _unknown(request: ActiveRequest) -> Value:
    return None


_SIMPLE: dict[str, Operator] = {
    "RESPONSE_CODE": _response_code,
    "RESPONSE_CODE_DETAILS": _response_code_details,
    "RESPONSE_FLAGS": response_flags,
    "DURATION": _duration,
    "BYTES_RECEIVED": _bytes_received,
    "BYTES_SENT": _bytes_sent,
    "UPSTREAM_CLUSTER": _upstream_cluster,
    "UPSTREAM_HOST": _upstream_host,
    "UPSTREAM_REMOTE_ADDRESS": _upstream_host,
    "UPSTREAM_LOCAL_ADDRESS": _upstream_local,
    "UPSTREAM_TRANSPORT_FAILURE_REASON": _failure_reason,
    "DOWNSTREAM_REMOTE_ADDRESS": _downstream_remote,
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": _downstream_remote_no_port,
    "DOWNSTREAM_LOCAL_ADDRESS": _downstream_local,
    "ROUTE_NAME": _route_name,
    "PROTOCOL": _protocol,
    "METHOD": _method,
    "ATTEMPTS": _attempts,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": _attempts,
    "HOSTNAME": _hostname,
    "CONNECTION_TERMINATION_DETAILS": _unknown,
}


# -- operators with arguments ------------------------------------------------------------------
def _metadata_operator(name: str, arg: str, where: str) -> Operator:
    """``REQ``/``RESP``: a routable property, with a ``?`` fallback key."""
    main, _, alt = arg.partition("?")
    if not main or "?" in alt:
        raise ConfigError(where, f"%{name}(...)% expects KEY or KEY?ALTERNATIVE, got {arg!r}")
    main, alt = main.lower(), alt.lower()

    if name == "REQ":

        def req(request: ActiveRequest) -> Value:
            md = request.metadata
            value = md.get_string(main)
            if not value and alt:
                value = md.get_string(alt)
            return value or None

        return req

    def resp(request: ActiveRequest) -> Value:
        md = request.response
        if md is None:
            return None
        value = md.get_string(main)
        if not value and alt:
            value = md.get_string(alt)
        return value or None

    return resp


class _StartTime:
    """``%START_TIME(FMT)%``: the request's decode time as wall-clock UTC.

    The request records a monotonic time; the wall clock is derived when the line is written.
    strftime runs once per second of start time (cached), the fractions every time.
    """

    __slots__ = ("_cache_key", "_cache_parts", "_parts")

    def __init__(self, fmt: str) -> None:
        #: strftime chunks (str) and specials: an int = fraction digits, -1 = epoch seconds.
        parts: list[str | int] = []
        pos = 0
        for match in _TIME_SPECIAL.finditer(fmt):
            if match.start() > pos:
                parts.append(fmt[pos : match.start()])
            if match.group(0) == "%s":
                parts.append(-1)
            else:
                parts.append(int(match.group(1) or 9))
            pos = match.end()
        if pos < len(fmt):
            parts.append(fmt[pos:])
        self._parts = tuple(parts)
        self._cache_key = -1
        self._cache_parts: tuple[str | int, ...] = ()

    def __call__(self, request: ActiveRequest) -> Value:
        wall = time.time() - (time.monotonic() - request.started)
        second = int(wall)
        if second != self._cache_key:
            stamp = time.gmtime(second)
            self._cache_parts = tuple(
                time.strftime(p, stamp) if isinstance(p, str) else p for p in self._parts
            )
            self._cache_key = second
        out: list[str] = []
        for part in self._cache_parts:
            if isinstance(part, str):
                out.append(part)
            elif part < 0:
                out.append(str(second))
            else:
                out.append(f"{wall - second:.9f}"[2 : 2 + part])
        return "".join(out)


def _truncate(operator: Operator, length: int) -> Operator:
    def truncated(request: ActiveRequest) -> Value:
        value = operator(request)
        return value[:length] if isinstance(value, str) else value

    return truncated


def compile_operator(name: str, arg: str | None, length: str | None, where: str) -> Operator:
    """The function for ``%NAME(ARG):LENGTH%``.

    Raises:
        ConfigError: unknown operator, or an argument where none belongs (or none where one
            is needed).
    """
    operator: Operator
    if name in ("REQ", "RESP"):
        if arg is None:
            raise ConfigError(where, f"%{name}(KEY)% needs a key")
        operator = _metadata_operator(name, arg, where)
    elif name == "START_TIME":
        operator = _StartTime(arg or _DEFAULT_TIME)
    elif name in _SIMPLE:
        if arg is not None:
            raise ConfigError(where, f"%{name}% takes no argument, got ({arg})")
        operator = _SIMPLE[name]
    else:
        raise ConfigError(where, f"unknown command operator %{name}%")
    if length is not None:
        operator = _truncate(operator, int(length))
    return operator


class TextFormat:
    """A compiled format string: literal text and operators, in order.

    ``single`` is the operator when the format is exactly one operator (JSON keeps its value's
    type then: numbers stay numbers, unknown is ``null``).
    """

    __slots__ = ("_operators", "_template", "ends_with_newline", "single")

    def __init__(self, literals: list[str], operators: list[Operator]) -> None:
        #: the literals joined by ``%s`` (their own ``%`` doubled): one ``%`` formatting per
        #: line is about twice as fast as appending the pieces one by one.
        self._template = "%s".join(lit.replace("%", "%%") for lit in literals)
        self._operators = tuple(operators)
        self.ends_with_newline = literals[-1].endswith("\n")
        self.single: Operator | None = None
        if len(operators) == 1 and literals == ["", ""]:
            self.single = operators[0]

    def render(self, request: ActiveRequest, empty: str = "-") -> str:
        """The line for ``request``; unknown values are ``empty``."""
        values = [operator(request) for operator in self._operators]
        return self._template % tuple([empty if v is None or v == "" else v for v in values])


def compile_text(text: str, where: str) -> TextFormat:
    """Compile ``text`` once.

    Raises:
        ConfigError: a ``%`` that starts no valid command operator (named with its position),
            or an operator :func:`compile_operator` rejects.
    """
    literals: list[str] = []
    operators: list[Operator] = []
    pos = 0
    literal_start = 0
    while True:
        pos = text.find("%", pos)
        if pos < 0:
            break
        match = _COMMAND.match(text, pos)
        if match is None:
            raise ConfigError(
                where, f"no valid command operator at position {pos} of {text!r} (literal %?)"
            )
        literals.append(text[literal_start:pos])
        name, arg, length = match.groups()
        operators.append(compile_operator(name, arg, length, where))
        pos = literal_start = match.end()
    literals.append(text[literal_start:])
    return TextFormat(literals, operators)
