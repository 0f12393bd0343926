"""Dubbo through our proxy (a real ``aeraki proxy`` process) with real peers: the Java provider
(Caucho Hessian) as v1 and v2 behind it, and two independent consumers in front of it, Node
apache-dubbo-js and dubbo-ssl-python.

Covered: routing on interface, method, service version, group and attachment (exact, prefix and
regex matchers); request and response attachment mutation; heartbeats answered by the proxy
itself; oneway requests forwarded; local error replies (no route, unreachable cluster, provider
dying mid-request, undecodable / mismatched / truncated answers) surfacing as client errors;
every kind of response (value, null, exception, non-OK status, attachments); multiplexing with
colliding request ids; a weighted split over 2,000 calls; framing edges (64-bit ids, one byte
at a time, half-close, 1 MiB).

What the Java provider never does (heartbeat requests to the proxy, bad answers) comes from a
small in-test provider, :class:`MisbehavingProvider`.

Neither consumer can send a oneway request, so oneways (and heartbeats, whose reply we check
byte by byte) use raw frames built independently of src/ (tests/integration/peers/dubbo.py).
Consumer limits found here: only Node reads response attachments; dubbo-ssl-python cannot
send map arguments, fails on any *_WITH_ATTACHMENTS response (types 3/4/5: "can only
concatenate str (not "int") to str") and corrupts strings longer than 32,767 chars (chunked
Hessian2), even without a proxy; neither consumer can send a oneway request.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import pytest

from tests.integration.aeraki_proxy import (
    AerakiProxy,
    bootstrap,
    header_matcher,
    meta_listener,
    meta_route,
    new_port,
    start_aeraki_proxy,
    static_cluster,
)
from tests.integration.peers.dubbo import (
    CONSUMERS,
    DEFAULT_INTERFACE,
    FLAG_EVENT,
    FLAG_REQUEST,
    FLAG_TWO_WAY,
    HEADER,
    HESSIAN2,
    MAGIC,
    STATUS_OK,
    DubboCall,
    DubboCallError,
    DubboFrame,
    DubboProvider,
    DubboResult,
    dubbo_calls,
    dubbo_invoke,
    heartbeat_frame,
    hessian2_encode,
    raw_exchange,
    read_frame,
    request_frame,
    start_dubbo_provider,
)
from tests.integration.peers.procs import LOOPBACK, ProcessGroup, free_port, poll_until

T = TypeVar("T")

PROTOCOL = "dubbo"
IFACE_A = DEFAULT_INTERFACE
IFACE_B = "org.apache.dubbo.samples.basic.api.GreetingService"
IFACE_UNKNOWN = "org.apache.dubbo.samples.basic.api.NobodyService"
STATUS_SERVICE_NOT_FOUND = 60


# ---------------------------------------------------------------------------- helpers


def _parallel(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run consumer subprocess jobs side by side (process startup is the slow part)."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result(timeout=60) for f in futures]


def _calls(
    proxy: AerakiProxy, listener: str, consumer: str, calls: Sequence[DubboCall], **kw: Any
) -> list[DubboResult]:
    return dubbo_calls(consumer, LOOPBACK, proxy.ports[listener], calls, **kw)


def _ok(result: DubboResult) -> Any:
    """The value of a call that must have succeeded."""
    assert result.ok, result
    return result.value


def _err(result: DubboResult) -> str:
    """The error text of a call that must have failed."""
    assert not result.ok, result
    return result.error


def _values(results: Sequence[DubboResult]) -> list[Any]:
    for r in results:
        assert r.ok, r
    return [r.value for r in results]


def _string_value(frame: DubboFrame) -> str:
    """The value of an OK RESPONSE_VALUE frame carrying a short Hessian2 string."""
    assert frame.status == STATUS_OK, frame
    body = frame.body
    assert body[0] == 0x91, frame  # compact int 1: RESPONSE_VALUE
    assert body[1] < 32, frame  # a short string
    assert len(body) == 2 + body[1], frame  # and nothing after it
    return body[2:].decode()


def _pipelined(
    port: int, frames: Sequence[bytes], *, window: int, timeout: float = 10.0
) -> list[DubboFrame]:
    """Send ``frames`` on one connection, ``window`` at a time, reading every answer."""
    out: list[DubboFrame] = []
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        for start in range(0, len(frames), window):
            batch = frames[start : start + window]
            sock.sendall(b"".join(batch))
            out.extend(read_frame(sock) for _ in batch)
    return out


def _raw_count_oneway(port: int) -> int:
    (reply,) = raw_exchange(LOOPBACK, port, [request_frame(1, "countOneway")], replies=1)
    assert reply.status == STATUS_OK, reply
    assert reply.body[0] == 0x91, reply
    body = reply.body[1:]
    if 0x80 <= body[0] <= 0xBF:  # compact int
        return body[0] - 0x90
    if 0xC0 <= body[0] <= 0xCF:
        return ((body[0] - 0xC8) << 8) + body[1]
    assert body[0] == ord("I"), reply
    return int(struct.unpack(">i", body[1:5])[0])


class MisbehavingProvider:
    """An in-test Dubbo "provider" on 127.0.0.1 for what the Java one never does:

    ``whoami`` -> a heartbeat *request* to the proxy, then the answer "chatty", in one write;
    ``wrongId`` -> an answer with another request id; ``garbage`` -> 16 bytes of bad magic;
    ``truncated`` -> a header announcing 100 body bytes, 10 of them, then close.
    Every socket has a timeout and the threads check a stop flag, so everything is bounded.
    """

    def __init__(self) -> None:
        self.server = socket.create_server((LOOPBACK, 0))
        self.server.settimeout(0.2)
        self.port: int = self.server.getsockname()[1]
        self.stopping = threading.Event()
        self.frames_from_proxy: list[DubboFrame] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def close(self) -> None:
        self.stopping.set()
        for t in list(self.threads):
            t.join(timeout=5)
        self.server.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)  # a frame, once it starts arriving, is read whole
        with conn:
            while not self.stopping.is_set():
                readable, _, _ = select.select([conn], [], [], 0.2)
                if not readable:
                    continue
                try:
                    frame = read_frame(conn)
                except OSError:  # closed by the proxy (ConnectionError) or stalled
                    return
                self.frames_from_proxy.append(frame)
                if frame.is_request and not frame.is_event and not self._answer(conn, frame):
                    return

    def _answer(self, conn: socket.socket, frame: DubboFrame) -> bool:
        method = _request_method(frame.body)
        rid = frame.request_id
        if method == "whoami":
            conn.sendall(heartbeat_frame(-42) + _value_frame(rid, "chatty"))
        elif method == "wrongId":
            conn.sendall(_value_frame(rid + 1000, "wrong"))
        elif method == "garbage":
            conn.sendall(b"\x00" * 16)
        elif method == "truncated":
            conn.sendall(struct.pack(">HBBqI", MAGIC, HESSIAN2, STATUS_OK, rid, 100) + b"\x91" * 10)
            return False
        else:
            conn.sendall(struct.pack(">HBBqI", MAGIC, HESSIAN2, 70, rid, 1) + b"\x00")
        return True


def _request_method(body: bytes) -> str:
    """The 4th string of a request body (all short strings in our tests)."""
    pos, strings = 0, []
    for _ in range(4):
        tag = body[pos]
        if tag < 0x20:
            n, pos = tag, pos + 1
        else:
            assert 0x30 <= tag <= 0x33, hex(tag)
            n, pos = ((tag - 0x30) << 8) + body[pos + 1], pos + 2
        strings.append(body[pos : pos + n].decode())
        pos += n
    return strings[3]


def _value_frame(request_id: int, value: str) -> bytes:
    body = b"\x91" + hessian2_encode(value)
    return struct.pack(">HBBqI", MAGIC, HESSIAN2, STATUS_OK, request_id, len(body)) + body


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[MisbehavingProvider]:
    provider = MisbehavingProvider()
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def provider_v2(session_peers: ProcessGroup) -> Iterator[DubboProvider]:
    provider = start_dubbo_provider(session_peers, label="v2")
    yield provider
    session_peers.stop(provider.process)


@pytest.fixture(scope="module")
def provider_doomed(session_peers: ProcessGroup) -> Iterator[DubboProvider]:
    """A provider that one test stops while requests are in flight."""
    provider = start_dubbo_provider(session_peers, label="doomed")
    yield provider
    session_peers.stop(provider.process)


@pytest.fixture(scope="module")
def proxy(
    dubbo_provider: DubboProvider,
    provider_v2: DubboProvider,
    provider_doomed: DubboProvider,
    misbehaving: MisbehavingProvider,
    session_peers: ProcessGroup,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AerakiProxy]:
    """One proxy, one listener per scenario, in front of providers v1 and v2."""
    listeners = [
        meta_listener(
            "by-interface",
            new_port(),
            PROTOCOL,
            [
                meta_route("v1", match={"interface": IFACE_A}),
                meta_route(
                    "v2",
                    matchers=[header_matcher("interface", regex=r"^org\.apache\..*\.Greeting.*$")],
                ),
            ],
        ),
        meta_listener(
            "by-method",
            new_port(),
            PROTOCOL,
            [
                meta_route("v2", match={"method": "whoami"}),
                meta_route("v1", matchers=[header_matcher("method", prefix="say")]),
            ],
        ),
        meta_listener(
            "by-attachment",
            new_port(),
            PROTOCOL,
            [
                meta_route("v2", name="foo-bar", match={"foo": "bar"}),
                meta_route("v2", name="version-2", match={"version": "2.0.0"}),
                meta_route("v2", name="group-canary", match={"group": "canary"}),
                meta_route("v1", name="default"),
            ],
        ),
        meta_listener(
            "mutation",
            new_port(),
            PROTOCOL,
            [
                meta_route(
                    "v1",
                    request_mutation={"foo": "bar", "foo1": "bar1"},
                    response_mutation={"x-proxy": "aeraki"},
                )
            ],
        ),
        meta_listener("pass", new_port(), PROTOCOL, [meta_route("v1-pass")]),
        meta_listener("dead", new_port(), PROTOCOL, [meta_route("dead")]),
        meta_listener("mux", new_port(), PROTOCOL, [meta_route("v1-mux")], multiplexing=True),
        meta_listener(
            "mux-routed",
            new_port(),
            PROTOCOL,
            [
                meta_route(
                    "v2",
                    name="foo-bar",
                    match={"foo": "bar"},
                    request_mutation={"foo1": "bar1"},
                    response_mutation={"x-proxy": "mux"},
                ),
                meta_route("dead", name="slow-to-dead", match={"method": "slow"}),
                meta_route("v1", name="iface-a", match={"interface": IFACE_A}),
            ],
            multiplexing=True,
        ),
        meta_listener(
            "weighted", new_port(), PROTOCOL, [meta_route(weighted=[("v1", 70), ("v2", 30)])]
        ),
        meta_listener(
            "mux-weighted",
            new_port(),
            PROTOCOL,
            [meta_route(weighted=[("v1", 70), ("v2", 30)])],
            multiplexing=True,
        ),
        meta_listener("doomed", new_port(), PROTOCOL, [meta_route("doomed")]),
        meta_listener("misbehaving", new_port(), PROTOCOL, [meta_route("misbehaving")]),
    ]
    clusters = [
        static_cluster("v1", [dubbo_provider.port]),
        static_cluster("v2", [provider_v2.port]),
        # own clusters (same provider) so their stats only count their listener's traffic
        static_cluster("v1-pass", [dubbo_provider.port]),
        static_cluster("v1-mux", [dubbo_provider.port]),
        static_cluster("dead", [free_port()]),  # nothing listens there
        static_cluster("doomed", [provider_doomed.port]),
        static_cluster("misbehaving", [misbehaving.port]),
    ]
    config = bootstrap(listeners, clusters, new_port())
    running = start_aeraki_proxy(session_peers, config, tmp_path_factory.mktemp("dubbo-proxy"))
    yield running
    session_peers.stop(running.process)


# ---------------------------------------------------------------------------- routing


def test_interface_routing_with_both_consumers(proxy: AerakiProxy) -> None:
    calls = [DubboCall("whoami"), DubboCall("sayHello", ["x"])]
    jobs = [
        partial(_calls, proxy, "by-interface", c, calls, interface=i)
        for c in CONSUMERS
        for i in (IFACE_A, IFACE_B)
    ]
    results = _parallel(jobs)
    expected = [
        ["v1", "Hello x, response from v1"],
        ["v2", "Hello x, response from v2"],
    ] * len(CONSUMERS)
    assert [_values(r) for r in results] == expected


def test_method_routing_with_both_consumers(proxy: AerakiProxy) -> None:
    calls = [
        DubboCall("sayHello", ["a"]),
        DubboCall("whoami"),
        DubboCall("sayHello", ["b"]),
        DubboCall("whoami"),
    ]
    results = _parallel([partial(_calls, proxy, "by-method", c, calls) for c in CONSUMERS])
    for r in results:
        assert _values(r) == [
            "Hello a, response from v1",
            "v2",
            "Hello b, response from v1",
            "v2",
        ]


def test_attachment_version_and_group_routing_with_both_consumers(proxy: AerakiProxy) -> None:
    """Both consumers send attachments: ``foo: bar`` goes to v2, anything else to v1; the
    service version 2.0.0 and the group "canary" go to v2."""
    calls = [
        DubboCall("whoami"),
        DubboCall("whoami", [], {"foo": "bar"}),
        DubboCall("whoami", [], {"foo": "baz"}),
        DubboCall("whoami", [], {"foo": "bar", "other": "x"}),
        DubboCall("getAttachment", ["foo"], {"foo": "bar"}),
    ]
    jobs: list[Callable[[], list[DubboResult]]] = []
    for c in CONSUMERS:
        jobs.append(partial(_calls, proxy, "by-attachment", c, calls))
        jobs.append(partial(_calls, proxy, "by-attachment", c, calls[:1], version="2.0.0"))
        jobs.append(partial(_calls, proxy, "by-attachment", c, calls[:1], group="canary"))
        jobs.append(partial(_calls, proxy, "by-attachment", c, calls[:1], group="stable"))
    results = _parallel(jobs)
    for i in range(0, len(results), 4):
        by_attachment, by_version, canary, stable = results[i : i + 4]
        assert _values(by_attachment) == ["v1", "v2", "v1", "v2", "bar"]
        assert _values(by_version) == ["v2"]
        assert _values(canary) == ["v2"]
        assert _values(stable) == ["v1"]


def test_request_and_response_mutation(proxy: AerakiProxy) -> None:
    """The route's request_mutation reaches the provider as attachments (replacing the
    consumer's own value, keeping the others); its response_mutation is added to a response
    that carries attachments (seen by Node, the only consumer that can read them)."""
    calls = [
        DubboCall("getAttachment", ["foo"]),
        DubboCall("getAttachment", ["foo1"]),
        DubboCall("getAttachment", ["foo"], {"foo": "mine"}),
        DubboCall("getAttachment", ["x-user"], {"x-user": "alice", "foo": "mine"}),
        DubboCall("sayHello", ["m"]),
    ]
    node_extra = [
        DubboCall("echo", ["with-att"], {"want-attachments": "1"}),  # type 4
        DubboCall("getAttachment", ["absent"], {"want-attachments": "1"}),  # type 5 (null)
        DubboCall("fail", ["m-boom"], {"want-attachments": "1"}),  # type 3 (exception)
    ]
    node, python = _parallel(
        [
            partial(_calls, proxy, "mutation", "node", calls + node_extra),
            partial(_calls, proxy, "mutation", "python", calls),
        ]
    )
    expected = ["bar", "bar1", "bar", "alice", "Hello m, response from v1"]
    assert _values(python) == expected
    with_value, with_null, with_exception = node[len(expected) :]
    assert _values(node[: len(expected)]) == expected
    mutated = {"provider": "v1", "dubbo": "2.0.2", "x-proxy": "aeraki"}
    assert _ok(with_value) == "with-att"
    assert with_value.attachments == mutated
    assert _ok(with_null) is None
    assert with_null.attachments == mutated
    assert "m-boom" in _err(with_exception)
    # a response without attachments (type 1) is left as it is: the consumer still reads it
    assert node[0].attachments == {}


# ---------------------------------------------------------------------------- heartbeats, oneway


def test_heartbeat_is_answered_by_the_proxy_and_not_forwarded(proxy: AerakiProxy) -> None:
    port = proxy.ports["pass"]
    before = proxy.stats()
    request_id = 0x0102030405060708
    expected = struct.pack(">HBBqI", MAGIC, FLAG_EVENT | HESSIAN2, STATUS_OK, request_id, 1) + b"N"
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(heartbeat_frame(request_id))
        reply = read_frame(sock)
        # then a heartbeat between two requests on the same connection
        sock.sendall(
            request_frame(1, "whoami") + heartbeat_frame(2) + request_frame(3, "sayHello", ["z"])
        )
        replies = {f.request_id: f for f in (read_frame(sock) for _ in range(3))}
    raw = struct.pack(">HBBqI", MAGIC, reply.flag, reply.status, reply.request_id, len(reply.body))
    assert raw + reply.body == expected  # the 17-byte reply of reference §27.6, same id
    assert replies[2].is_event
    assert not replies[2].is_request
    assert replies[2].body == b"N"
    assert _string_value(replies[1]) == "v1"
    assert replies[3].status == STATUS_OK
    assert b"Hello z" in replies[3].body
    after = proxy.stats()
    assert after["meta_protocol.dubbo.pass.request_event"] == (
        before["meta_protocol.dubbo.pass.request_event"] + 2
    )
    # only the two requests went upstream
    assert after["cluster.v1-pass.upstream_rq_total"] == (
        before["cluster.v1-pass.upstream_rq_total"] + 2
    )


def test_oneway_requests_are_forwarded(proxy: AerakiProxy) -> None:
    port = proxy.ports["pass"]
    before = _raw_count_oneway(port)
    stat_before = proxy.stat("pass", "request_oneway", PROTOCOL)
    oneways = [request_frame(10 + i, "sayHello", [f"ow{i}"], two_way=False) for i in range(3)]
    # nothing comes back for the oneways: the first reply is the two-way request after them
    replies = raw_exchange(LOOPBACK, port, [*oneways, request_frame(99, "whoami")], replies=1)
    assert replies[0].request_id == 99
    assert _string_value(replies[0]) == "v1"
    # the oneways may travel on other upstream connections than the next call: poll, bounded
    poll_until(
        lambda: _raw_count_oneway(port) >= before + 3,
        timeout=5,
        what="provider counted the 3 oneway requests",
    )
    assert _raw_count_oneway(port) == before + 3
    assert proxy.stat("pass", "request_oneway", PROTOCOL) == stat_before + 3


# ---------------------------------------------------------------------------- local replies


def test_no_matched_route_is_a_client_error_and_the_connection_survives(
    proxy: AerakiProxy,
) -> None:
    stat_before = proxy.stat("by-method", "route_not_found", PROTOCOL)
    method_calls = [DubboCall("echo", ["nowhere"]), DubboCall("whoami")]
    jobs: list[Callable[[], list[DubboResult]]] = []
    for c in CONSUMERS:
        jobs.append(partial(_calls, proxy, "by-method", c, method_calls))
        jobs.append(
            partial(
                _calls, proxy, "by-interface", c, [DubboCall("whoami")], interface=IFACE_UNKNOWN
            )
        )
    results = _parallel(jobs)
    for (unrouted, after), (unknown_interface,) in zip(results[::2], results[1::2], strict=True):
        assert "no matched route" in _err(unrouted)
        assert _ok(after) == "v2", after  # same connection, still usable
        assert "no matched route" in _err(unknown_interface)
    assert proxy.stat("by-method", "route_not_found", PROTOCOL) == stat_before + len(CONSUMERS)
    # on the wire: SERVICE_NOT_FOUND (60) with the message as a Hessian2 string, same id
    (frame,) = raw_exchange(
        LOOPBACK, proxy.ports["by-method"], [request_frame(1234, "echo", ["x"])], replies=1
    )
    assert (frame.request_id, frame.status, frame.is_event) == (
        1234,
        STATUS_SERVICE_NOT_FOUND,
        False,
    )
    assert b"no matched route for request '1234'" in frame.body


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_unreachable_cluster_is_a_connection_failure_client_error(
    proxy: AerakiProxy, consumer: str
) -> None:
    with pytest.raises(DubboCallError, match="connection failure"):
        dubbo_invoke(consumer, LOOPBACK, proxy.ports["dead"], "whoami")


def test_provider_going_away_mid_request_is_a_connection_failure(
    proxy: AerakiProxy, provider_doomed: DubboProvider, session_peers: ProcessGroup
) -> None:
    """Both consumers wait on slow(8000) when the provider dies: the proxy answers each with a
    local error at once (well before the consumers' own 10 s timeout)."""
    port = proxy.ports["doomed"]
    assert dubbo_invoke("node", LOOPBACK, port, "whoami") == "doomed"
    with ThreadPoolExecutor(max_workers=len(CONSUMERS)) as pool:
        futures = [
            pool.submit(dubbo_calls, c, LOOPBACK, port, [DubboCall("slow", [8000])], timeout=10.0)
            for c in CONSUMERS
        ]
        poll_until(
            lambda: proxy.stats()["cluster.doomed.upstream_rq_active"] == len(CONSUMERS),
            timeout=10,
            what="both slow calls in flight upstream",
        )
        session_peers.stop(provider_doomed.process)
        results = [f.result(timeout=20)[0] for f in futures]
    for r in results:
        assert "connection failure" in _err(r)
    # and now nothing listens there at all
    with pytest.raises(DubboCallError, match="connection failure"):
        dubbo_invoke("node", LOOPBACK, port, "whoami")


def test_upstream_heartbeat_is_swallowed_and_the_answer_after_it_delivered(
    proxy: AerakiProxy, misbehaving: MisbehavingProvider
) -> None:
    """The provider sends a heartbeat request and the answer in one write: the consumer gets
    the answer at once (reference §9 deferred it to the next read), never the heartbeat."""
    port = proxy.ports["misbehaving"]
    results = _parallel(
        [partial(_calls, proxy, "misbehaving", c, [DubboCall("whoami")] * 3) for c in CONSUMERS]
    )
    for r in results:
        assert _values(r) == ["chatty"] * 3
    (frame,) = raw_exchange(LOOPBACK, port, [request_frame(5, "whoami")], replies=1)
    assert (frame.request_id, frame.is_event) == (5, False)
    # §9: upstream heartbeats are consumed, not answered
    assert not [f for f in misbehaving.frames_from_proxy if f.is_event]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_bad_upstream_responses_are_client_errors(proxy: AerakiProxy, consumer: str) -> None:
    """Undecodable, mismatched and truncated upstream answers become local error replies (the
    consumer raises; nothing hangs) and the downstream connection stays usable."""
    calls = [
        DubboCall("garbage"),
        DubboCall("whoami"),
        DubboCall("wrongId"),
        DubboCall("whoami"),
        DubboCall("truncated"),
        DubboCall("whoami"),
    ]
    garbage, ok1, wrong, ok2, truncated, ok3 = _calls(proxy, "misbehaving", consumer, calls)
    assert [ok1.value, ok2.value, ok3.value] == ["chatty"] * 3, (ok1, ok2, ok3)
    assert "magic" in _err(garbage)
    assert "request ID" in _err(wrong)
    assert "connection failure" in _err(truncated)


def test_bad_upstream_response_status_on_the_wire(proxy: AerakiProxy) -> None:
    frames = [request_frame(1, "garbage"), request_frame(2, "wrongId")]
    replies = raw_exchange(LOOPBACK, proxy.ports["misbehaving"], frames, replies=2)
    by_id = {f.request_id: f for f in replies}
    assert by_id[1].status == 50  # BAD_RESPONSE
    assert by_id[2].status == 50


# ---------------------------------------------------------------------------- responses


def test_every_kind_of_response_passes_through(proxy: AerakiProxy) -> None:
    # Node gets 41,000 chars (> 32,768: a chunked Hessian2 string, ~42 KB over several TCP
    # reads); dubbo-ssl-python mangles chunked strings even without a proxy, so it gets
    # 31,000. (Each spec travels in argv: 128 KiB at most.)
    bigs = {"node": "x" * 40_000 + "é✓" * 500, "python": "x" * 30_000 + "é✓" * 500}

    def calls(big: str) -> list[DubboCall]:
        return [
            DubboCall("sayHello", ["héllo wörld ✓"]),
            DubboCall("getAttachment", ["absent"]),  # null (RESPONSE_NULL_VALUE)
            DubboCall("echo", [[1, 2, 3]]),
            DubboCall("echo", [big]),
            DubboCall("fail", ["provider says boom"]),  # exception response
            DubboCall("noSuchMethod"),  # non-OK status (SERVICE_ERROR 70) from the provider
            DubboCall("sayHello", ["again"]),
        ]

    node_extra = [
        DubboCall("echo", ["att"], {"want-attachments": "yes"}),
        DubboCall("echo", [{"k": "v"}]),  # dubbo-ssl-python cannot send a map argument
    ]
    node, python = _parallel(
        [
            partial(_calls, proxy, "pass", "node", calls(bigs["node"]) + node_extra),
            partial(_calls, proxy, "pass", "python", calls(bigs["python"])),
        ]
    )
    for consumer, results in (("node", node), ("python", python)):
        hello, null, lst, large, fail, missing, again = results[:7]
        assert _ok(hello) == "Hello héllo wörld ✓, response from v1"
        assert _ok(null) is None
        assert _ok(lst) == [1, 2, 3]
        assert _ok(large) == bigs[consumer], (consumer, large.error)
        assert "provider says boom" in _err(fail)
        assert "no method noSuchMethod" in _err(missing)
        assert _ok(again) == "Hello again, response from v1"
    att, mapping = node[7:]
    assert _ok(att) == "att"
    assert dict(att.attachments) == {"provider": "v1", "dubbo": "2.0.2"}
    assert _ok(mapping) == {"k": "v"}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_provider_exception_is_raised_by_the_client(proxy: AerakiProxy, consumer: str) -> None:
    with pytest.raises(DubboCallError, match="kaboom"):
        dubbo_invoke(consumer, LOOPBACK, proxy.ports["pass"], "fail", ["kaboom"])


# ---------------------------------------------------------------------------- multiplexing


def test_multiplexed_listener_many_concurrent_node_calls(proxy: AerakiProxy) -> None:
    """Several Node consumers, each with 40 pipelined calls (slow ones mixed in so answers
    come back out of order), share upstream connections; every call gets its own answer."""
    before = proxy.stats()

    def one(n: int) -> list[DubboResult]:
        calls = [
            DubboCall("slow", [150]) if i % 10 == 0 else DubboCall("echo", [f"{n}:{i}"])
            for i in range(40)
        ]
        return _calls(proxy, "mux", "node", calls, concurrent=True)

    results = _parallel([partial(one, n) for n in range(4)])
    for n, r in enumerate(results):
        assert _values(r) == ["v1" if i % 10 == 0 else f"{n}:{i}" for i in range(40)]
    after = proxy.stats()
    requests = (
        after["cluster.v1-mux.upstream_rq_total"] - before["cluster.v1-mux.upstream_rq_total"]
    )
    opened = after["cluster.v1-mux.upstream_cx_total"] - before["cluster.v1-mux.upstream_cx_total"]
    assert requests == 160
    assert opened <= 1  # one shared upstream connection (opened by an earlier test, or now)


def test_multiplexed_listener_rewrites_colliding_request_ids(proxy: AerakiProxy) -> None:
    """20 raw connections all use request ids 1..5 at the same time on one shared upstream
    connection: the proxy must rewrite ids upstream and restore them downstream."""
    port = proxy.ports["mux"]
    socks = [socket.create_connection((LOOPBACK, port), timeout=10) for _ in range(20)]
    try:
        for c, sock in enumerate(socks):
            sock.sendall(b"".join(request_frame(i, "echo", [f"c{c}-{i}"]) for i in range(1, 6)))
        answers = [
            {f.request_id: _string_value(f) for f in (read_frame(s) for _ in range(5))}
            for s in socks
        ]
    finally:
        for sock in socks:
            sock.close()
    assert answers == [{i: f"c{c}-{i}" for i in range(1, 6)} for c in range(20)]


def test_multiplexed_listener_routes_mutates_and_answers_locally(proxy: AerakiProxy) -> None:
    """On a multiplexed listener: attachment routing with request and response mutation, a
    connection failure and a no-route local reply, all on one consumer connection."""
    calls = [
        DubboCall("whoami"),
        DubboCall("whoami", [], {"foo": "bar"}),
        DubboCall("getAttachment", ["foo1"], {"foo": "bar"}),
        DubboCall("slow", [1]),  # routed to the dead cluster
        DubboCall("whoami"),
    ]
    node_extra = [DubboCall("echo", ["x"], {"foo": "bar", "want-attachments": "1"})]
    jobs: list[Callable[[], list[DubboResult]]] = [
        partial(_calls, proxy, "mux-routed", "node", calls + node_extra, concurrent=True),
        partial(_calls, proxy, "mux-routed", "python", calls),
    ]
    for c in CONSUMERS:
        jobs.append(
            partial(_calls, proxy, "mux-routed", c, [DubboCall("whoami")], interface=IFACE_UNKNOWN)
        )
    node, python, *unrouted = _parallel(jobs)
    for results in (node, python):
        who1, who2, att, dead, who3 = results[:5]
        assert [who1.value, who2.value, att.value, who3.value] == ["v1", "v2", "bar1", "v1"]
        assert "connection failure" in _err(dead)
    (echo,) = node[5:]
    assert _ok(echo) == "x"
    assert dict(echo.attachments) == {"provider": "v2", "dubbo": "2.0.2", "x-proxy": "mux"}
    for (r,) in unrouted:
        assert "no matched route" in _err(r)


def test_multiplexed_listener_heartbeat_and_oneway(proxy: AerakiProxy) -> None:
    count_port = proxy.ports["pass"]  # same v1 provider, so the same oneway counter
    before = _raw_count_oneway(count_port)
    frames = [
        *(request_frame(10 + i, "sayHello", [f"mux-ow{i}"], two_way=False) for i in range(3)),
        heartbeat_frame(5),
        request_frame(6, "whoami"),
    ]
    replies = raw_exchange(LOOPBACK, proxy.ports["mux-routed"], frames, replies=2)
    by_id = {f.request_id: f for f in replies}
    assert sorted(by_id) == [5, 6]
    assert by_id[5].is_event
    assert by_id[5].body == b"N"
    assert _string_value(by_id[6]) == "v1"
    poll_until(
        lambda: _raw_count_oneway(count_port) >= before + 3,
        timeout=5,
        what="provider counted the 3 multiplexed oneway requests",
    )
    assert _raw_count_oneway(count_port) == before + 3


# ---------------------------------------------------------------------------- weighted


@pytest.mark.parametrize("listener", ["weighted", "mux-weighted"])
def test_weighted_split_is_within_five_percent(proxy: AerakiProxy, listener: str) -> None:
    """2,000 whoami calls pipelined 100 at a time on one connection: 70/30 within 5 points."""
    calls = 2000
    frames = [request_frame(i, "whoami") for i in range(calls)]
    replies = _pipelined(proxy.ports[listener], frames, window=100)
    assert sorted(f.request_id for f in replies) == list(range(calls))
    answers = [_string_value(f) for f in replies]
    share = answers.count("v1") / calls
    assert set(answers) == {"v1", "v2"}
    assert 0.65 <= share <= 0.75, share


# ---------------------------------------------------------------------------- framing edges


@pytest.mark.parametrize("listener", ["pass", "mux"])
def test_request_ids_of_every_size_come_back_unchanged(proxy: AerakiProxy, listener: str) -> None:
    ids = [0, -1, 2**63 - 1, -(2**63), 2**32, 7]
    frames = [request_frame(i, "whoami") for i in ids] + [heartbeat_frame(-5)]
    replies = raw_exchange(LOOPBACK, proxy.ports[listener], frames, replies=len(frames))
    assert sorted(f.request_id for f in replies) == sorted([*ids, -5])
    for f in replies:
        assert f.body == b"N" if f.request_id == -5 else _string_value(f) == "v1"


def test_frames_trickling_one_byte_at_a_time(proxy: AerakiProxy) -> None:
    data = (
        request_frame(3, "sayHello", ["trickle"]) + heartbeat_frame(4) + request_frame(5, "whoami")
    )
    with socket.create_connection((LOOPBACK, proxy.ports["pass"]), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
        by_id = {f.request_id: f for f in (read_frame(sock) for _ in range(3))}
    assert _string_value(by_id[3]) == "Hello trickle, response from v1"
    assert by_id[4].is_event
    assert _string_value(by_id[5]) == "v1"


@pytest.mark.parametrize("listener", ["pass", "mux"])
def test_half_closed_client_still_gets_its_answers(proxy: AerakiProxy, listener: str) -> None:
    with socket.create_connection((LOOPBACK, proxy.ports[listener]), timeout=5) as sock:
        sock.sendall(request_frame(1, "slow", [200]) + request_frame(2, "whoami"))
        sock.shutdown(socket.SHUT_WR)
        by_id = {f.request_id: f for f in (read_frame(sock) for _ in range(2))}
        assert sock.recv(16) == b""  # then the proxy closes
    assert [_string_value(by_id[1]), _string_value(by_id[2])] == ["v1", "v1"]


def _h2_long_string(text: str) -> bytes:
    """ASCII ``text`` as a chunked Hessian2 string ('R' chunks of 32,768, final 'S')."""
    out = bytearray()
    while len(text) > 32768:
        out += b"R" + struct.pack(">H", 32768) + text[:32768].encode()
        text = text[32768:]
    return bytes(out + b"S" + struct.pack(">H", len(text)) + text.encode())


def _read_long_string(data: bytes) -> str:
    """Decode a (possibly chunked) ASCII Hessian2 string."""
    pos, parts = 0, []
    for _ in range(len(data)):  # bounded: each step consumes at least one byte
        tag = data[pos]
        if tag in (0x52, 0x53):  # 'R' / 'S'
            (n,) = struct.unpack(">H", data[pos + 1 : pos + 3])
            parts.append(data[pos + 3 : pos + 3 + n].decode())
            pos += 3 + n
            if tag == 0x53:
                break
        else:
            n, head = (tag, 1) if tag < 0x20 else (((tag - 0x30) << 8) + data[pos + 1], 2)
            parts.append(data[pos + head : pos + head + n].decode())
            break
    return "".join(parts)


@pytest.mark.parametrize("listener", ["pass", "mux", "mutation"])
def test_one_mebibyte_request_and_response(proxy: AerakiProxy, listener: str) -> None:
    """A 1 MiB argument (re-rendered by the mutation route) and the 1 MiB echo back."""
    payload = "abcdefgh" * (1 << 17)
    iface = DEFAULT_INTERFACE
    head = (iface, iface, "1.0.0", "echo", "Ljava/lang/String;")
    body = (
        hessian2_encode("2.0.2")
        + b"".join(hessian2_encode(x) for x in head[1:])
        + _h2_long_string(payload)
        + hessian2_encode({"path": iface, "interface": iface, "version": "1.0.0"})
    )
    flag = FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2
    frame = HEADER.pack(MAGIC, flag, 0, 77, len(body)) + body
    (reply,) = raw_exchange(LOOPBACK, proxy.ports[listener], [frame], replies=1, timeout=10)
    assert (reply.request_id, reply.status, reply.body[0]) == (77, STATUS_OK, 0x91)
    assert _read_long_string(reply.body[1:]) == payload


def test_mutation_keeps_non_string_attachments(proxy: AerakiProxy) -> None:
    attachments: Any = {"n": 5, "foo": "orig"}  # an int attachment value, kept byte-exact
    frames = [
        request_frame(1, "getAttachment", ["n"], attachments=attachments),
        request_frame(2, "getAttachment", ["foo"], attachments=attachments),
    ]
    by_id = {
        f.request_id: f for f in raw_exchange(LOOPBACK, proxy.ports["mutation"], frames, replies=2)
    }
    assert by_id[1].body == b"\x91\x95"  # RESPONSE_VALUE, compact int 5
    assert _string_value(by_id[2]) == "bar"


def test_oneway_to_an_unreachable_cluster_is_dropped_silently(proxy: AerakiProxy) -> None:
    frames = [request_frame(1, "sayHello", ["x"], two_way=False), request_frame(2, "whoami")]
    (reply,) = raw_exchange(LOOPBACK, proxy.ports["dead"], frames, replies=1)
    # no reply to the oneway; the two-way request gets its local error
    assert reply.request_id == 2
    assert reply.status != STATUS_OK
    assert b"connection failure" in reply.body


def test_pipelined_node_calls_on_an_exclusive_listener(proxy: AerakiProxy) -> None:
    calls = [
        DubboCall("slow", [100]) if i % 5 == 0 else DubboCall("echo", [f"e{i}"]) for i in range(60)
    ]
    results = _calls(proxy, "pass", "node", calls, concurrent=True)
    assert _values(results) == ["v1" if i % 5 == 0 else f"e{i}" for i in range(60)]
