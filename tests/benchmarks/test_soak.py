"""``make soak`` in miniature, so the harness cannot rot: 8 s of mixed Thrift + Dubbo load
through ``aeraki control`` + ``aeraki proxy`` with routes changing every second, the Thrift v1
host killed at 3 s and the Dubbo v1 host at 6 s, each restarted 2 s later — judged by the
soak's own checks; once with the proxy as one process, once as two workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import soak
from benchmarks.results_section import write_section
from benchmarks.soak_clients import ClientTally

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workers", [1, 2])
def test_a_short_soak_passes_every_check(tmp_path: Path, workers: int) -> None:
    settings = soak.Settings(
        seconds=8, warmup=2, clients=4, rate=1000, kill_every=3, down_seconds=2, workers=workers
    )
    result = soak.run(settings, tmp_path, log=lambda line: None)
    assert result.problems == []
    assert [(k.protocol, k.label) for k in result.kills] == [("thrift", "v1"), ("dubbo", "v1")]
    assert all(k.ready_at is not None for k in result.kills)
    # Calls the router sent to a dead host got error replies (no retries are configured),
    # all of them while that protocol's host was down (checked by the judge, problems == []).
    for protocol in ("thrift", "dubbo"):
        errors = sum(len(t.errors) for t in result.tallies if t.protocol == protocol)
        assert errors > 0, protocol
    assert all(not t.failures and not t.hangs for t in result.tallies)
    assert result.route_writes >= 5
    assert result.rss_warm > 0
    assert result.rss_end > 0
    assert result.proxy_stats  # the proxy's admin answered at the end
    text = soak.report(result)
    assert "**PASS**" in text
    assert ("2 workers + supervisor" in text) == (workers == 2)
    results = tmp_path / "RESULTS.md"
    write_section(results, "soak", soak.METHOD, text)
    assert "## Soak" in results.read_text()


def test_the_verdict_names_each_broken_rule() -> None:
    """The judge must fail a run for each kind of problem (fabricated tallies)."""
    settings = soak.Settings(seconds=8, warmup=2)
    result = soak.Result(settings, seconds=8, rss_warm=1000, rss_end=1200)
    thrift = ClientTally("thrift")
    thrift.ok.update({"v1": 5})
    thrift.errors.append(100.0)  # no kill window covers it
    thrift.hangs.append(101.0)
    dubbo = ClientTally("dubbo")
    dubbo.ok.update({"v1": 5, "v2": 5})
    dubbo.failures.append((102.0, "ConnectionResetError"))
    result.tallies = [thrift, dubbo]
    result.kills = [soak.Kill("dubbo", "v1", killed_at=50.0, ready_at=None)]
    soak._judge(result)
    text = "\n".join(result.problems)
    for expected in (
        "thrift: 1 calls hung",
        "thrift: 1 error replies while no thrift host was down",
        "thrift: answers only from ['v1']",
        "dubbo: 1 calls got no answer",
        "dubbo v1 did not come back",
        "proxy RSS grew 20.0%",
    ):
        assert expected in text, text
