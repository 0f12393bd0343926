"""The ``aeraki`` command line: validate, explain, and argument errors."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aeraki.cli import main
from aeraki.logging_setup import JsonFormatter

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
        (["proxy", "-c", DUBBO, "--workers", "0"], "--workers: must be at least 1"),
        (["proxy", "-c", DUBBO, "--workers", "many"], "--workers: not a count or 'auto'"),
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


# -- one-line errors for bad input (subprocess: what a user sees) -------------------------------
THRIFT = EXAMPLES / "thrift.yaml"


def _aeraki(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aeraki.cli", *argv], capture_output=True, text=True, timeout=timeout
    )


def _listening_on(port: int) -> str:
    """The example Thrift bootstrap with its listener on 127.0.0.1:``port``, no admin."""
    text = THRIFT.read_text().replace("0.0.0.0, port_value: 9090", f"127.0.0.1, port_value: {port}")
    assert str(port) in text
    return text.replace("port_value: 8080", "port_value: 0")


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("missing.yaml", None, "aeraki: {path}: cannot read: No such file or directory"),
        (
            "broken.yaml",
            "static_resources:\n  listeners: [\n   - oops\n",
            "aeraki: {path}: invalid YAML at line 3, column 4: "
            "expected the node content, but found '-'",
        ),
        (
            "codec.yaml",
            THRIFT.read_text().replace("codec.thrift", "codec.nope"),
            "aeraki: invalid configuration: {path}: static_resources.listeners[0]."
            "filter_chains[0].filters[0].typed_config.codec.name: unknown codec "
            "'aeraki.meta_protocol.codec.nope'; known: aeraki.meta_protocol.codec.dubbo, "
            "aeraki.meta_protocol.codec.fake, aeraki.meta_protocol.codec.thrift; "
            "or use 'module:Class'",
        ),
    ],
)
def test_bad_bootstrap_is_one_line_exit_1(
    tmp_path: Path, name: str, text: str | None, line: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    for command in ("proxy", "validate"):
        done = _aeraki(command, "-c", str(path))
        assert done.returncode == 1, done.stderr
        assert done.stderr == line.format(path=path) + "\n"


def test_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "busy.yaml"
        path.write_text(_listening_on(port))
        done = _aeraki("--log-level", "error", "proxy", "-c", str(path))
    assert done.returncode == 1
    assert done.stderr == (
        f"aeraki: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another process has it)\n"
    )


def test_workers_refuse_an_ephemeral_listener_port_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ephemeral.yaml"
    path.write_text(_listening_on(0))
    done = _aeraki("proxy", "-c", str(path), "--workers", "2")
    assert done.returncode == 1
    assert done.stderr.startswith("aeraki: invalid configuration: listener ")
    assert done.stderr.endswith(
        ": port 0 cannot be shared by several workers (each would bind its own ephemeral "
        "port); give a port, or run one worker\n"
    )


def test_xds_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _aeraki("control", str(tmp_path), "--xds-address", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"aeraki: cannot listen on 127.0.0.1:{port}: "
        "address in use or not an address of this machine"
    )


def test_unreachable_control_plane_is_a_warning_and_a_retry_in_json_logs(
    tmp_path: Path, free_port: int
) -> None:
    """``aeraki proxy`` with ADS to a closed port keeps running: each failed attempt is one
    WARNING record (JSON, as asked after the command), never a traceback; then SIGTERM."""
    from aeraki.control.cli import local_proxy_bootstrap

    path = tmp_path / "ads.yaml"
    path.write_text(yaml.safe_dump(local_proxy_bootstrap(free_port)))
    argv = [sys.executable, "-m", "aeraki.cli", "proxy", "-c", str(path)]
    argv += ["--log-format", "json", "--log-level", "info"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    warnings: list[dict[str, str]] = []
    infos: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while len(warnings) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()  # the proxy retries within seconds
            if not line:
                break
            record = json.loads(line)  # every line is one JSON record
            assert record["level"] in ("INFO", "WARNING"), record
            if record["level"] == "INFO":
                infos.append(record["message"])
            else:
                warnings.append(record)
        assert proc.poll() is None  # still running, still retrying
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    assert len(warnings) == 2, warnings
    for record in warnings:
        assert record["logger"] == "aeraki.proxy.xds_client"
        assert f"127.0.0.1:{free_port}" in record["message"]
        assert "UNAVAILABLE" in record["message"]
        assert record["time"].endswith("Z")
    # A stream that never got an answer is not reported as connected.
    assert not [m for m in infos if "xds: connected" in m], infos
    assert "Traceback" not in rest
    assert proc.returncode == 0


def test_json_log_records_carry_the_traceback_in_one_line() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed %s", ("it",), sys.exc_info())
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed it"
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback")
    assert entry["exception"].endswith("ValueError: boom")


def test_log_flags_are_accepted_before_and_after_the_command() -> None:
    from aeraki.cli import _parser

    before = _parser(["validate"]).parse_args(["--log-format", "json", "validate", "x"])
    after = _parser(["validate"]).parse_args(["validate", "x", "--log-level", "debug"])
    assert (before.log_format, before.log_level) == ("json", "info")
    assert (after.log_format, after.log_level) == ("text", "debug")


def test_unusable_kubeconfig_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    argv = ["--log-level", "error", "control", "--kubernetes", "--no-envoyfilters", "--kubeconfig"]
    assert main([*argv, str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == (
        f"aeraki control: cannot read kubeconfig {tmp_path / 'missing'}: [Errno 2] "
        f"No such file or directory: '{tmp_path / 'missing'}'\n"
    )
    assert main([*argv, str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aeraki control: cannot read kubeconfig {broken}: ")
    assert "line 3" in err
    assert err.count("\n") == 1
