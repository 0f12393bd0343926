"""Follow ``aeraki run``'s status view in its log: which routes are in force, and whether the proxy
ACKed them.

Off a terminal, ``aeraki run`` prints its whole status view (``aeraki.control.status.render``)
each time it changes, ending with a blank line. :func:`parse_block` reads one such block;
:class:`RunLogFollower` tails the log file from a thread and hands each parsed block, with the
moment it was read, to a callback. The demo uses it to tell when the proxy picked up a route
change: the Routes section shows the new MetaRouter route and every proxy is "in sync" (it
ACKed the snapshot built from that config).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ProxyState", "RunLogFollower", "RunStatus", "parse_block"]

#: ``  <host> (<ns>/<name>) [<route name>] <match> -> <destinations>``
_ROUTE = re.compile(r"^  (\S+) \((\S+?)/(\S+?)\) \[([^\]]*)\] (.*?) -> (.*)$")
#: ``  <node id> (<sotw|delta>, <in sync|updating>)``
_PROXY = re.compile(r"^  (\S+) \((\w+), (in sync|updating)\)$")
#: ``    <Type>: ACKed <version>[, NACKed <version>: <reason>]``
_TYPE = re.compile(r"^    (\w+): ACKed (\S+)(?:, NACKed (\S+): (.*))?$")
#: Log lines (``2026-01-01 12:00:00,000 INFO …``) that may land between status lines.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_SECTION = re.compile(r"^(Services|Routes|Clusters|Proxies|Problems) \(\d+\):$")
#: Seconds between reads of the log (the status view itself changes at most once a second).
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class ProxyState:
    node_id: str
    stream: str
    in_sync: bool
    #: short type name -> ACKed version
    acked: dict[str, str] = field(default_factory=dict)
    #: short type name -> "version: reason" of the last NACK
    nacked: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStatus:
    """One status view of ``aeraki run``."""

    #: MetaRouter ``namespace/name`` -> route names, in order
    route_names: dict[str, tuple[str, ...]]
    #: MetaRouter ``namespace/name`` -> its routes as shown (``[name] match -> dests``)
    routes: dict[str, tuple[str, ...]]
    proxies: tuple[ProxyState, ...]
    problems: tuple[str, ...]

    def all_in_sync(self) -> bool:
        return bool(self.proxies) and all(p.in_sync for p in self.proxies)

    def applies(self, route_name: str, routers: Sequence[str]) -> bool:
        """Every MetaRouter in ``routers`` has the one route ``route_name``, and every proxy
        ACKed the snapshot of this config."""
        return self.all_in_sync() and all(self.route_names.get(r) == (route_name,) for r in routers)

    def route_version(self) -> str:
        """The RouteConfiguration version the (first) proxy ACKed, or ``-``."""
        for p in self.proxies:
            return p.acked.get("RouteConfiguration", "-")
        return "-"

    def summary(self) -> str:
        """One line: each MetaRouter's routes, the proxies, the problems."""
        routes = " | ".join(
            f"{key.split('/', 1)[-1]} {'; '.join(lines)}" for key, lines in self.routes.items()
        )
        proxies = ", ".join(
            f"{p.node_id} {p.stream} {'in sync' if p.in_sync else 'updating'}"
            + (f" (NACK {', '.join(p.nacked.values())})" if p.nacked else "")
            for p in self.proxies
        )
        problems = f"{len(self.problems)} problem(s): {self.problems[0]}" if self.problems else ""
        parts = [routes or "default routes", f"proxy {proxies or 'none connected'}"]
        return " | ".join(p for p in (*parts, problems) if p)


def parse_block(lines: Sequence[str]) -> RunStatus:
    """Parse one status view (its lines, title first; log lines are skipped)."""
    section = ""
    names: dict[str, list[str]] = {}
    routes: dict[str, list[str]] = {}
    proxies: list[tuple[str, str, bool, dict[str, str], dict[str, str]]] = []
    problems: list[str] = []
    for line in lines:
        if _LOG_LINE.match(line):
            continue
        if m := _SECTION.match(line):
            section = m.group(1)
            continue
        if section == "Routes" and (m := _ROUTE.match(line)):
            key = f"{m.group(2)}/{m.group(3)}"
            names.setdefault(key, []).append(m.group(4))
            routes.setdefault(key, []).append(f"[{m.group(4)}] {m.group(5)} -> {m.group(6)}")
        elif section == "Proxies" and (m := _PROXY.match(line)):
            proxies.append((m.group(1), m.group(2), m.group(3) == "in sync", {}, {}))
        elif section == "Proxies" and proxies and (m := _TYPE.match(line)):
            proxies[-1][3][m.group(1)] = m.group(2)
            if m.group(3):
                proxies[-1][4][m.group(1)] = f"{m.group(3)}: {m.group(4)}"
        elif section == "Problems" and line.startswith("  ") and line.strip() != "none":
            problems.append(line.strip())
    return RunStatus(
        route_names={k: tuple(v) for k, v in names.items()},
        routes={k: tuple(v) for k, v in routes.items()},
        proxies=tuple(ProxyState(n, s, i, a, k) for n, s, i, a, k in proxies),
        problems=tuple(problems),
    )


class RunLogFollower:
    """Tails ``aeraki run``'s log in a thread; ``on_status(status, monotonic_time)`` per view."""

    def __init__(
        self,
        path: Path,
        on_status: Callable[[RunStatus, float], None],
        *,
        max_seconds: float = 7200.0,
    ) -> None:
        self.path = path
        self.on_status = on_status
        self.latest: RunStatus | None = None
        self.views = 0
        self._max_polls = int(max_seconds / POLL_INTERVAL) + 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-run-log", daemon=True)
        self._pending = b""
        self._block: list[str] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def feed(self, data: bytes, now: float) -> None:
        """Consume more of the log (complete lines only; the rest waits for the next read)."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line.startswith("aeraki run ("):
                self._block = [line]
            elif self._block is None:
                continue
            elif line.strip():
                self._block.append(line)
            elif any(ln.startswith("Problems (") for ln in self._block):
                status = parse_block(self._block)
                self._block = None
                self.latest = status
                self.views += 1
                self.on_status(status, now)

    def _run(self) -> None:
        offset = 0
        for _ in range(self._max_polls):  # bounded; normally ended by stop()
            try:
                with self.path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                data = b""
            if data:
                offset += len(data)
                self.feed(data, time.monotonic())
            if self._stop.wait(POLL_INTERVAL):
                return
