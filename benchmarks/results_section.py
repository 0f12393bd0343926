"""One named section of ``benchmarks/RESULTS.md``, rewritten in place by its own runner.

``make bench`` (``benchmarks/run.py``) keeps everything after its "## Runs" marker, so sections
appended after it survive a data-plane run; each section sits between HTML comment markers,
so runners never touch each other's text. A section is its method, then its runs newest first
(at most ``keep``).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["machine_line", "write_section"]

_RUNS = "#### Runs (newest first)"
_RUN_HEAD = "##### "


def write_section(path: Path, name: str, method: str, run: str, *, keep: int = 4) -> None:
    """Replace section ``name`` of ``path`` with ``method`` + ``run`` + the newest older runs.

    ``run`` must start with a ``##### `` heading (one per run, used to split older runs).
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.is_file() else ""
    older: list[str] = []
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        section, after = rest.split(end, 1)
        if _RUNS in section:
            body = section.split(_RUNS, 1)[1]
            older = [_RUN_HEAD + r.strip("\n") for r in body.split(_RUN_HEAD)[1:]]
    else:
        before, after = text.rstrip("\n") + ("\n\n" if text else ""), "\n"
    runs = [run.strip("\n"), *older[: keep - 1]]
    body = method.strip("\n") + "\n\n" + _RUNS + "\n\n" + "\n\n".join(runs) + "\n"
    path.write_text(before + begin + "\n" + body + end + after)


def machine_line(root: Path) -> str:
    """Date, commit (marked when src/ has uncommitted changes), CPUs, Python, load average."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return "n/a"
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "n/a"
    if git("status", "--porcelain", "--", "src"):
        commit += " (+ uncommitted changes in src/)"
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = Path("/proc/loadavg").read_text().split(" ")[0]
    return (
        f"{date} — commit {commit}; {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, 1-min loadavg at start {load}"
    )
