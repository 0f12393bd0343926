"""The demo scenario: all to v1 → 20/80 → all to v2, by rewriting a MetaRouter file mid-run.

:class:`Scenario` drives the :class:`~examples.demo.client.Traffic` for ``seconds``; at 1/3 and
2/3 it writes the next phase's MetaRouters over ``routes.yaml`` in the manifest directory that
``aeraki run`` watches (a temp file, then a rename: the control plane never reads half a
file). Answers are counted per phase and, separately, per *change* — from the write until the
control plane's status view shows the proxy ACKed the new routes — so each phase's shares are
those of its routes alone. For each change the view shows when the traffic shifted (the first
answer only the new routes allow, or the last one only the old routes allowed) and when the ACK
was seen. Every loop is bounded.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from examples.demo.client import KINDS, TallySnapshot, Traffic
from examples.demo.layout import ROUTES_FILE, Phase
from examples.demo.runstatus import RunStatus

__all__ = ["ACK_TIMEOUT", "Change", "Scenario", "atomic_write"]

#: Seconds a written change may take to be ACKed before the demo fails.
ACK_TIMEOUT = 15.0
#: Main loop step, seconds (writes happen within one step of their time).
STEP = 0.05
#: Event lines kept on the terminal view.
EVENTS_SHOWN = 6
#: Failed calls reported as events (the rest are only counted).
ERRORS_REPORTED = 5


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a hidden temp file and a rename (readers see either
    the old or the new file, never part of one; the file source skips ``.*`` names)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


@dataclass
class Change:
    """Moving from ``before`` to ``after``: due at ``due`` s, then written, then ACKed."""

    before: Phase
    after: Phase
    due: float
    written: float | None = None
    acked: float | None = None
    route_version: str = ""
    reported: bool = False

    @property
    def bucket(self) -> str:
        return f"{self.before.number}>{self.after.number}"

    def shift(self, snap: TallySnapshot, kind: str) -> float | None:
        """Seconds from the write to the traffic shift on ``kind`` (None: not seen yet)."""
        if self.written is None:
            return None
        old, new = self.before.versions(kind), self.after.versions(kind)
        if new - old:  # the first answer only the new routes allow
            for bucket in (self.bucket, str(self.after.number)):
                firsts = [
                    snap.times[(bucket, kind, v)][0]
                    for v in new - old
                    if (bucket, kind, v) in snap.times
                ]
                if firsts:
                    return max(0.0, min(firsts) - self.written)
            return None
        if self.acked is None:
            return None
        lasts = [
            snap.times[(self.bucket, kind, v)][1]
            for v in old - new
            if (self.bucket, kind, v) in snap.times
        ]
        return max(0.0, max(lasts) - self.written) if lasts else 0.0


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:5.1f} %" if total else "    - %"


class Scenario:
    """Runs the phases, shows them live, and summarises them."""

    def __init__(
        self,
        phases: Sequence[Phase],
        manifest_dir: Path,
        routers: Sequence[str],
        traffic: Traffic,
        *,
        seconds: float,
        out: TextIO,
        versions: Sequence[str] = ("v1", "v2"),
    ) -> None:
        self.phases = list(phases)
        self.routes_path = manifest_dir / ROUTES_FILE
        self.routers = list(routers)
        self.traffic = traffic
        self.seconds = seconds
        self.out = out
        self.versions = list(versions)
        self.tty = out.isatty()
        n = len(self.phases)
        self.changes = [
            Change(self.phases[i - 1], self.phases[i], seconds * i / n) for i in range(1, n)
        ]
        self.status: RunStatus | None = None
        self.events: list[str] = []
        self._printed_events = 0
        self._lock = threading.Lock()
        self._pending: Change | None = None
        self._errors_seen = 0
        self._drawn = 0
        self._prev: tuple[float, dict[str, int]] = (0.0, {})

    # --- the control plane's view (called from the log follower's thread) ---------------

    def on_status(self, status: RunStatus, when: float) -> None:
        with self._lock:
            previous, self.status = self.status, status
            change = self._pending
            if change is not None and status.applies(change.after.name, self.routers):
                change.acked = max(when - self.traffic.tally.start, change.written or 0.0)
                change.route_version = status.route_version()
                self.traffic.tally.set_bucket(str(change.after.number))
                self._pending = None
            old = set(previous.problems) if previous else set()
        texts = [f"{p.node_id} NACKed {t} {r}" for p in status.proxies for t, r in p.nacked.items()]
        texts += [f"control plane problem: {p}" for p in status.problems if p not in old]
        for text in texts:
            self._event(text)

    # --- running --------------------------------------------------------------------------

    def _event(self, text: str, at: float | None = None) -> None:
        at = self.traffic.elapsed() if at is None else at
        with self._lock:
            self.events.append(f"[{at:5.1f}s] {text}")

    def _write_due(self, now: float) -> None:
        with self._lock:
            if self._pending is not None:
                return  # the previous change is not ACKed yet: the next one waits
            change = next((c for c in self.changes if c.written is None), None)
            if change is None or now < change.due:
                return
            atomic_write(self.routes_path, change.after.path.read_text())
            change.written = self.traffic.elapsed()
            self.traffic.tally.set_bucket(change.bucket)
            self._pending = change
        self._event(
            f"wrote phase {change.after.number} routes ({change.after.name}: "
            f"{change.after.describe()}) to {self.routes_path}",
            change.written,
        )

    def _report(self, snap: TallySnapshot) -> None:
        for change in self.changes:
            if change.acked is None or change.reported or change.written is None:
                continue
            change.reported = True
            shifts = ", ".join(
                f"{s:.2f} s ({k})" if (s := change.shift(snap, k)) is not None else f"? ({k})"
                for k in KINDS
            )
            self._event(
                f"proxy picked up phase {change.after.number}: traffic shifted after {shifts}; "
                f"ACK seen after {change.acked - change.written:.2f} s (RouteConfiguration "
                f"{change.route_version[:8]}, in sync)",
                change.acked,
            )
        if snap.failed > self._errors_seen:
            if self._errors_seen < ERRORS_REPORTED:
                self._event(f"call FAILED: {snap.last_error}")
            self._errors_seen = snap.failed

    def current_bucket(self) -> str:
        """The bucket answers go to now (as the tally sees it)."""
        for change in reversed(self.changes):
            if change.written is not None:
                return str(change.after.number) if change.acked is not None else change.bucket
        return "1"

    def run(self, watchdog: Callable[[], str | None]) -> str | None:
        """The whole scenario; returns why it failed, or None. Ctrl-C propagates."""
        self.traffic.start()
        next_tick = 1.0
        max_steps = int((self.seconds + ACK_TIMEOUT * (len(self.changes) + 1)) / STEP) + 100
        try:
            for _ in range(max_steps):  # bounded; normally ends when time is up
                now = self.traffic.elapsed()
                self._write_due(now)
                pending = self._pending
                if pending and pending.written is not None and now - pending.written > ACK_TIMEOUT:
                    return self._ack_timeout(pending)
                done = (
                    now >= self.seconds
                    and pending is None
                    and all(c.written is not None for c in self.changes)
                )
                if now >= next_tick or done:
                    self._tick(now)
                    next_tick = max(next_tick + 1.0, now + 0.5)
                    why = watchdog()
                    if why is not None:
                        return why
                if done:
                    return None
                time.sleep(max(0.0, min(STEP, next_tick - now)))
            return "the scenario did not finish in time"
        finally:
            self.traffic.stop()

    def _ack_timeout(self, change: Change) -> str:
        status = self.status.summary() if self.status else "no status view from aeraki run yet"
        return (
            f"the proxy did not pick up the phase {change.after.number} routes "
            f"({change.after.name}) within {ACK_TIMEOUT:.0f} s of the write; the control plane "
            f"shows: {status}"
        )

    # --- the view -------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        snap = self.traffic.tally.snapshot()
        self._report(snap)
        t0, prev = self._prev
        dt = max(now - t0, 1e-6)
        totals = {k: snap.total(k) for k in KINDS}
        rates = {k: (totals[k] - prev.get(k, 0)) / dt for k in KINDS}
        self._prev = (now, totals)
        if self.tty:
            self._draw(now, snap, rates)
            return
        with self._lock:
            new_events = self.events[self._printed_events :]
            self._printed_events = len(self.events)
        bucket = self.current_bucket()
        parts = [f"[{now:5.1f}s] {self._bucket_title(bucket)}"]
        for kind in KINDS:
            counts = snap.versions(bucket, kind)
            body = " ".join(f"{v} {counts.get(v, 0)}" for v in self._columns(snap))
            parts.append(f"{kind} {body} ({rates[kind]:.0f}/s)")
        parts.append(f"failed {snap.failed}")
        self.out.write("".join(f"{e}\n" for e in new_events) + " | ".join(parts) + "\n")
        self.out.flush()

    def _columns(self, snap: TallySnapshot) -> list[str]:
        seen = {v for (_, _, v) in snap.counts}
        return self.versions + sorted(seen - set(self.versions))

    def _bucket_title(self, bucket: str) -> str:
        if ">" in bucket:
            a, b = bucket.split(">")
            return f"change {a}->{b}"
        phase = self.phases[int(bucket) - 1]
        return f"phase {phase.number} {phase.name}"

    def _window(self, bucket: str, now: float, final: bool) -> str:
        """``start-end s`` of a bucket (empty before it began)."""
        start: float | None = 0.0
        end: float | None = None
        for change in self.changes:
            if change.bucket == bucket:
                start, end = change.written, change.acked
            elif str(change.after.number) == bucket:
                start = change.acked
            elif str(change.before.number) == bucket:
                end = change.written
        if start is None:
            return ""
        if end is None:
            return f"{start:.1f}-{now:.1f} s" if final else f"{start:.1f} s-"
        return f"{start:.1f}-{end:.1f} s"

    def buckets(self) -> list[str]:
        out = ["1"]
        for change in self.changes:
            out += [change.bucket, str(change.after.number)]
        return out

    def table(self, snap: TallySnapshot, now: float, rates: dict[str, float] | None) -> list[str]:
        """Rows per phase and change: per service, count and share of each version."""
        columns = self._columns(snap)
        head = "".join(f"{v:>15}" for v in columns)
        rate_head = "  req/s" if rates is not None else ""
        lines = [
            f"  {'phase / change':<22} {'window':<13} {'service':<7}{head} {'calls':>7}{rate_head}"
        ]
        current = self.current_bucket()
        for bucket in self.buckets():
            window = self._window(bucket, now, final=rates is None)
            total = snap.total(bucket=bucket)
            if ">" in bucket and not window:
                continue
            if not window and not total:
                phase = self.phases[int(bucket) - 1]
                change = self.changes[phase.number - 2]
                lines.append(
                    f"  {self._bucket_title(bucket):<22} {'from ' + f'{change.due:.1f} s':<13} "
                    f"({phase.describe()})"
                )
                continue
            for i, kind in enumerate(KINDS):
                counts = snap.versions(bucket, kind)
                n = sum(counts.values())
                cells = "".join(
                    f"{counts.get(v, 0):>7} {_pct(counts.get(v, 0), n)}" for v in columns
                )
                title = self._bucket_title(bucket) if i == 0 else ""
                mark = ""
                if ">" not in bucket:
                    allowed = self.phases[int(bucket) - 1].versions(kind)
                    if any(v not in allowed for v in counts):
                        mark = "  <- unexpected version"
                rate = f"{rates[kind]:>7.0f}" if rates is not None and bucket == current else ""
                where = window if i == 0 else ""
                lines.append(f"  {title:<22} {where:<13} {kind:<7}{cells} {n:>7}{rate}{mark}")
        return lines

    def _draw(self, now: float, snap: TallySnapshot, rates: dict[str, float]) -> None:
        width = max(40, shutil.get_terminal_size((120, 40)).columns - 1)
        bucket = self.current_bucket()
        nxt = next((c for c in self.changes if c.written is None), None)
        when = f", next change at {nxt.due:.0f} s" if nxt else ""
        with self._lock:
            events = self.events[-EVENTS_SHOWN:]
            status = self.status
        conns = ", ".join(f"{k} {snap.connections.get(k, 0)}" for k in KINDS)
        lines = [
            f"live: {now:5.1f} s of {self.seconds:.0f} s, {self._bucket_title(bucket)}{when}; "
            f"{snap.total()} calls, {snap.failed} failed   (Ctrl-C to stop)",
            *self.table(snap, now, rates),
            f"connections held open: {conns}",
            "control plane: " + (status.summary() if status else "(no status view yet)"),
            "events:",
            *(f"  {e}" for e in events),
        ]
        if snap.last_error:
            lines.append(f"last failed call: {snap.last_error}")
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the first line of the last draw
        self.out.write("".join(f"\x1b[2K{line[:width]}\n" for line in lines))
        self.out.write("\x1b[J")  # clear anything below (a shorter redraw)
        self.out.flush()
        self._drawn = len(lines)

    # --- the summary ----------------------------------------------------------------------

    def summary(self, elapsed: float) -> list[str]:
        snap = self.traffic.tally.snapshot()
        self._report(snap)
        conns = ", ".join(f"{k} {snap.connections.get(k, 0)}" for k in KINDS)
        n_conns = sum(snap.connections.values())
        lines = [
            f"Summary after {elapsed:.1f} s: {snap.total()} calls on {n_conns} connections "
            f"({conns}), {snap.failed} failed",
            *self.table(snap, elapsed, None),
        ]
        for phase in self.phases:
            bucket = str(phase.number)
            head = f"Phase {phase.number} {phase.name} (configured {phase.describe()}):"
            if not snap.total(bucket=bucket):
                lines.append(f"{head} not reached")
                continue
            parts = []
            for kind in KINDS:
                counts = snap.versions(bucket, kind)
                n = sum(counts.values())
                shares = " ".join(f"{v} {_pct(counts.get(v, 0), n).strip()}" for v in self.versions)
                parts.append(f"{kind} {shares} of {n} calls")
            lines.append(f"{head} {'; '.join(parts)}")
        for change in self.changes:
            head = f"Change to phase {change.after.number}:"
            if change.written is None:
                lines.append(f"{head} not made")
                continue
            shifts = " / ".join(
                f"{s:.2f} s ({k})" if (s := change.shift(snap, k)) is not None else f"? ({k})"
                for k in KINDS
            )
            ack = (
                f"proxy ACK seen after {change.acked - change.written:.2f} s"
                if change.acked is not None
                else "no ACK seen"
            )
            during = snap.total(bucket=change.bucket)
            lines.append(
                f"{head} routes written at {change.written:.1f} s; traffic shifted after "
                f"{shifts}; {ack}; {during} calls answered meanwhile"
            )
        if snap.last_error:
            lines.append(f"Last failed call: {snap.last_error}")
        return lines

    def snapshot(self) -> TallySnapshot:
        return self.traffic.tally.snapshot()
