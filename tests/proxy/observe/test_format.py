"""Every access-log command operator, the text and JSON formats, and the format errors.

The operators read an ended request; here it is a plain stand-in with the attributes a
request observer may read (``RequestObserver``), so each ending can be set up exactly.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from aeraki.codec.api import ErrorType, LocalError, Metadata, ResponseStatus
from aeraki.errors import ConfigError
from aeraki.proxy.config import (
    AccessLogConfig,
    FaultAbortConfig,
    FaultConfig,
    FaultDelayConfig,
    ListenerConfig,
    MetaProtocolConfig,
    RouteConfig,
    SocketAddress,
)
from aeraki.proxy.observe.access_log import compile_format
from aeraki.proxy.observe.format import compile_text, response_flags
from aeraki.proxy.request import ActiveRequest
from aeraki.proxy.routing import Route


@dataclass
class _Listener:
    application_protocol: str = "dubbo"
    config: ListenerConfig = field(
        default_factory=lambda: ListenerConfig(
            name="l",
            address=SocketAddress("127.0.0.1", 20880),
            proxy=MetaProtocolConfig(stat_prefix="s", application_protocol="dubbo", codec="c"),
        )
    )


@dataclass
class _Downstream:
    peer: str = "127.0.0.1:40000"
    transport: Any = None
    listener: _Listener = field(default_factory=_Listener)


@dataclass
class _Host:
    key: str = "10.0.0.1:20880"


@dataclass
class _Request:
    metadata: Metadata = field(default_factory=Metadata)
    downstream: _Downstream = field(default_factory=_Downstream)
    started: float = 0.0
    ended: float = 0.0
    response: Metadata | None = None
    local_error: LocalError | None = None
    route: Route | None = None
    cluster_name: str = ""
    last_host: _Host | None = None
    attempts: int = 0
    upstream: Any = None
    is_oneway: bool = False
    delayed: bool = False


def request(**kwargs: Any) -> ActiveRequest:
    now = time.monotonic()
    kwargs.setdefault("started", now - 0.0123)
    kwargs.setdefault("ended", now)
    return cast(ActiveRequest, _Request(**kwargs))


def render(fmt: str, req: ActiveRequest) -> str:
    return compile_text(fmt, "f").render(req)


def ok_response(size: int = 40, **strings: str) -> Metadata:
    md = Metadata()
    md.header_size, md.body_size = 16, size - 16
    for key, value in strings.items():
        md.put_string(key, value)
    return md


def make_route(fault: FaultConfig | None = None) -> Route:
    return Route(RouteConfig(name="r1", cluster="c", fault=fault), "routes[0]")


# -- REQ / RESP ----------------------------------------------------------------------------------
def test_req_reads_metadata_case_insensitively_with_fallback_and_truncation() -> None:
    md = Metadata()
    md.put_string("interface", "org.apache.DemoService")
    md.put_string("X-Request-Id", "abc")
    req = request(metadata=md)
    assert render("%REQ(X-REQUEST-ID)%", req) == "abc"
    assert render("%REQ(missing?interface)%", req) == "org.apache.DemoService"
    assert render("%REQ(INTERFACE):3%", req) == "org"
    assert render("%REQ(missing)%", req) == "-"


def test_resp_reads_the_forwarded_response_only() -> None:
    req = request(response=ok_response(server="v1"))
    assert render("%RESP(SERVER)% %RESP(none?server):1%", req) == "v1 v"
    assert render("%RESP(server)%", request()) == "-"


# -- codes, flags, details -----------------------------------------------------------------------
def test_response_code_and_details_per_ending() -> None:
    assert render("%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%", request(response=ok_response())) == (
        "0 via_upstream"
    )
    failed = ok_response()
    failed.response_status = ResponseStatus.ERROR
    assert render("%RESPONSE_CODE%", request(response=failed)) == "1"
    local = request(local_error=LocalError(ErrorType.ROUTE_NOT_FOUND, "no matched route 'x'"))
    assert render("%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%", local) == ("1 no_matched_route_'x'")
    assert render("%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%", request(is_oneway=True)) == "0 -"
    assert render("%RESPONSE_CODE_DETAILS%", request()) == "downstream_remote_disconnect"


@pytest.mark.parametrize(
    ("error", "attempts", "routed", "upstream", "flags"),
    [
        (ErrorType.ROUTE_NOT_FOUND, 0, False, False, "NR"),
        (ErrorType.CLUSTER_NOT_FOUND, 0, True, False, "NC"),
        (ErrorType.NO_HEALTHY_UPSTREAM, 0, True, False, "UH"),
        (ErrorType.BAD_RESPONSE, 1, True, True, "UPE"),
        (ErrorType.TIMEOUT, 1, True, True, "UT"),
        (ErrorType.OVER_LIMIT, 0, False, False, "RL"),
        (ErrorType.OVER_LIMIT, 1, True, False, "UO"),
        (ErrorType.OVER_LIMIT, 3, True, False, "UO,URX"),
        (ErrorType.UNSPECIFIED, 1, True, False, "UF"),
        (ErrorType.UNSPECIFIED, 2, True, False, "UF,URX"),
        (ErrorType.UNSPECIFIED, 1, True, True, "UC"),
    ],
)
def test_response_flags_of_local_replies(
    error: ErrorType, attempts: int, routed: bool, upstream: bool, flags: str
) -> None:
    req = request(
        local_error=LocalError(error, "meta protocol upstream request: boom"),
        attempts=attempts,
        route=make_route() if routed else None,
        upstream=object() if upstream else None,
    )
    assert response_flags(req) == flags


def test_router_errors_after_a_connection_are_not_connect_failures() -> None:
    error = LocalError(ErrorType.UNSPECIFIED, "meta protocol router: cannot encode request: x")
    assert response_flags(request(local_error=error, attempts=1, route=make_route())) is None


def test_rate_limit_service_failure_is_rlse() -> None:
    error = LocalError(
        ErrorType.OVER_LIMIT,
        "meta protocol global ratelimit: rate limit service failed (call failed: UNAVAILABLE) "
        "for request '1' and failure_mode_deny is set",
    )
    assert response_flags(request(local_error=error)) == "RLSE"


def test_per_try_timeout_after_retries_is_ut_urx_but_route_timeout_is_ut() -> None:
    per_try = LocalError(ErrorType.TIMEOUT, "meta protocol router: attempt 3 timed out after 1s")
    whole = LocalError(ErrorType.TIMEOUT, "meta protocol router: request timed out after 1s")
    assert response_flags(request(local_error=per_try, attempts=3, route=make_route())) == (
        "UT,URX"
    )
    assert response_flags(request(local_error=whole, attempts=3, route=make_route())) == "UT"


def test_fault_flags_abort_and_delay() -> None:
    fault = FaultConfig(
        delay=FaultDelayConfig(fixed_delay=0.01),
        abort=FaultAbortConfig(error_type="OVER_LIMIT", message="injected"),
    )
    req = request(
        local_error=LocalError(ErrorType.OVER_LIMIT, "injected"),
        route=make_route(fault),
        delayed=True,
    )
    assert response_flags(req) == "DI,FI"
    # A partial delay: DI exactly for the requests it held back.
    partial = make_route(FaultConfig(delay=FaultDelayConfig(fixed_delay=0.01, numerator=50)))
    assert response_flags(request(response=ok_response(), route=partial)) is None
    held = request(response=ok_response(), route=partial, delayed=True)
    assert response_flags(held) == "DI"


def test_flags_of_success_oneway_and_abandoned() -> None:
    assert render("%RESPONSE_FLAGS%", request(response=ok_response())) == "-"
    assert render("%RESPONSE_FLAGS%", request(is_oneway=True)) == "-"
    assert render("%RESPONSE_FLAGS%", request()) == "DC"


# -- sizes, times, addresses ---------------------------------------------------------------------
def test_bytes_duration_and_attempts() -> None:
    md = Metadata(origin=b"x" * 25)
    req = request(metadata=md, response=ok_response(40), attempts=2, started=1.0, ended=1.0127)
    assert render(
        "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %ATTEMPTS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%", req
    ) == ("25 40 12 2 2")
    assert render("%BYTES_SENT%", request()) == "0"


def test_start_time_default_and_custom_formats() -> None:
    req = request()
    wall = time.time() - (time.monotonic() - req.started)
    line = render("%START_TIME%", req)
    parsed = calendar.timegm(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S"))
    assert line.endswith("Z")
    assert len(line) == len("2026-01-01T00:00:00.000Z")
    assert abs(parsed + int(line[20:23]) / 1000 - wall) < 0.01
    custom = render("%START_TIME(%s.%6f|%Y)%", req)
    seconds, _, rest = custom.partition(".")
    assert abs(int(seconds) - wall) <= 1
    micros, year = rest.split("|")
    assert len(micros) == 6
    assert micros.isdigit()
    assert year == time.strftime("%Y", time.gmtime(int(seconds)))


def test_upstream_and_downstream_fields() -> None:
    md = Metadata()
    md.operation_name = "DemoService/sayHello"
    req = request(
        metadata=md, cluster_name="outbound|20880||demo", last_host=_Host(), route=make_route()
    )
    line = render(
        "%UPSTREAM_CLUSTER% %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS% "
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS% %ROUTE_NAME% "
        "%PROTOCOL% %METHOD% %CONNECTION_TERMINATION_DETAILS% %UPSTREAM_LOCAL_ADDRESS%",
        req,
    )
    assert line == (
        "outbound|20880||demo 10.0.0.1:20880 127.0.0.1:40000 127.0.0.1 127.0.0.1:20880 r1 "
        "dubbo DemoService/sayHello - -"
    )
    plain = Metadata()
    plain.put_string("method", "sayHello")
    assert render("%METHOD% %UPSTREAM_CLUSTER% %UPSTREAM_HOST%", request(metadata=plain)) == (
        "sayHello - -"
    )


def test_transport_failure_reason_only_for_connect_failures() -> None:
    error = LocalError(ErrorType.UNSPECIFIED, "meta protocol upstream request: refused")
    assert render(
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%", request(local_error=error, attempts=1)
    ) == ("meta protocol upstream request: refused")
    assert render("%UPSTREAM_TRANSPORT_FAILURE_REASON%", request(response=ok_response())) == "-"


# -- formats -------------------------------------------------------------------------------------
def test_text_format_gets_a_newline_and_omit_empty_values() -> None:
    req = request(response=ok_response())
    line = compile_format(AccessLogConfig(path="x", text_format="%ROUTE_NAME%|%PROTOCOL%"), "f")
    assert line.render(req) == "-|dubbo\n"
    omit = AccessLogConfig(
        path="x", text_format="%ROUTE_NAME%|%PROTOCOL%\n", omit_empty_values=True
    )
    assert compile_format(omit, "f").render(req) == "|dubbo\n"


def test_default_text_format_is_envoys_shape() -> None:
    md = Metadata(origin=b"x" * 10)
    md.operation_name = "svc/m"
    req = request(metadata=md, response=ok_response(40), started=1.0, ended=1.0021)
    line = compile_format(AccessLogConfig(path="x"), "f").render(req)
    assert line.endswith(
        '] "dubbo svc/m" 0 - 10 40 2 "-" "-" "-" 127.0.0.1:40000 via_upstream\n'
    ), line


def test_json_format_keeps_types_nests_and_omits() -> None:
    md = Metadata(origin=b"x" * 10)
    md.put_string("interface", "Demo")
    req = request(metadata=md, response=ok_response(40), attempts=1, started=1.0, ended=1.0051)
    spec = {
        "code": "%RESPONSE_CODE%",
        "duration": "%DURATION%",
        "route": "%ROUTE_NAME%",
        "text": "%PROTOCOL%/%REQ(interface)% in %DURATION%ms",
        "nested": {"bytes": "%BYTES_RECEIVED%", "flags": "%RESPONSE_FLAGS%"},
        "constant": 7,
        "mixed": "route=%ROUTE_NAME%",
    }
    line = compile_format(AccessLogConfig(path="x", json_format=spec), "f").render(req)
    assert line.endswith("\n")
    assert "\n" not in line[:-1]
    assert json.loads(line) == {
        "code": 0,
        "duration": 5,
        "route": None,
        "text": "dubbo/Demo in 5ms",
        "nested": {"bytes": 10, "flags": None},
        "constant": 7,
        "mixed": "route=-",
    }
    omit = AccessLogConfig(path="x", json_format=spec, omit_empty_values=True)
    assert json.loads(compile_format(omit, "f").render(req)) == {
        "code": 0,
        "duration": 5,
        "text": "dubbo/Demo in 5ms",
        "nested": {"bytes": 10},
        "constant": 7,
        "mixed": "route=",
    }


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%NOPE%", "unknown command operator %NOPE%"),
        ("100% done", "no valid command operator at position 3"),
        ("%REQ%", "%REQ(KEY)% needs a key"),
        ("%REQ(a?b?c)%", "KEY or KEY?ALTERNATIVE"),
        ("%DURATION(x)%", "takes no argument"),
    ],
)
def test_bad_formats_are_config_errors_naming_the_place(fmt: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_text(fmt, "access_log[0].typed_config")
    assert caught.value.path == "access_log[0].typed_config"
    assert message in caught.value.message


def test_json_format_errors_name_the_key() -> None:
    config = AccessLogConfig(path="x", json_format={"a": {"b": "%BAD%"}})
    with pytest.raises(ConfigError) as caught:
        compile_format(config, "log")
    assert caught.value.path == "log.a.b"
