"""Where our proxy spends its CPU under the Thrift benchmark load: py-spy samples, summarised.

Starts the Thrift echo server (load core), ``aeraki proxy`` with ``configs/aeraki-thrift.yaml``
(proxy core) and the closed-loop generator, attaches ``py-spy record`` (non-blocking, so the
proxy is not paused while sampled) for the measured window, and writes the hottest functions by
self time and by inclusive time to ``benchmarks/PROFILE.md`` (and stdout). The lead engineer
uses it to pick hot-path optimisations, and re-runs it to check them.

    python -m benchmarks.profile        # BENCH_PROFILE_SECONDS (15), BENCH_CONNECTIONS (50)

Needs ``py-spy`` in the venv (``pip install py-spy``) and ptrace permission (root or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import collections
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from benchmarks.procs import stop
from benchmarks.run import (
    HERE,
    TARGETS,
    Settings,
    _brief,
    run_loadgen,
    start_echo,
    start_target,
)

TOP = 25


def summarise(collapsed: Path) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, top functions by self samples and by inclusive samples."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    return total, self_counts.most_common(TOP), incl_counts.most_common(TOP)


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py:12)``."""
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            path = tail.split(marker, 1)[-1]
            return f"{head}({path}"
    return frame


def main() -> int:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        print("profile: py-spy not installed (.venv/bin/pip install py-spy)", file=sys.stderr)
        return 1
    seconds = float(os.environ.get("BENCH_PROFILE_SECONDS", 15))
    s = Settings(seconds=seconds, warmup=3.0)
    target = next(t for t in TARGETS if t.kind == "thrift" and t.proxy == "aeraki")
    with tempfile.TemporaryDirectory(prefix="aeraki-profile-") as tmp:
        work = Path(tmp)
        echo, upstream = start_echo("thrift", s.load_cpu, work)
        try:
            running = start_target(target, upstream, work, s.proxy_cpu)
            assert running.proc is not None
            out = work / "collapsed.txt"
            result: dict[str, object] = {}

            def load() -> None:
                result.update(
                    run_loadgen(s, "thrift", running.port, {"proxy": running.proc.pid}, s.load_cpu)  # type: ignore[union-attr]
                )

            loader = threading.Thread(target=load)
            try:
                loader.start()
                subprocess.run(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(running.proc.pid),
                        "--duration",
                        str(int(s.warmup + seconds - 1)),
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--function",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    capture_output=True,
                    timeout=s.warmup + seconds + 60,
                    check=True,
                )
                loader.join(s.warmup + seconds + 90)
            finally:
                stop(running.proc)
            total, by_self, by_incl = summarise(out)
        finally:
            stop(echo)
    lines = [
        "# Profile: Aeraki in Python under the Thrift echo load",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}; "
        "`python -m benchmarks.profile`: "
        f"py-spy record --nonblocking --function, 200 Hz, {total} samples of the proxy process "
        f"while the closed-loop generator ran {s.connections} connections "
        f"(proxy on cpu{s.proxy_cpu}, load on cpu{s.load_cpu}). Load during sampling: "
        f"{_brief(result)}.",
        "",
        "## Top functions by self time (where the CPU actually is)",
        "",
        "| % samples | function |",
        "|---|---|",
        *[f"| {n * 100 / total:.1f} | `{_short(f)}` |" for f, n in by_self],
        "",
        "## Top functions by inclusive time (what the self time is spent under)",
        "",
        "| % samples | function |",
        "|---|---|",
        *[f"| {n * 100 / total:.1f} | `{_short(f)}` |" for f, n in by_incl],
        "",
    ]
    text = "\n".join(lines)
    (HERE / "PROFILE.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
