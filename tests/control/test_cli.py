"""``aeraki control`` and ``aeraki run``: arguments, settings, the run loop and SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from aeraki.control import cli
from aeraki.control.runtime import ControlPlane
from aeraki.control.xds import LISTENER_TYPE
from aeraki.proxy.bootstrap import bootstrap_from_dict
from tests.control.test_runtime import DUBBO, THRIFT, write_mesh
from tests.control.xds.client import AdsClient

REPO = Path(__file__).resolve().parents[2]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, cli.Command]]:
    parser = argparse.ArgumentParser(prog="aeraki")
    commands = cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv), commands


def test_add_commands_registers_control_and_run_with_defaults() -> None:
    args, commands = _parse(["control", "some/dir"])
    assert set(commands) == {"control", "run"}
    assert args.xds_address == ("127.0.0.1", 15010)
    assert (args.quiet_ms, args.max_delay_ms, args.poll_ms) == (0.1, 1.0, 0.5)
    assert args.bind_address == "127.0.0.1"
    run, _ = _parse(["run", "dir", "--duration", "2", "--quiet-ms", "50"])
    assert run.xds_address == ("127.0.0.1", 0)  # in-process: any free port
    assert (run.duration, run.quiet_ms) == (2.0, 0.05)


def test_environment_overrides_defaults_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERAKI_XDS_ADDRESS", "127.0.0.1:16010")
    monkeypatch.setenv("AERAKI_DEBOUNCE_QUIET_MS", "250")
    args, _ = _parse(["control", "d"])
    assert args.xds_address == ("127.0.0.1", 16010)
    assert args.quiet_ms == 0.25
    args, _ = _parse(["control", "d", "--quiet-ms", "5"])
    assert args.quiet_ms == 0.005


@pytest.mark.parametrize(
    "argv",
    [
        ["control", "d", "--xds-address", "nope"],
        ["control", "d", "--quiet-ms", "-1"],
        ["run", "d", "--duration", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_control_needs_exactly_one_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, commands = _parse(["control"])
    assert commands["control"](args) == 2
    args, commands = _parse(["control", str(tmp_path), "--kubernetes"])
    assert commands["control"](args) == 2
    args, commands = _parse(["control", str(tmp_path / "missing")])
    assert commands["control"](args) == 2
    assert "no such file or directory" in capsys.readouterr().err
    args, commands = _parse(["run", str(tmp_path / "missing")])
    assert commands["run"](args) == 2


def test_control_plane_needs_a_source() -> None:
    with pytest.raises(ValueError, match="at least one config source"):
        ControlPlane([], translator=lambda *_: None)  # type: ignore[arg-type]


def test_local_proxy_bootstrap_is_accepted_by_the_proxy() -> None:
    config = bootstrap_from_dict(cli.local_proxy_bootstrap(15010, admin_port=15000, delta=True))
    assert config.ads is not None
    assert config.ads.delta
    assert config.node_id == cli.RUN_NODE_ID
    assert config.admin is not None


async def test_run_mesh_prints_status_when_it_changes(tmp_path: Path) -> None:
    thrift_port, dubbo_port = _free_ports(2)
    write_mesh(tmp_path, thrift_port, dubbo_port)
    out = io.StringIO()
    status = await cli.run_mesh(
        str(tmp_path), duration=1.5, quiet=0.02, poll=0.05, out=out, interval=0.1
    )
    assert status == 0
    text = out.getvalue()
    final = text.strip().split("\n\n")[-1]  # blocks are separated by a blank line
    assert f"{THRIFT} [{thrift_port}/tcp-metaprotocol-thrift-server] 2 endpoint(s)" in final
    assert f"{THRIFT} (meta-thrift/thrift) [r] * -> v1" in final
    assert f"outbound|{dubbo_port}|v2|{DUBBO}  127.0.0.1:20882" in final
    assert f"{cli.RUN_NODE_ID} (sotw, in sync)" in final
    assert "    Listener: ACKed " in final
    assert "    RouteConfiguration: ACKed " in final
    assert "Problems (0):" in final
    assert text.count("aeraki run (") < 10  # not redrawn every 0.1 s when nothing changes


async def test_run_mesh_stops_on_event(tmp_path: Path) -> None:
    write_mesh(tmp_path, *_free_ports(2))
    stop = asyncio.Event()
    task = asyncio.create_task(cli.run_mesh(str(tmp_path), out=io.StringIO(), stop=stop))
    await asyncio.sleep(0.3)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0


def test_control_serves_xds_until_sigterm(tmp_path: Path) -> None:
    write_mesh(tmp_path)
    (xds_port,) = _free_ports(1)
    argv = [sys.executable, "-m", "aeraki.control.cli", "--log-level", "info", "control"]
    argv += [str(tmp_path), "--xds-address", f"127.0.0.1:{xds_port}", "--poll-ms", "50"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
    )
    try:
        listeners = asyncio.run(_fetch_listeners(xds_port))
        assert listeners == 2
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0, output
    assert "Aeraki parameter: xds_address" in output
    assert "push:" in output


async def _fetch_listeners(port: int) -> int:
    deadline = time.monotonic() + 20
    while True:  # bounded by the deadline: the child needs a moment to import and bind
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                client = AdsClient(channel, "cli-test")
                client.subscribe(LISTENER_TYPE)
                resp = await client.recv()
                await client.close()
                return len(resp.resources)
        except (grpc.aio.AioRpcError, AssertionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AERAKI_DEBOUNCE_QUIET_MS": "abc"}, "--quiet-ms: not a whole number of ms: 'abc'"),
        ({"AERAKI_XDS_ADDRESS": "nowhere"}, "--xds-address"),
        ({"AERAKI_ACCESS_LOG_ENCODING": "xml"}, "--access-log-encoding"),
    ],
)
def test_a_bad_environment_value_is_a_usage_error_not_a_traceback(
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser(prog="aeraki")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["control", "d"])
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1, errors
    assert message in errors[0]
