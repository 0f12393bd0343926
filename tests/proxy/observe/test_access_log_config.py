"""``access_log`` of a bootstrap's MetaProtocolProxy: Envoy's file/stdout/stderr loggers in
every format spelling, and each mistake reported with its field path."""

from __future__ import annotations

from typing import Any

import pytest

from aeraki.proxy.bootstrap import bootstrap_from_dict
from aeraki.proxy.bootstrap_problems import ConfigErrors
from aeraki.proxy.config import AccessLogConfig
from tests.proxy.test_bootstrap import TC, base, tc

FILE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
STDERR = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"


def loaded(*entries: dict[str, Any]) -> tuple[AccessLogConfig, ...]:
    d = base()
    tc(d)["access_log"] = list(entries)
    return bootstrap_from_dict(d, "b").listeners[0].proxy.access_logs


def problems(*entries: dict[str, Any]) -> dict[str, str]:
    d = base()
    tc(d)["access_log"] = list(entries)
    with pytest.raises(ConfigErrors) as info:
        bootstrap_from_dict(d, "b")
    return {p.path: p.message for p in info.value.problems}


def test_file_logger_in_every_format_spelling() -> None:
    text = {"text_format": "%PROTOCOL%\n"}
    got = loaded(
        {"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE, "path": "/tmp/a"}},
        {"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/b", "log_format": text}},
        {
            "name": "f",
            "typed_config": {
                "@type": FILE,
                "path": "/tmp/c",
                "log_format": {"json_format": {"d": "%DURATION%"}, "omit_empty_values": True},
            },
        },
        {
            "name": "f",
            "typed_config": {
                "@type": FILE,
                "path": "/tmp/d",
                "log_format": {"text_format_source": {"inline_string": "%METHOD%"}},
            },
        },
        {"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/e", "format": "%ATTEMPTS%"}},
        {"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/f", "json_format": {"a": "x"}}},
    )
    assert got == (
        AccessLogConfig(path="/tmp/a"),
        AccessLogConfig(path="/tmp/b", text_format="%PROTOCOL%\n"),
        AccessLogConfig(path="/tmp/c", json_format={"d": "%DURATION%"}, omit_empty_values=True),
        AccessLogConfig(path="/tmp/d", text_format="%METHOD%"),
        AccessLogConfig(path="/tmp/e", text_format="%ATTEMPTS%"),
        AccessLogConfig(path="/tmp/f", json_format={"a": "x"}),
    )


def test_stdout_and_stderr_loggers() -> None:
    got = loaded(
        {"name": "envoy.access_loggers.stdout", "typed_config": {"@type": STDOUT}},
        {
            "name": "envoy.access_loggers.stderr",
            "typed_config": {"@type": STDERR, "log_format": {"text_format": "%PROTOCOL%"}},
        },
    )
    assert got == (
        AccessLogConfig(path="/dev/stdout"),
        AccessLogConfig(path="/dev/stderr", text_format="%PROTOCOL%"),
    )


def test_mistakes_are_reported_with_their_paths() -> None:
    found = problems(
        {"name": "f", "typed_config": {"@type": FILE}},
        {"name": "f", "typed_config": {"@type": FILE, "path": "x", "format": "%NOPE%"}},
        {
            "name": "f",
            "typed_config": {
                "@type": FILE,
                "path": "x",
                "log_format": {"json_format": {"a": {"b": "50% off"}}},
            },
        },
        {"name": "f", "filter": {"duration_filter": {}}, "typed_config": {"@type": STDOUT}},
        {
            "name": "f",
            "typed_config": {"@type": "type.googleapis.com/envoy.config.core.v3.Locality"},
        },
        {
            "name": "f",
            "typed_config": {"@type": STDOUT, "log_format": {"content_type": "text/plain"}},
        },
    )
    log = TC + ".access_log"
    assert found == {
        f"{log}[0].typed_config.path": "required",
        f"{log}[1].typed_config": "unknown command operator %NOPE%",
        f"{log}[2].typed_config.a.b": "no valid command operator at position 2 of '50% off' "
        "(literal %?)",
        f"{log}[3].filter": "not supported yet",
        f"{log}[4].typed_config": "access logger 'envoy.config.core.v3.Locality' not supported yet "
        "(use one of envoy.extensions.access_loggers.file.v3.FileAccessLog, "
        "envoy.extensions.access_loggers.stream.v3.StderrAccessLog, "
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog)",
        f"{log}[5].typed_config.log_format.content_type": "not supported yet",
    }
