"""The ``aeraki`` command line: validate, explain, and argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeraki.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "bootstraps"
DUBBO = str(EXAMPLES / "dubbo.yaml")
INTERFACE = "interface=org.apache.dubbo.samples.basic.api.DemoService"


def test_validate_accepts_a_good_bootstrap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", DUBBO]) == 0
    assert "OK (1 listener(s), 2 cluster(s))" in capsys.readouterr().out


def test_validate_names_every_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = (EXAMPLES / "thrift.yaml").read_text()
    bad.write_text(text.replace("port_value: 9091", "port_value: 0").replace("5s", "-1s"))
    assert main(["validate", "-c", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "invalid configuration" in err
    assert "socket_address.port_value" in err
    assert "connect_timeout" in err


def test_missing_file_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", "/nonexistent/bootstrap.yaml"]) == 1
    assert "/nonexistent/bootstrap.yaml" in capsys.readouterr().err


def test_explain_shows_the_matching_route(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-c", DUBBO, INTERFACE, "method=sayHello", "foo=bar"]) == 0
    out = capsys.readouterr().out
    assert "MATCH route default-route" in out
    assert "ok   foo exact 'bar': value 'bar'" in out


def test_explain_says_why_nothing_matched(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-c", DUBBO, INTERFACE, "method=sayHello"]) == 0
    out = capsys.readouterr().out
    assert "FAIL foo exact 'bar': absent" in out
    assert "no route matched: RouteNotFound" in out


def test_explain_unknown_listener_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-c", DUBBO, "--listener", "nope"]) == 2
    assert "no listener 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "-c", DUBBO, "not-a-pair"], "expected KEY=VALUE"),
        (["proxy", "-c", DUBBO, "--drain-timeout", "-3"], "must be positive"),
        (["proxy", "-c", DUBBO, "--drain-timeout", "soon"], "not a number"),
        (["proxy"], "required: -c/--config"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_validate_manifests_reports_file_line_resource_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "router.yaml").write_text(
        """\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata:
  name: broken
  namespace: meta
spec:
  hosts:
    - thrift-sample-server.meta.svc.cluster.local
  routes:
    - name: v1
      route:
        - destination:
            host: thrift-sample-server.meta.svc.cluster.local
          weight: lots
"""
    )
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "router.yaml:14: error: MetaRouter meta/broken: spec.routes[0].route[0].weight" in out


def test_validate_needs_something_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "give manifest paths" in capsys.readouterr().err


def test_proxy_command_does_not_load_the_control_plane() -> None:
    """The control plane's modules (gRPC server, Kubernetes client, translation) stay out of
    a proxy process: they cost start-up time and memory it never uses."""
    import subprocess
    import sys

    code = (
        "import sys, aeraki.cli as c; c._parser(['proxy', '-c', 'x']); "
        "print(sorted(m for m in sys.modules if m.startswith('aeraki.control')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_help_lists_the_control_plane_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("control", "run", "envoyfilter"):
        assert command in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--access-log-format", "%NOPE%"], "--access-log-format: unknown command operator %NOPE%"),
        (
            ["--access-log-encoding", "json", "--access-log-format", "[1]"],
            "--access-log-format: with JSON encoding, give a JSON object",
        ),
        (
            ["--access-log-encoding", "json", "--access-log-format", '{"a": "%BAD%"}'],
            "--access-log-format.a: unknown command operator %BAD%",
        ),
    ],
)
def test_bad_access_log_format_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["control", str(tmp_path), "--access-log", str(tmp_path / "a.log"), *flags]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"aeraki control: {message}\n"
    assert not (tmp_path / "a.log").exists()


def test_bad_access_log_encoding_is_an_argument_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(tmp_path), "--access-log-encoding", "xml"])
    assert exited.value.code == 2
    assert "expected TEXT or JSON, got 'xml'" in capsys.readouterr().err
