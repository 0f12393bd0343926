"""The demo client: calls through the proxy and shows, live, which version answers.

Two worker threads, each paced at ``rate`` calls per second on one connection:

* Thrift (thriftpy2, framed/binary) calls ``whoami()`` on the weighted listener; the answer is
  the server's version label;
* Dubbo (our :class:`~examples.demo.dubbo_client.DubboClient`) alternates ``sayHello("demo")``
  and ``whoami()`` on the method-routed listener; the version is the last word of the answer.

The main thread redraws a table once a second (in place on a terminal, one line per second
otherwise) and prints a summary at the end. Every loop is bounded in time and count.

    python -m examples.demo.client --thrift-port 19090 --dubbo-port 19880 --seconds 20
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from examples.demo.dubbo_client import DubboClient
from tests.integration.peers.thrift_client import make_thrift_client

__all__ = ["ClientReport", "DemoTargets", "Route", "Tally", "run_client"]

LOOPBACK = "127.0.0.1"
#: Per-call socket timeout (connect and each call), seconds.
CALL_TIMEOUT = 2.0
#: Pause before reconnecting after a failed call, seconds.
RETRY_PAUSE = 0.2
#: How long a stopping worker may take to notice, seconds (one call timeout plus slack).
JOIN_TIMEOUT = CALL_TIMEOUT + 1.0

THRIFT_WEIGHTED = "thrift-weighted"
DUBBO_SAYHELLO = "dubbo-sayHello"
DUBBO_WHOAMI = "dubbo-whoami"


@dataclass(frozen=True)
class Route:
    """One row group of the table: a route and the versions it is expected to reach."""

    key: str
    title: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class DemoTargets:
    """Where to call, and what the bootstrap says should happen."""

    thrift_port: int
    dubbo_port: int
    #: configured weights of the Thrift route, version -> percent (for the summary line)
    thrift_weights: dict[str, int] = field(default_factory=lambda: {"v1": 80, "v2": 20})
    #: configured method routes of the Dubbo listener, method -> version
    dubbo_methods: dict[str, str] = field(
        default_factory=lambda: {"sayHello": "v1", "whoami": "v2"}
    )

    def routes(self) -> list[Route]:
        weights = " / ".join(f"{v} {w} %" for v, w in self.thrift_weights.items())
        return [
            Route(
                THRIFT_WEIGHTED,
                f"thrift :{self.thrift_port} weighted ({weights})",
                tuple(self.thrift_weights),
            ),
            Route(
                DUBBO_SAYHELLO,
                f"dubbo  :{self.dubbo_port} method sayHello",
                (self.dubbo_methods["sayHello"],),
            ),
            Route(
                DUBBO_WHOAMI,
                f"dubbo  :{self.dubbo_port} method whoami",
                (self.dubbo_methods["whoami"],),
            ),
        ]


class Tally:
    """Thread-safe counters: answers per (route, version) and errors per route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._errors: dict[str, int] = {}
        self.last_error = ""

    def ok(self, route: str, version: str) -> None:
        with self._lock:
            key = (route, version)
            self._counts[key] = self._counts.get(key, 0) + 1

    def error(self, route: str, message: str) -> None:
        with self._lock:
            self._errors[route] = self._errors.get(route, 0) + 1
            self.last_error = f"{route}: {message}"

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        with self._lock:
            return dict(self._counts), dict(self._errors)


class Pacer:
    """Spaces calls ``1/rate`` seconds apart; never bursts to catch up after a stall."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.interval = 1.0 / rate
        self.stop = stop
        self.next = time.monotonic()

    def wait(self) -> bool:
        """Sleep until the next slot; False when asked to stop."""
        now = time.monotonic()
        self.next = max(self.next + self.interval, now - self.interval)
        delay = self.next - now
        if delay > 0:
            return not self.stop.wait(delay)
        return not self.stop.is_set()


def _thrift_worker(
    port: int, tally: Tally, stop: threading.Event, rate: float, max_calls: int
) -> None:
    pacer = Pacer(rate, stop)
    calls = 0
    while calls < max_calls and not stop.is_set():  # bounded by max_calls
        try:
            with make_thrift_client(
                "thriftpy2", "framed", "binary", LOOPBACK, port, timeout=CALL_TIMEOUT
            ) as echo:
                while calls < max_calls and pacer.wait():
                    calls += 1
                    tally.ok(THRIFT_WEIGHTED, echo.whoami())
        except Exception as exc:  # noqa: BLE001 - any failure is shown and counted, then retried
            calls += 1
            tally.error(THRIFT_WEIGHTED, f"{type(exc).__name__}: {exc}")
            stop.wait(RETRY_PAUSE)


def _dubbo_worker(
    port: int, tally: Tally, stop: threading.Event, rate: float, max_calls: int
) -> None:
    pacer = Pacer(rate, stop)
    calls = 0
    while calls < max_calls and not stop.is_set():  # bounded by max_calls
        route = DUBBO_SAYHELLO
        try:
            with DubboClient(LOOPBACK, port, timeout=CALL_TIMEOUT) as dubbo:
                while calls < max_calls and pacer.wait():
                    calls += 1
                    if calls % 2:
                        route = DUBBO_SAYHELLO
                        # "Hello demo, response from v1"
                        version = dubbo.call("sayHello", "demo").rsplit(" ", 1)[-1]
                    else:
                        route = DUBBO_WHOAMI
                        version = dubbo.call("whoami")
                    tally.ok(route, version)
        except Exception as exc:  # noqa: BLE001 - any failure is shown and counted, then retried
            calls += 1
            tally.error(route, f"{type(exc).__name__}: {exc}")
            stop.wait(RETRY_PAUSE)


@dataclass
class ClientReport:
    """What the client saw."""

    elapsed: float
    counts: dict[tuple[str, str], int]
    errors: dict[str, int]
    last_error: str
    #: "time" (ran its course), "interrupt" (Ctrl-C / SIGTERM) or "failure: <why>"
    ended_by: str
    #: the KeyboardInterrupt (or subclass) that ended the run, if one did
    interrupt: BaseException | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def answers(self, route: str) -> dict[str, int]:
        return {v: n for (r, v), n in sorted(self.counts.items()) if r == route}


def _rows(
    routes: Sequence[Route],
    counts: dict[tuple[str, str], int],
    rates: dict[tuple[str, str], float],
    errors: dict[str, int],
    rate_header: str,
) -> list[str]:
    lines = [f"  {'route':<42} {'version':<8} {'count':>7} {'share':>8} {rate_header:>10}"]
    for route in routes:
        seen = {v for (r, v) in counts if r == route.key}
        versions = list(route.expected) + sorted(seen - set(route.expected))
        total = sum(counts.get((route.key, v), 0) for v in versions)
        for i, version in enumerate(versions):
            n = counts.get((route.key, version), 0)
            share = 100.0 * n / total if total else 0.0
            title = route.title if i == 0 else ""
            mark = "" if version in route.expected else "  <- unexpected"
            lines.append(
                f"  {title:<42} {version:<8} {n:>7} {share:>6.1f} % "
                f"{rates.get((route.key, version), 0.0):>10.1f}{mark}"
            )
        if errors.get(route.key):
            lines.append(f"  {'':<42} {'errors':<8} {errors[route.key]:>7}")
    return lines


class Display:
    """Redraws the table in place on a TTY; prints one line per tick otherwise."""

    def __init__(self, out: TextIO, routes: Sequence[Route], seconds: float) -> None:
        self.out = out
        self.routes = routes
        self.seconds = seconds
        self.tty = out.isatty()
        self._drawn = 0

    def tick(
        self,
        elapsed: float,
        counts: dict[tuple[str, str], int],
        rates: dict[tuple[str, str], float],
        errors: dict[str, int],
        last_error: str,
    ) -> None:
        n_err = sum(errors.values())
        if not self.tty:
            parts = []
            for route in self.routes:
                seen = sorted({v for (r, v) in counts if r == route.key} | set(route.expected))
                body = ", ".join(
                    f"{v} {counts.get((route.key, v), 0)} ({rates.get((route.key, v), 0.0):.0f}/s)"
                    for v in seen
                )
                parts.append(f"{route.key}: {body}")
            self.out.write(f"[{elapsed:5.1f}s] " + " | ".join(parts) + f" | errors {n_err}\n")
            self.out.flush()
            return
        lines = [
            f"live: {elapsed:5.1f} s of {self.seconds:.0f} s, {sum(counts.values())} answers, "
            f"{n_err} errors   (Ctrl-C to stop)",
            *_rows(self.routes, counts, rates, errors, "req/s now"),
            f"  last error: {last_error}" if last_error else "",
        ]
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the first line of the last draw
        self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)


def summary_lines(targets: DemoTargets, report: ClientReport) -> list[str]:
    """The final table plus one line per routing behaviour (what the tests read)."""
    routes = targets.routes()
    avg = {k: n / report.elapsed for k, n in report.counts.items()} if report.elapsed else {}
    n_err = sum(report.errors.values())
    lines = [
        f"Summary after {report.elapsed:.1f} s: {report.total} answers, {n_err} errors",
        *_rows(routes, report.counts, avg, report.errors, "avg req/s"),
    ]
    weighted = report.answers(THRIFT_WEIGHTED)
    total = sum(weighted.values()) or 1
    configured = " / ".join(f"{v} {w} %" for v, w in targets.thrift_weights.items())
    observed = " / ".join(f"{v} {100.0 * n / total:.1f} %" for v, n in weighted.items())
    lines.append(f"Weighted route (thrift): {observed or 'no answers'} (configured {configured})")
    mapping = []
    for method, route in (("sayHello", DUBBO_SAYHELLO), ("whoami", DUBBO_WHOAMI)):
        seen = report.answers(route)
        mapping.append(f"{method} -> {', '.join(seen) if seen else 'no answers'}")
    lines.append(f"Method routes (dubbo): {'; '.join(mapping)}")
    if report.last_error:
        lines.append(f"Last error: {report.last_error}")
    return lines


def run_client(
    targets: DemoTargets,
    *,
    seconds: float,
    rate: float,
    out: TextIO,
    watchdog: Callable[[], str | None] = lambda: None,
) -> ClientReport:
    """Drive both listeners for ``seconds`` (or until Ctrl-C / a watchdog failure).

    ``watchdog`` is called once a second; a non-None return (why) stops the run as a failure.
    KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the launcher) ends it early.
    """
    tally = Tally()
    stop = threading.Event()
    max_calls = int(rate * seconds) + 10
    workers = [
        threading.Thread(
            target=fn,
            args=(port, tally, stop, rate, max_calls),
            name=f"demo-{fn.__name__}",
            daemon=True,
        )
        for fn, port in ((_thrift_worker, targets.thrift_port), (_dubbo_worker, targets.dubbo_port))
    ]
    display = Display(out, targets.routes(), seconds)
    start = time.monotonic()
    ended_by = "time"
    interrupt: BaseException | None = None
    prev_counts: dict[tuple[str, str], int] = {}
    prev_t = start
    for w in workers:
        w.start()
    try:
        for tick in range(1, int(seconds) + 2):  # bounded: one tick per second
            stop.wait(max(0.0, min(start + tick, start + seconds) - time.monotonic()))
            now = time.monotonic()
            counts, errors = tally.snapshot()
            dt = max(now - prev_t, 1e-6)
            rates = {k: (n - prev_counts.get(k, 0)) / dt for k, n in counts.items()}
            display.tick(now - start, counts, rates, errors, tally.last_error)
            prev_counts, prev_t = counts, now
            why = watchdog()
            if why is not None:
                ended_by = f"failure: {why}"
                break
            if now - start >= seconds:
                break
    except KeyboardInterrupt as exc:
        ended_by, interrupt = "interrupt", exc
    finally:
        stop.set()
        for w in workers:
            w.join(JOIN_TIMEOUT)
    counts, errors = tally.snapshot()
    elapsed = time.monotonic() - start
    return ClientReport(elapsed, counts, errors, tally.last_error, ended_by, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thrift-port", type=int, default=19090)
    parser.add_argument("--dubbo-port", type=int, default=19880)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=100.0, help="calls/s per listener")
    args = parser.parse_args(argv)
    targets = DemoTargets(args.thrift_port, args.dubbo_port)
    report = run_client(targets, seconds=args.seconds, rate=args.rate, out=sys.stdout)
    print("\n".join(summary_lines(targets, report)))
    return 0 if report.total else 1


if __name__ == "__main__":
    sys.exit(main())
