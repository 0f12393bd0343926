"""The demo traffic: one Thrift and one Dubbo connection through the proxy, held open throughout.

Two worker threads, each paced at ``rate`` calls per second on ONE connection that stays open
across every route change (the point of the demo: the proxy applies a change to the next
request on connections already open, and no call fails):

* Thrift (thriftpy2, framed/binary) calls ``whoami()``; the answer is the server's version;
* Dubbo (our :class:`~examples.demo.dubbo_client.DubboClient`) calls ``sayHello("demo")``; the
  version is the last word of ``Hello demo, response from v1``.

Every answer is counted in the :class:`Tally` under the *bucket* in force when it arrived
(``"1"``, ``"1>2"``, ``"2"``…: a phase, or a change between two phases), with the time of the
first and last answer per version, so the display can show shares per phase and when the
traffic shifted. A failed call is counted and shown; the worker then reconnects. Every loop is
bounded in time and count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from examples.demo.dubbo_client import DubboClient
from tests.integration.peers.thrift_client import make_thrift_client

__all__ = ["KINDS", "Tally", "TallySnapshot", "Traffic"]

LOOPBACK = "127.0.0.1"
KINDS = ("thrift", "dubbo")
#: Per-call socket timeout (connect and each call), seconds.
CALL_TIMEOUT = 2.0
#: Pause before reconnecting after a failed call, seconds.
RETRY_PAUSE = 0.2
#: How long a stopping worker may take to notice, seconds (one call timeout plus slack).
JOIN_TIMEOUT = CALL_TIMEOUT + 1.0

#: (bucket, kind, version)
Key = tuple[str, str, str]


@dataclass(frozen=True)
class TallySnapshot:
    counts: dict[Key, int]
    #: (bucket, kind, version) -> (first, last) answer time, seconds since the start
    times: dict[Key, tuple[float, float]]
    errors: dict[str, int]
    connections: dict[str, int]
    last_error: str

    def total(self, kind: str | None = None, bucket: str | None = None) -> int:
        return sum(
            n for (b, k, _), n in self.counts.items() if kind in (None, k) and bucket in (None, b)
        )

    def versions(self, bucket: str, kind: str) -> dict[str, int]:
        return {v: n for (b, k, v), n in sorted(self.counts.items()) if (b, k) == (bucket, kind)}

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


class Tally:
    """Thread-safe counters: answers per (bucket, kind, version); errors, connections per kind."""

    def __init__(self, start: float) -> None:
        self.start = start
        self._lock = threading.Lock()
        self._bucket = "1"
        self._counts: dict[Key, int] = {}
        self._times: dict[Key, tuple[float, float]] = {}
        self._errors: dict[str, int] = {}
        self._connections: dict[str, int] = {}
        self._last_error = ""

    def set_bucket(self, bucket: str) -> None:
        with self._lock:
            self._bucket = bucket

    def ok(self, kind: str, version: str) -> None:
        t = time.monotonic() - self.start
        with self._lock:
            key = (self._bucket, kind, version)
            self._counts[key] = self._counts.get(key, 0) + 1
            first, _ = self._times.get(key, (t, t))
            self._times[key] = (first, t)

    def error(self, kind: str, message: str) -> None:
        t = time.monotonic() - self.start
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1
            self._last_error = f"{kind} at {t:.1f} s: {message}"

    def connected(self, kind: str) -> None:
        with self._lock:
            self._connections[kind] = self._connections.get(kind, 0) + 1

    def snapshot(self) -> TallySnapshot:
        with self._lock:
            return TallySnapshot(
                dict(self._counts),
                dict(self._times),
                dict(self._errors),
                dict(self._connections),
                self._last_error,
            )


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


def _thrift_worker(port: int, tally: Tally, stop: threading.Event, rate: float, limit: int) -> None:
    pacer = Pacer(rate, stop)
    calls = 0
    while calls < limit and not stop.is_set():  # bounded by limit
        try:
            with make_thrift_client(
                "thriftpy2", "framed", "binary", LOOPBACK, port, timeout=CALL_TIMEOUT
            ) as echo:
                tally.connected("thrift")
                while calls < limit and pacer.wait():
                    calls += 1
                    tally.ok("thrift", echo.whoami())
        except Exception as exc:  # noqa: BLE001 - any failure is shown and counted, then retried
            calls += 1
            tally.error("thrift", f"{type(exc).__name__}: {exc}")
            stop.wait(RETRY_PAUSE)


def _dubbo_worker(port: int, tally: Tally, stop: threading.Event, rate: float, limit: int) -> None:
    pacer = Pacer(rate, stop)
    calls = 0
    while calls < limit and not stop.is_set():  # bounded by limit
        try:
            with DubboClient(LOOPBACK, port, timeout=CALL_TIMEOUT) as dubbo:
                tally.connected("dubbo")
                while calls < limit and pacer.wait():
                    calls += 1
                    # "Hello demo, response from v1"
                    tally.ok("dubbo", dubbo.call("sayHello", "demo").rsplit(" ", 1)[-1])
        except Exception as exc:  # noqa: BLE001 - any failure is shown and counted, then retried
            calls += 1
            tally.error("dubbo", f"{type(exc).__name__}: {exc}")
            stop.wait(RETRY_PAUSE)


Worker = Callable[[int, Tally, threading.Event, float, int], None]
WORKERS: dict[str, Worker] = {"thrift": _thrift_worker, "dubbo": _dubbo_worker}


class Traffic:
    """The two workers; :meth:`stop` ends them (each within :data:`JOIN_TIMEOUT`)."""

    def __init__(self, ports: dict[str, int], rate: float, max_seconds: float) -> None:
        self.tally = Tally(time.monotonic())
        self._stop = threading.Event()
        limit = int(rate * max_seconds) + 10
        self._threads = [
            threading.Thread(
                target=WORKERS[kind],
                args=(ports[kind], self.tally, self._stop, rate, limit),
                name=f"demo-{kind}",
                daemon=True,
            )
            for kind in KINDS
        ]

    def start(self) -> None:
        self.tally.start = time.monotonic()
        for t in self._threads:
            t.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.tally.start

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(JOIN_TIMEOUT)
