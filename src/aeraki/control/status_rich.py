"""``aeraki run``'s status as rich tables, for a terminal.

:func:`render_rich` is a pure function of a :class:`~aeraki.control.status.Status` snapshot, so
tests render it to a recording ``Console`` and assert on the text; :class:`RichStatus` owns the
``rich.live.Live`` that redraws it in place. Off a terminal ``aeraki run`` keeps the plain text
of :func:`aeraki.control.status.render` (logs, pipes and ``make demo`` stay greppable).
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aeraki.control.status import PushRecord, Status

__all__ = ["RichStatus", "render_rich"]


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False, show_edge=True)
    for name in columns:
        table.add_column(name, no_wrap=True)
    return table


def _lines_table(title: str, rows: tuple[str, ...], empty: str) -> Table:
    table = _table(f"{title} ({len(rows)})", title)
    for row in rows or (empty,):
        table.add_row(row)
    return table


def _clusters(status: Status) -> Table:
    table = _table(f"Clusters ({len(status.clusters)})", "Cluster", "Endpoints")
    for name in ("rq", "active", "failed"):
        table.add_column(name, justify="right")
    for cluster in status.clusters:
        traffic = status.traffic.get(cluster.name)
        counters = (
            ("-", "-", "-")
            if traffic is None
            else (str(traffic.requests), str(traffic.active), str(traffic.failures))
        )
        failed = Text(counters[2], style="red" if traffic and traffic.failures else "")
        table.add_row(
            cluster.name, ", ".join(cluster.endpoints) or "no endpoints", *counters[:2], failed
        )
    if not status.clusters:
        table.add_row("none", "", "", "", "")
    return table


def _proxies(status: Status) -> Table:
    table = _table(f"Proxies ({len(status.proxies)})", "Node", "Stream", "Sync", "Types")
    for proxy in status.proxies:
        types = []
        for name, acked, nack_version, reason in proxy.types:
            text = f"{name}: ACKed {acked or '-'}"
            if nack_version:
                text += f", NACKed {nack_version}: {reason}"
            types.append(text)
        sync = Text("in sync", "green") if proxy.in_sync else Text("updating", "yellow")
        table.add_row(proxy.node_id, proxy.stream, sync, "\n".join(types))
    if not status.proxies:
        table.add_row("none connected", "", "", "")
    return table


def _push(push: PushRecord | None, now: float) -> Text:
    if push is None:
        return Text("Last push: none yet")
    ago = max(0.0, now - push.at)
    stamp = time.strftime("%H:%M:%S", time.localtime(push.at))
    return Text(
        f"Last push: {stamp} ({ago:.0f}s ago), {push.duration * 1000:.1f} ms, "
        f"{push.nodes} node snapshot(s) changed"
    )


def _problems(problems: tuple[str, ...]) -> Table:
    table = _lines_table("Problems", problems, "none")
    if problems:
        table.title_style = "bold red"
    return table


def render_rich(status: Status, *, now: float | None = None, title: str = "aeraki") -> Group:
    """The status as rich renderables (same content as :func:`~aeraki.control.status.render`)."""
    now = time.time() if now is None else now
    parts: list[RenderableType] = [
        Text(title, style="bold"),
        _lines_table("Services", status.services, "none"),
        _lines_table("Routes", status.routes, "none (default routes)"),
        _clusters(status),
        _proxies(status),
        _push(status.last_push, now),
        _problems(status.problems),
    ]
    return Group(*parts)


class RichStatus:
    """A ``Live`` display on ``out`` redrawn by :meth:`update` only (no refresh thread: the
    caller's status loop paces it, so a redraw never races the event loop)."""

    def __init__(self, out: TextIO, *, console: Console | None = None) -> None:
        self.console = console or Console(file=out)
        self.live = Live(
            console=self.console, auto_refresh=False, screen=False, vertical_overflow="visible"
        )
        self._started = False

    def update(self, status: Status, *, title: str) -> None:
        if not self._started:
            self.live.start()
            self._started = True
        self.live.update(render_rich(status, title=title), refresh=True)

    def close(self) -> None:
        if self._started:
            self.live.stop()
            self._started = False
