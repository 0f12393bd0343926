"""The rich status view: rendered to a recording console (no terminal) it shows the same
services, routes, clusters with counters, proxies, last push and problems as the plain view."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from aeraki.control.status import ClusterTraffic, ClusterView, ProxyView, PushRecord, Status
from aeraki.control.status_rich import RichStatus, render_rich

NOW = 1_800_000_000.0
CLUSTER = "outbound|9090|v1|thrift.example.com"


def status(**changes: object) -> Status:
    base: dict[str, object] = {
        "services": ("thrift.example.com [9090/tcp-metaprotocol-thrift] 2 endpoint(s)",),
        "routes": ("thrift.example.com (default/r) [v1] method exact 'whoami' -> v1",),
        "clusters": (
            ClusterView(CLUSTER, ("127.0.0.1:7001",)),
            ClusterView("outbound|9090|v2|thrift.example.com", ()),
        ),
        "proxies": (
            ProxyView("run~local", "run~local", "sotw", True, (("Cluster", "3", "", ""),)),
            ProxyView("edge", "edge", "delta", False, (("Listener", "2", "4", "bad filter"),)),
        ),
        "last_push": PushRecord(NOW - 12, 0.0042, 2, 7),
        "problems": (),
        "metrics": {},
        "traffic": {CLUSTER: ClusterTraffic(5, 1, 2)},
    }
    base.update(changes)
    return Status(**base)  # type: ignore[arg-type]


def text_of(value: Status, width: int = 160) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(render_rich(value, now=NOW, title="aeraki run (mesh)"))
    return console.export_text()


def row(text: str, *cells: str) -> bool:
    """Whether one table row holds ``cells`` in order, separated by cell borders."""
    pattern = r"\s*│\s*".join(re.escape(c) for c in cells)
    return any(re.search(pattern, line) for line in text.splitlines())


def test_title_services_and_routes() -> None:
    text = text_of(status())
    assert text.splitlines()[0] == "aeraki run (mesh)"
    assert "Services (1)" in text
    assert "thrift.example.com [9090/tcp-metaprotocol-thrift] 2 endpoint(s)" in text
    assert "Routes (1)" in text
    assert "method exact 'whoami' -> v1" in text


def test_clusters_with_counters_and_without_traffic() -> None:
    text = text_of(status())
    assert "Clusters (2)" in text
    assert row(text, CLUSTER, "127.0.0.1:7001", "5", "1", "2")
    assert row(text, "outbound|9090|v2|thrift.example.com", "no endpoints", "-", "-", "-")


def test_proxies_sync_and_nack() -> None:
    text = text_of(status())
    assert "Proxies (2)" in text
    assert row(text, "run~local", "sotw", "in sync", "Cluster: ACKed 3")
    assert row(text, "edge", "delta", "updating", "Listener: ACKed 2, NACKed 4: bad filter")


def test_last_push_and_problems() -> None:
    text = text_of(status(problems=("route.yaml: unknown subset v9",)))
    stamp = time.strftime("%H:%M:%S", time.localtime(NOW - 12))
    assert f"Last push: {stamp} (12s ago), 4.2 ms, 2 node snapshot(s) changed" in text
    assert "Problems (1)" in text
    assert "route.yaml: unknown subset v9" in text


def test_empty_status() -> None:
    empty = status(
        services=(), routes=(), clusters=(), proxies=(), last_push=None, traffic={}, problems=()
    )
    text = text_of(empty)
    for line in (
        "Services (0)",
        "Routes (0)",
        "none (default routes)",
        "Clusters (0)",
        "Proxies (0)",
        "none connected",
        "Last push: none yet",
        "Problems (0)",
    ):
        assert line in text


def test_live_view_redraws_on_update() -> None:
    """``RichStatus`` writes each update to its stream (forced terminal: redrawn in place)."""
    out = io.StringIO()
    view = RichStatus(out, console=Console(file=out, force_terminal=True, width=160))
    view.update(status(), title="first")
    view.update(status(traffic={CLUSTER: ClusterTraffic(9, 0, 0)}), title="second")
    view.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "first" in plain
    assert "second" in plain
    assert row(plain, CLUSTER, "127.0.0.1:7001", "9", "0", "0")
