"""The soak's load: blocking Thrift and Dubbo clients, each in its own thread, each call bounded.

Every call ends in exactly one outcome, counted per client:

* **ok** — a normal answer, counted by the version label the backend put in it (``v1``/``v2``);
* **error reply** — an answer that is an error (Thrift ``TApplicationException``, a Dubbo
  response with a non-OK status): what the proxy sends when the chosen host is gone; kept
  with its time, so the soak can check it fell while a host was down;
* **failure** — no answer: the connection was refused, reset or closed, the reply was garbage
  or answered another request, or an echo came back altered; the client reconnects;
* **hang** — no answer within the per-call bound (the socket timeout); also a failure.

Clients are the same real ones the integration tests use: thriftpy2 (framed binary) and raw
Dubbo frames (``tests/integration/peers``), built independently of ``src/``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from tests.integration.peers.dubbo import read_frame, request_frame
from tests.integration.peers.procs import LOOPBACK
from tests.integration.peers.thrift_client import make_thrift_client
from tests.integration.peers.thrift_idl import application_exception_class

__all__ = ["ClientTally", "Pacer", "dubbo_client", "thrift_client"]

_LABEL = re.compile(r"(v\d+)$")
#: The Thrift echo payload: big enough to span reads, checked byte for byte on the way back.
_ECHO = "soak-" + "é中" * 80


@dataclass
class ClientTally:
    """Outcomes of one client thread (merged by the soak at the end; no locks needed)."""

    protocol: str
    ok: Counter[str] = field(default_factory=Counter)
    #: monotonic time of each error reply
    errors: list[float] = field(default_factory=list)
    error_text: Counter[str] = field(default_factory=Counter)
    #: (monotonic time, what happened) for each failure and hang
    failures: list[tuple[float, str]] = field(default_factory=list)
    hangs: list[float] = field(default_factory=list)
    connects: int = 0
    #: seconds per answered call (ok and error replies)
    latency: array[float] = field(default_factory=lambda: array("d"))

    @property
    def calls(self) -> int:
        return sum(self.ok.values()) + len(self.errors) + len(self.failures) + len(self.hangs)

    def answered(self, started: float) -> None:
        self.latency.append(time.monotonic() - started)

    def error(self, started: float, text: str) -> None:
        self.answered(started)
        self.errors.append(started)
        self.error_text[_shorten(text)] += 1

    def fail(self, started: float, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self.hangs.append(started)
        else:
            self.failures.append((started, f"{type(exc).__name__}: {exc}"[:200]))


class Pacer:
    """Spaces one client's calls ``1 / rate`` seconds apart (rate 0: back to back), so the
    soak applies a steady, moderate load instead of saturating a shared machine.

    A client that falls behind (a slow answer) does not burst to catch up by more than one
    second's worth of calls.
    """

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.stop = stop
        self.next_at = time.monotonic()

    def ready(self) -> bool:
        """Wait for the next call's slot; False once the soak is stopping."""
        if self.interval:
            now = time.monotonic()
            self.next_at = max(self.next_at + self.interval, now - 1.0)
            if self.next_at > now:
                return not self.stop.wait(self.next_at - now)
        return not self.stop.is_set()


def _shorten(text: str) -> str:
    return re.sub(r"\d+", "N", text)[:120]


def thrift_client(
    port: int, pacer: Pacer, tally: ClientTally, *, timeout: float, max_calls: int
) -> None:
    """Call ``whoami`` and ``echo`` through the proxy until ``stop`` (or ``max_calls``)."""
    app_error = application_exception_class("thriftpy2")
    while not pacer.stop.is_set() and tally.calls < max_calls:
        started = time.monotonic()
        try:
            with make_thrift_client(
                "thriftpy2", "framed", "binary", LOOPBACK, port, timeout=timeout
            ) as client:
                tally.connects += 1
                while tally.calls < max_calls and pacer.ready():
                    started = time.monotonic()
                    try:
                        if tally.calls % 4 == 3:
                            if client.echo(_ECHO) != _ECHO:
                                raise ValueError("echo came back altered")
                            tally.ok["echo"] += 1
                        else:
                            label = client.whoami()
                            tally.ok[label] += 1
                        tally.answered(started)
                    except app_error as exc:
                        tally.error(started, str(exc))
        except Exception as exc:  # noqa: BLE001 - no answer: counted, then reconnect
            tally.fail(started, exc)


def dubbo_client(
    port: int, pacer: Pacer, tally: ClientTally, *, timeout: float, max_calls: int
) -> None:
    """Send ``whoami`` and ``sayHello`` frames through the proxy until ``stop``."""
    request_id = 0
    while not pacer.stop.is_set() and tally.calls < max_calls:
        started = time.monotonic()
        try:
            with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
                tally.connects += 1
                while tally.calls < max_calls and pacer.ready():
                    request_id += 1
                    started = time.monotonic()
                    _dubbo_call(sock, request_id, tally, started)
        except Exception as exc:  # noqa: BLE001 - no answer: counted, then reconnect
            tally.fail(started, exc)


def _dubbo_call(sock: socket.socket, request_id: int, tally: ClientTally, started: float) -> None:
    hello = request_id % 2 == 0
    frame = request_frame(request_id, "sayHello" if hello else "whoami", ["soak"] if hello else [])
    sock.sendall(frame)
    reply = read_frame(sock)
    if reply.request_id != request_id or reply.is_event:
        raise ValueError(f"answer to {request_id} has id {reply.request_id}")
    if reply.status != 20:
        tally.error(started, f"status {reply.status}: {_hessian_text(reply.body)}")
        return
    if reply.body[:1] != b"\x91":  # RESPONSE_VALUE
        tally.error(started, f"result type {reply.body[:1].hex()}")
        return
    label = _LABEL.search(_hessian_text(reply.body[1:]))
    if label is None:
        raise ValueError(f"unexpected value {reply.body[:80]!r}")
    tally.ok[label.group(1)] += 1
    tally.answered(started)


def _hessian_text(body: bytes) -> str:
    """A short Hessian2 string at the start of ``body`` (what the peers and proxy send)."""
    if body and body[0] < 0x20:
        return body[1 : 1 + body[0]].decode("utf-8", "replace")
    if len(body) > 1 and 0x30 <= body[0] <= 0x33:
        return body[2 : 2 + ((body[0] - 0x30) << 8 | body[1])].decode("utf-8", "replace")
    return body[:80].decode("utf-8", "replace")
