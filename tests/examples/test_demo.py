"""The `make demo` pieces: bootstrap, layout, Dubbo response parsing, summary, process plumbing,
and (integration) the whole orchestrator run as a user would, for ~3 s and with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aeraki.codec.api import Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.proxy.bootstrap import load_bootstrap
from examples.demo.client import (
    DUBBO_SAYHELLO,
    DUBBO_WHOAMI,
    THRIFT_WEIGHTED,
    ClientReport,
    DemoTargets,
    summary_lines,
)
from examples.demo.dubbo_client import DubboError, parse_string_result
from examples.demo.layout import (
    BOOTSTRAP,
    PortInUseError,
    check_ports_free,
    describe_routes,
    expected_behaviour,
    layout_of,
    load_layout,
    pick_free_ports,
    remap_ports,
)
from examples.demo.processes import Children, StartError

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Commands the demo starts; a leftover process would match one of these.
DEMO_COMMANDS = (b"DubboProvider", b"tests.integration.peers.thrift_server", b"aeraki.cli")
PID_LINE = re.compile(r"^\s+(\S+)\s+pid (\d+)\s", re.MULTILINE)
WEIGHTED_LINE = re.compile(r"Weighted route \(thrift\): v1 ([\d.]+) % / v2 ([\d.]+) %")


# ------------------------------------------------------------------ bootstrap and layout


def test_shipped_bootstrap_validates_with_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aeraki.cli", "validate", "-c", str(BOOTSTRAP)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK (2 listener(s), 4 cluster(s))" in proc.stdout


def test_layout_reads_the_documented_ports_and_routes() -> None:
    layout = load_layout()
    assert (layout.admin_port, layout.thrift_port, layout.dubbo_port) == (19000, 19090, 19880)
    assert {b.cluster: (b.kind, b.label, b.port) for b in layout.backends} == {
        "thrift-v1": ("thrift", "v1", 19091),
        "thrift-v2": ("thrift", "v2", 19092),
        "dubbo-v1": ("dubbo", "v1", 19881),
        "dubbo-v2": ("dubbo", "v2", 19882),
    }
    weights, methods = expected_behaviour(layout)
    assert weights == {"v1": 80, "v2": 20}
    assert methods == {"sayHello": "v1", "whoami": "v2"}
    routes = describe_routes(layout)
    assert any("thrift-v1 80 %, thrift-v2 20 %" in r for r in routes)
    assert any("method=sayHello" in r and r.endswith("-> dubbo-v1") for r in routes)


def test_free_port_copy_changes_only_ports_and_still_validates(tmp_path: Path) -> None:
    layout = load_layout()
    old = sorted(layout.ports())
    mapping = dict(zip(old, pick_free_ports(len(old)), strict=True))
    config = remap_ports(layout.config, mapping)
    assert layout.config["admin"]["address"]["socket_address"]["port_value"] == 19000  # untouched
    moved = layout_of(config)
    assert sorted(moved.ports()) == sorted(mapping.values())
    assert moved.thrift_port == mapping[19090]
    assert expected_behaviour(moved) == expected_behaviour(layout)
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(config))
    assert len(load_bootstrap(path).listeners) == 2


def test_busy_port_is_named_in_the_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"port {port} on 127\.0\.0\.1 \(for the thing\)"):
            check_ports_free({port: "thing"})


# ------------------------------------------------------------------ Dubbo responses


def _h2_string(s: str) -> bytes:
    data = s.encode()
    return bytes([len(s)]) + data if len(s) < 32 else b"S" + struct.pack(">H", len(s)) + data


def _response(status: int, body: bytes, request_id: int = 9) -> bytes:
    return struct.pack(">HBBqI", 0xDABB, 0x02, status, request_id, len(body)) + body


def _decode(frame: bytes) -> str:
    (md,) = DubboCodec(Side.RESPONSE).decode(frame)
    assert md.request_id == 9
    return parse_string_result(md)


def test_dubbo_string_result_is_read() -> None:
    text = "Hello demo, response from v2"
    assert _decode(_response(20, b"\x91" + _h2_string(text))) == text  # RESPONSE_VALUE
    with_attachments = b"\x94" + _h2_string("v1") + b"H" + _h2_string("k") + _h2_string("v") + b"Z"
    assert _decode(_response(20, with_attachments)) == "v1"


def test_dubbo_error_status_and_exception_raise() -> None:
    with pytest.raises(DubboError, match="status 70 SERVICE_ERROR: no method"):
        _decode(_response(70, _h2_string("no method x")))
    with pytest.raises(DubboError, match="exception"):
        _decode(_response(20, b"\x90N"))  # RESPONSE_WITH_EXCEPTION, null exception


# ------------------------------------------------------------------ summary and processes


def test_summary_states_split_and_method_mapping() -> None:
    counts = {
        (THRIFT_WEIGHTED, "v1"): 80,
        (THRIFT_WEIGHTED, "v2"): 20,
        (DUBBO_SAYHELLO, "v1"): 50,
        (DUBBO_WHOAMI, "v2"): 50,
    }
    report = ClientReport(2.0, counts, {}, "", "time")
    text = "\n".join(summary_lines(DemoTargets(1, 2), report))
    assert "Summary after 2.0 s: 200 answers, 0 errors" in text
    assert "Weighted route (thrift): v1 80.0 % / v2 20.0 % (configured v1 80 % / v2 20 %)" in text
    assert "Method routes (dubbo): sayHello -> v1; whoami -> v2" in text


def test_child_that_exits_early_is_reported_with_its_log(tmp_path: Path) -> None:
    children = Children(tmp_path, REPO_ROOT)
    argv = [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]
    child = children.spawn("early", argv, 0)
    try:
        with pytest.raises(StartError, match=r"exited with code 3(.|\n)*boom"):
            children.wait_ready(child, lambda: False, timeout=10, what="nothing")
    finally:
        children.stop_all()
    assert not child.alive()


# ------------------------------------------------------------------ the whole demo


def _demo_env(seconds: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEMO_SECONDS=seconds, DEMO_PORTS="auto", DEMO_RATE="100", PYTHONUNBUFFERED="1")
    return env


def _printed_pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in PID_LINE.findall(output)}


def _assert_gone(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone
        # the PID exists: only a failure if it is still our process (not a reused PID)
        assert not any(c in cmdline for c in DEMO_COMMANDS), f"{name} (pid {pid}) still runs"


@pytest.mark.integration
def test_demo_runs_shows_both_routes_and_leaves_nothing_running() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
        env=_demo_env("3"),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    pids = _printed_pids(out)
    assert set(pids) == {"thrift-v1", "thrift-v2", "dubbo-v1", "dubbo-v2", "aeraki-proxy"}, out
    assert "/stats" in out
    weighted = WEIGHTED_LINE.search(out)
    assert weighted is not None, out
    v1, v2 = float(weighted.group(1)), float(weighted.group(2))
    # ~300 calls at 80/20: one standard deviation is ~2.3 points
    assert 60.0 <= v1 <= 95.0, out
    assert 5.0 <= v2 <= 40.0, out
    assert "Method routes (dubbo): sayHello -> v1; whoami -> v2" in out
    assert "listener demo-thrift" in out  # proxy stats from admin
    assert ", 0 errors" in out
    assert out.rstrip().endswith("Demo finished.")
    _assert_gone(pids)


@pytest.mark.integration
def test_ctrl_c_mid_run_stops_everything_and_exits_zero(tmp_path: Path) -> None:
    log = tmp_path / "demo.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.demo"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=_demo_env("120"),
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        for _ in range(1200):  # bounded poll for the client to be running
            text = log.read_text()
            if "[  1.0s]" in text or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "[  1.0s]" in text, text
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the launcher
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = log.read_text()
    assert "Stopped early by Ctrl-C." in out
    assert "Stopped 5 processes" in out
    _assert_gone(_printed_pids(out))
