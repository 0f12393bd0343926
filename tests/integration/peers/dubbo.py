"""Dubbo2 peers: the Java provider (Caucho Hessian), Node and dubbo-ssl-python consumers, and a
tiny raw-frame client for heartbeats and oneway requests.

The provider is compiled from ``java/DubboProvider.java`` into ``.tools/java/<source-hash>/``
(by ``make setup`` or on first use). Consumers run as subprocesses and report each call as a
:class:`DubboResult`; :func:`dubbo_invoke` raises :class:`DubboCallError` for a failed call, so a
proxy's local error reply surfaces as a client error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.peers.procs import LOOPBACK, REPO_ROOT, TOOLS_DIR, PeerProcess, ProcessGroup

PEERS_DIR = Path(__file__).resolve().parent
JAVA_SOURCE = PEERS_DIR / "java" / "DubboProvider.java"
HESSIAN_JAR = Path("/usr/share/java/hessian.jar")
NODE_SCRIPT = PEERS_DIR / "node" / "dubbo_call.js"
NODE_MODULES = TOOLS_DIR / "node" / "node_modules"
JAVA_OPTS = (
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-Xmx256m",
)
DEFAULT_INTERFACE = "org.apache.dubbo.samples.basic.api.DemoService"
CONSUMERS = ("node", "python")

MAGIC = 0xDABB
FLAG_REQUEST = 0x80
FLAG_TWO_WAY = 0x40
FLAG_EVENT = 0x20
HESSIAN2 = 2
STATUS_OK = 20
HEADER = struct.Struct(">HBBqI")


# ------------------------------------------------------------------------ Java provider


def java_classes_dir() -> Path:
    """Compiled provider classes (compiled now if the source or jar changed)."""
    digest = hashlib.sha256(JAVA_SOURCE.read_bytes())
    if HESSIAN_JAR.exists():
        digest.update(str(HESSIAN_JAR.stat().st_size).encode())
    target = TOOLS_DIR / "java" / digest.hexdigest()[:16]
    if (target / "DubboProvider.class").is_file():
        return target
    javac = shutil.which("javac")
    if javac is None or not HESSIAN_JAR.exists():
        raise RuntimeError("javac or /usr/share/java/hessian.jar missing; run `make setup`")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        subprocess.run(
            [javac, "-nowarn", "-d", str(tmp), "-cp", str(HESSIAN_JAR), str(JAVA_SOURCE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "DubboProvider.class").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class DubboProvider:
    """A running Java provider (any interface; see DubboProvider.java for the methods)."""

    label: str
    host: str
    port: int
    process: PeerProcess

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def start_dubbo_provider(
    group: ProcessGroup, *, label: str = "v1", ready_timeout: float = 60.0
) -> DubboProvider:
    """Start ``java ... DubboProvider <port> <label>`` on a free port; ready when it accepts."""
    classes = java_classes_dir()
    cp = f"{classes}{os.pathsep}{HESSIAN_JAR}"

    def argv(port: int) -> list[str]:
        return ["java", *JAVA_OPTS, "-cp", cp, "DubboProvider", str(port), label]

    proc = group.spawn_listening(f"dubbo-java-{label}", argv, ready_timeout=ready_timeout)
    return DubboProvider(label, LOOPBACK, proc.port, proc)


# ------------------------------------------------------------------------ consumers


@dataclass(frozen=True)
class DubboCall:
    """One invocation. ``args`` are plain JSON values (str -> String, int -> int, ...) or, for
    the Node consumer, typed hessian.js values ``{"$class": "...", "$": ...}``."""

    method: str
    args: Sequence[Any] = ()
    attachments: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "args": list(self.args),
            "attachments": dict(self.attachments),
        }


@dataclass(frozen=True)
class DubboResult:
    ok: bool
    value: Any = None
    error: str = ""
    name: str = ""
    #: Attachments of the response (Node consumer only; dubbo-ssl-python cannot read them).
    attachments: Mapping[str, Any] = field(default_factory=dict)


class DubboCallError(Exception):
    """A Dubbo call failed as seen by the consumer (exception response, bad status, timeout)."""

    def __init__(self, consumer: str, result: DubboResult) -> None:
        super().__init__(f"{consumer}: {result.name}: {result.error}")
        self.consumer = consumer
        self.result = result


class DubboConsumerError(RuntimeError):
    """The consumer process itself failed (bad spec, deadline, crash): not a call result."""


def _consumer_argv(consumer: str, spec_json: str) -> list[str]:
    if consumer == "node":
        return ["node", str(NODE_SCRIPT), spec_json]
    if consumer == "python":
        return [sys.executable, "-m", "tests.integration.peers.dubbo_ssl_call", spec_json]
    raise ValueError(f"unknown dubbo consumer {consumer!r}")


def dubbo_calls(
    consumer: str,
    host: str,
    port: int,
    calls: Sequence[DubboCall],
    *,
    interface: str = DEFAULT_INTERFACE,
    version: str = "1.0.0",
    group: str | None = None,
    timeout: float = 5.0,
    concurrent: bool = False,
) -> list[DubboResult]:
    """Run ``calls`` on one connection with ``consumer`` ("node" | "python"); one result each.

    ``concurrent`` (Node only) sends them all at once, pipelined on the connection.
    """
    spec = {
        "host": host,
        "port": port,
        "interface": interface,
        "version": version,
        "group": group,
        "timeout": timeout,
        "concurrent": concurrent,
        "calls": [c.to_json() for c in calls],
    }
    env = dict(os.environ)
    env["DUBBO_JS_NODE_MODULES"] = str(NODE_MODULES)
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        _consumer_argv(consumer, json.dumps(spec)),
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise DubboConsumerError(
            f"{consumer} consumer exited {proc.returncode} without output: {proc.stderr[-2000:]}"
        )
    out = json.loads(lines[-1])
    if "fatal" in out:
        raise DubboConsumerError(f"{consumer} consumer: {out['fatal']} {proc.stderr[-2000:]}")
    return [
        DubboResult(
            ok=bool(r["ok"]),
            value=r.get("value"),
            error=str(r.get("error", "")),
            name=str(r.get("name", "")),
            attachments=r.get("attachments") or {},
        )
        for r in out["results"]
    ]


def dubbo_invoke(
    consumer: str,
    host: str,
    port: int,
    method: str,
    args: Sequence[Any] = (),
    attachments: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """One call; returns the value or raises :class:`DubboCallError`."""
    (result,) = dubbo_calls(
        consumer, host, port, [DubboCall(method, args, attachments or {})], **kwargs
    )
    if not result.ok:
        raise DubboCallError(consumer, result)
    return result.value


# ------------------------------------------------------------------------ raw frames


def _h2_string(s: str) -> bytes:
    """Hessian2 string (one chunk; length counts UTF-16 code units, all BMP here)."""
    data = s.encode("utf-8")
    n = len(s)
    if n < 32:
        return bytes([n]) + data
    if n < 1024:
        return bytes([0x30 + (n >> 8), n & 0xFF]) + data
    return b"S" + struct.pack(">H", n) + data


def hessian2_encode(value: Any) -> bytes:
    """Minimal Hessian2 encoder for test frames: None, bool, int (32-bit), str, dict[str, str]."""
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        return b"I" + struct.pack(">i", value)
    if isinstance(value, str):
        return _h2_string(value)
    if isinstance(value, dict):
        return (
            b"H"
            + b"".join(hessian2_encode(k) + hessian2_encode(v) for k, v in value.items())
            + b"Z"
        )
    raise TypeError(f"hessian2_encode: unsupported {type(value).__name__}")


_DESCRIPTORS = {bool: "Z", int: "I", str: "Ljava/lang/String;"}


def request_frame(
    request_id: int,
    method: str,
    args: Sequence[Any] = (),
    *,
    interface: str = DEFAULT_INTERFACE,
    version: str = "1.0.0",
    attachments: Mapping[str, str] | None = None,
    two_way: bool = True,
) -> bytes:
    """A complete Dubbo2 request frame (header + Hessian2 body) built independently of src/."""
    desc = "".join(_DESCRIPTORS[type(a)] for a in args)
    att = {"path": interface, "interface": interface, "version": version, **(attachments or {})}
    body = b"".join(
        [hessian2_encode(x) for x in ("2.0.2", interface, version, method, desc)]
        + [hessian2_encode(a) for a in args]
        + [hessian2_encode(att)]
    )
    flag = FLAG_REQUEST | HESSIAN2 | (FLAG_TWO_WAY if two_way else 0)
    return HEADER.pack(MAGIC, flag, 0, request_id, len(body)) + body


def heartbeat_frame(request_id: int) -> bytes:
    """A heartbeat request (event bit set, body Hessian2 null)."""
    flag = FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2
    return HEADER.pack(MAGIC, flag, 0, request_id, 1) + b"N"


@dataclass(frozen=True)
class DubboFrame:
    flag: int
    status: int
    request_id: int
    body: bytes

    @property
    def is_request(self) -> bool:
        return bool(self.flag & FLAG_REQUEST)

    @property
    def is_event(self) -> bool:
        return bool(self.flag & FLAG_EVENT)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:  # bounded: each recv blocks at most the socket timeout
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(buf)}/{n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> DubboFrame:
    magic, flag, status, rid, length = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic:#x}")
    return DubboFrame(flag, status, rid, _recv_exact(sock, length))


def raw_exchange(
    host: str, port: int, frames: Sequence[bytes], *, replies: int, timeout: float = 5.0
) -> list[DubboFrame]:
    """Send ``frames`` on one new connection, then read ``replies`` frames back."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(frames))
        return [read_frame(sock) for _ in range(replies)]


def dubbo_heartbeat(
    host: str, port: int, *, request_id: int = 7, timeout: float = 5.0
) -> DubboFrame:
    """Send a heartbeat and return the answer frame."""
    (frame,) = raw_exchange(host, port, [heartbeat_frame(request_id)], replies=1, timeout=timeout)
    return frame
