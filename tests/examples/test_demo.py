"""The `make demo` pieces: manifests and phases, layout, `aeraki run` status parsing, the
scenario's accounting, Dubbo response parsing, process plumbing, and (integration) the whole
demo run as a user would: a short run through all three phases, Ctrl-C and SIGTERM mid-run."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aeraki.codec.api import Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.control.status import ProxyView, PushRecord, Status, describe_routes, render
from aeraki.control.validation import load_config
from examples.demo.client import Traffic
from examples.demo.dubbo_client import DubboError, parse_string_result
from examples.demo.launcher import ROUTERS
from examples.demo.layout import (
    MANIFESTS,
    PHASE_FILES,
    ROUTES_FILE,
    PortInUseError,
    check_ports_free,
    copy_manifests,
    load_layout,
    load_phases,
    pick_free_ports,
)
from examples.demo.processes import Children, StartError
from examples.demo.runstatus import RunLogFollower, RunStatus, parse_block
from examples.demo.scenario import Scenario, atomic_write

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Commands the demo starts; a leftover process would match one of these.
DEMO_COMMANDS = (b"DubboProvider", b"tests.integration.peers.thrift_server", b"aeraki.cli")
PID_LINE = re.compile(r"^\s+(\S+)\s+pid (\d+)\s", re.MULTILINE)
PHASE_LINE = re.compile(
    r"^Phase (\d) (\S+) \(configured [^)]*\): "
    r"thrift v1 ([\d.]+) % v2 ([\d.]+) % of (\d+) calls; "
    r"dubbo v1 ([\d.]+) % v2 ([\d.]+) % of (\d+) calls$",
    re.MULTILINE,
)


# ------------------------------------------------------------------ manifests and layout


def test_shipped_manifests_validate_with_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aeraki.cli", "validate", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 valid resources, 0 errors, 0 warnings" in proc.stdout


@pytest.mark.parametrize("phase_file", PHASE_FILES, ids=lambda p: p.name)
def test_every_phase_validates_in_place_of_routes_yaml(tmp_path: Path, phase_file: Path) -> None:
    copy_manifests(tmp_path)
    shutil.copyfile(phase_file, tmp_path / ROUTES_FILE)
    config = load_config([tmp_path])
    assert config.problems == ()
    assert len(config.meta_routers) == 2


def test_layout_and_phases_read_the_documented_ports_and_weights() -> None:
    layout = load_layout()
    assert layout.admin_port == 19000
    assert {s.kind: s.port for s in layout.services} == {"thrift": 19090, "dubbo": 19880}
    assert {b.name: b.port for b in layout.backends} == {
        "thrift-v1": 19091,
        "thrift-v2": 19092,
        "dubbo-v1": 19881,
        "dubbo-v2": 19882,
    }
    phases = load_phases(layout)
    assert [p.name for p in phases] == ["all-v1", "split-20-80", "all-v2"]
    assert [p.weights["thrift"] for p in phases] == [{"v1": 100}, {"v1": 20, "v2": 80}, {"v2": 100}]
    assert all(p.weights["dubbo"] == p.weights["thrift"] for p in phases)
    assert phases[1].describe() == "v1 20 % / v2 80 %"


def test_free_port_copy_changes_only_ports_and_still_validates(tmp_path: Path) -> None:
    layout = load_layout()
    old = sorted(layout.ports())
    mapping = dict(zip(old, pick_free_ports(len(old)), strict=True))
    copy_manifests(tmp_path, mapping)
    moved = load_layout(tmp_path, admin_port=mapping[layout.admin_port])
    assert sorted(moved.ports()) == sorted(mapping.values())
    assert moved.service("thrift").port == mapping[19090]
    assert moved.service("dubbo").host == layout.service("dubbo").host
    assert load_config([tmp_path]).problems == ()
    assert load_layout().service("thrift").port == 19090  # the shipped files are untouched


def test_busy_port_is_named_in_the_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"port {port} on 127\.0\.0\.1 \(for the thing\)"):
            check_ports_free({port: "thing"})


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / ROUTES_FILE
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == [ROUTES_FILE]


# ------------------------------------------------------------------ aeraki run's status view


def _status_lines(tmp_path: Path, phase_file: Path, *, in_sync: bool) -> list[str]:
    copy_manifests(tmp_path)
    shutil.copyfile(phase_file, tmp_path / ROUTES_FILE)
    config = load_config([tmp_path])
    proxy = ProxyView(
        "aeraki-run",
        "aeraki-run",
        "sotw",
        in_sync,
        (("Listener", "aa11", "", ""), ("RouteConfiguration", "bb22", "cc33", "bad route")),
    )
    status = Status(
        services=(),
        routes=describe_routes(config),
        clusters=(),
        proxies=(proxy,),
        last_push=PushRecord(0.0, 0.001, 1, 3),
        problems=("routes.yaml:3: error: something",),
        metrics={},
    )
    return render(status, title="aeraki run (dir, xDS :1234)")


def test_status_view_of_the_real_renderer_is_parsed(tmp_path: Path) -> None:
    lines = _status_lines(tmp_path, PHASE_FILES[1], in_sync=True)
    status = parse_block(lines)
    assert status.route_names == {r: ("split-20-80",) for r in ROUTERS}
    assert status.applies("split-20-80", ROUTERS)
    assert not status.applies("all-v2", ROUTERS)
    assert status.route_version() == "bb22"
    assert status.proxies[0].nacked == {"RouteConfiguration": "cc33: bad route"}
    assert status.problems == ("routes.yaml:3: error: something",)
    assert "v1 20%, v2 80%" in status.summary()
    updating = parse_block(_status_lines(tmp_path, PHASE_FILES[1], in_sync=False))
    assert not updating.applies("split-20-80", ROUTERS)


def test_log_follower_assembles_blocks_across_reads_and_log_lines(tmp_path: Path) -> None:
    block = _status_lines(tmp_path, PHASE_FILES[2], in_sync=True)
    log_line = "2026-01-01 12:00:00,000 INFO aeraki.control.runtime: push: 1 change(s)"
    text = "\n".join([log_line, *block[:5], log_line, *block[5:], "", log_line, ""]).encode()
    seen: list[tuple[RunStatus, float]] = []
    follower = RunLogFollower(tmp_path / "unused.log", lambda s, t: seen.append((s, t)))
    for i in range(0, len(text), 37):  # in chunks that split lines
        follower.feed(text[i : i + 37], float(i))
    assert len(seen) == 1
    assert seen[0][0].applies("all-v2", ROUTERS)
    assert follower.latest is seen[0][0]


# ------------------------------------------------------------------ the scenario's accounting


def _scenario(tmp_path: Path) -> Scenario:
    layout = load_layout()
    traffic = Traffic({"thrift": 1, "dubbo": 2}, 100.0, 10.0)  # never started
    return Scenario(
        load_phases(layout),
        tmp_path,
        ROUTERS,
        traffic,
        seconds=9.0,
        out=io.StringIO(),
    )


def test_answers_are_counted_per_phase_and_change_and_summarised(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    tally = scenario.traffic.tally
    tally.start = time.monotonic() - 100.0  # answers are stamped ~100 s in
    for kind in ("thrift", "dubbo"):
        for _ in range(50):
            tally.ok(kind, "v1")
    first, second = scenario.changes
    first.written, first.acked = 99.0, 101.0
    tally.set_bucket(first.bucket)
    tally.ok("thrift", "v1")
    tally.ok("thrift", "v2")  # shifted ~1 s after the write
    tally.set_bucket("2")
    for kind in ("thrift", "dubbo"):
        for i in range(100):
            tally.ok(kind, "v1" if i < 20 else "v2")
    second.written, second.acked = 99.5, 103.0
    tally.set_bucket(second.bucket)
    tally.ok("dubbo", "v1")
    tally.set_bucket("3")
    tally.ok("thrift", "v2")
    tally.ok("dubbo", "v2")
    text = "\n".join(scenario.summary(104.0))
    phases = PHASE_LINE.findall(text)
    assert [p[:2] for p in phases] == [("1", "all-v1"), ("2", "split-20-80"), ("3", "all-v2")]
    assert phases[0][2:] == ("100.0", "0.0", "50", "100.0", "0.0", "50")
    assert phases[1][2:] == ("20.0", "80.0", "100", "20.0", "80.0", "100")
    assert "Phase 3 all-v2 (configured v2 100 %): thrift v1 0.0 % v2 100.0 % of 1 calls" in text
    assert "Change to phase 2: routes written at 99.0 s; traffic shifted after 1.00 s" in text
    assert "proxy ACK seen after 2.00 s; 2 calls answered meanwhile" in text
    snap = tally.snapshot()
    assert second.shift(snap, "thrift") == 0.0  # no v1 after the write: shifted at once
    assert second.shift(snap, "dubbo") == pytest.approx(0.5, abs=0.1)  # the last v1 answer


def test_status_acks_a_pending_change_and_moves_the_bucket(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    scenario.traffic.tally.start = time.monotonic()
    (tmp_path / ROUTES_FILE).write_text("old")
    scenario._write_due(scenario.changes[0].due)
    assert (tmp_path / ROUTES_FILE).read_text() == PHASE_FILES[1].read_text()
    assert scenario.current_bucket() == "1>2"
    scenario._write_due(10.0)  # the next change waits for this one's ACK
    assert scenario.changes[1].written is None
    old = parse_block(_status_lines(tmp_path / "a", PHASE_FILES[0], in_sync=True))
    scenario.on_status(old, time.monotonic())
    assert scenario.changes[0].acked is None
    new = parse_block(_status_lines(tmp_path / "b", PHASE_FILES[1], in_sync=True))
    scenario.on_status(new, time.monotonic())
    assert scenario.changes[0].acked is not None
    assert scenario.current_bucket() == "2"
    assert any("NACKed RouteConfiguration cc33: bad route" in e for e in scenario.events)


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


# ------------------------------------------------------------------ processes


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
    assert pids, "no pids printed"
    for name, pid in pids.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone
        # the PID exists: only a failure if it is still our process (not a reused PID)
        assert not any(c in cmdline for c in DEMO_COMMANDS), f"{name} (pid {pid}) still runs"


@pytest.mark.integration
def test_demo_shifts_traffic_through_three_phases_with_no_failed_call() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
        env=_demo_env("9"),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    pids = _printed_pids(out)
    assert set(pids) == {"thrift-v1", "thrift-v2", "dubbo-v1", "dubbo-v2", "aeraki-run"}, out
    # the changes happen in order, each picked up before the next is written
    marks = [
        "wrote phase 2 routes",
        "proxy picked up phase 2",
        "wrote phase 3 routes",
        "proxy picked up phase 3",
    ]
    positions = [out.find(m) for m in marks]
    assert -1 not in positions, out
    assert positions == sorted(positions), out
    phases = {int(p[0]): p for p in PHASE_LINE.findall(out)}
    assert sorted(phases) == [1, 2, 3], out
    for number, p in phases.items():
        v1 = (float(p[2]), float(p[5]))
        v2 = (float(p[3]), float(p[6]))
        assert min(int(p[4]), int(p[7])) >= 40, out  # each phase saw real traffic
        if number == 1:
            assert min(v1) >= 98.0, out
        elif number == 2:  # ~200 calls each at 20/80: one standard deviation is ~3 points
            assert all(3.0 <= x <= 40.0 for x in v1), out
        else:
            assert min(v2) >= 98.0, out
    assert re.search(r"calls on 2 connections \(thrift 1, dubbo 1\), 0 failed", out), out
    assert "Zero failed calls:" in out
    assert "cx_total=1" in out  # the proxy saw one connection per listener
    assert out.rstrip().endswith("Demo finished.")
    _assert_gone(pids)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sig", "code", "message"),
    [
        (signal.SIGINT, 0, "Stopped early by Ctrl-C."),
        (signal.SIGTERM, 143, "Stopped early by SIGTERM."),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_signal_mid_run_stops_everything(
    tmp_path: Path, sig: signal.Signals, code: int, message: str
) -> None:
    log = tmp_path / "demo.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.demo"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=_demo_env("12"),
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        text = ""
        for _ in range(1200):  # bounded poll until the routes changed once
            text = log.read_text()
            if "proxy picked up phase 2" in text or proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "proxy picked up phase 2" in text, text
        proc.send_signal(sig)  # SIGINT is what Ctrl-C delivers to the launcher
        assert proc.wait(timeout=60) == code, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = log.read_text()
    assert message in out, out
    assert "Stopped 5 processes" in out
    _assert_gone(_printed_pids(out))
