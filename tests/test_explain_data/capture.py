"""Record the request frames ``tests/test_explain.py`` explains, from real clients.

``.venv/bin/python -m tests.test_explain_data.capture`` starts a socket that records what a
client sends and answers nothing, points the Node Dubbo consumer (dubbo-js, hessian.js) and a
thriftpy2 client at it, and writes the bytes each sent (the clients then time out, which is
expected). Needs the peers of ``make setup`` (Node modules, thriftpy2).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.integration.peers.dubbo import DubboCall, dubbo_calls
from tests.integration.peers.thrift_client import make_thrift_client

HERE = Path(__file__).resolve().parent
#: Seconds of silence after which the recorder considers the request complete.
QUIET = 1.5


class Recorder:
    """One connection's bytes, on 127.0.0.1, until the client goes quiet or closes."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.data = b""
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.server.accept()
        conn.settimeout(QUIET)
        try:
            while chunk := conn.recv(65536):
                self.data += chunk
        except TimeoutError:
            pass
        conn.close()
        self.server.close()

    def result(self) -> bytes:
        self.thread.join()
        return self.data


def capture_dubbo() -> bytes:
    recorder = Recorder()
    call = DubboCall("sayHello", ["world"], {"user": "alice"})
    results = dubbo_calls("node", "127.0.0.1", recorder.port, [call], timeout=2)
    assert not results[0].ok  # nobody answered: the consumer timed out, as expected
    return recorder.result()


def capture_thrift() -> bytes:
    recorder = Recorder()
    try:
        with make_thrift_client("thriftpy2", "framed", "binary", "127.0.0.1", recorder.port) as c:
            c.whoami()
    except Exception:  # noqa: BLE001  (no answer: the client raises its transport error)
        pass
    return recorder.result()


def main() -> None:
    (HERE / "dubbo-sayhello.bin").write_bytes(capture_dubbo())
    (HERE / "thrift-whoami.bin").write_bytes(capture_thrift())


if __name__ == "__main__":
    main()
