"""The guide ``docs/writing-a-codec.md`` and its example codec ``examples/codecs/minirpc.py``.

* the guide's code excerpts are the example's code, verbatim, and its other Python snippets
  run; its bootstrap YAML loads, naming the codec by import path;
* the codec passes the conformance kit and property-based fuzzing;
* end to end, a real proxy configured by the guide's own YAML routes minirpc requests by
  method and header to real loopback upstreams, answers unknown methods with the codec's
  error frame, applies request and response mutations, and shares one upstream connection
  among clients by rewriting request ids.

``examples`` is imported from the repository root, which pytest puts on ``sys.path`` as the
base directory of the ``tests`` package (the same way ``tests.proxy.harness`` is imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeraki.codec.api import ErrorType, LocalError, MessageType, Metadata, ResponseStatus, Side
from aeraki.codec.registry import resolve_codec
from aeraki.errors import CodecError
from aeraki.proxy.bootstrap import ConfigErrors, bootstrap_from_dict, load_bootstrap
from aeraki.proxy.config import ProxyConfig, SocketAddress
from aeraki.proxy.server import ProxyServer
from aeraki.testing import check_codec
from examples.codecs.minirpc import (
    ERROR,
    MAX_FRAME,
    ONEWAY,
    REQUEST,
    RESPONSE,
    MiniRpcCodec,
    build_frame,
)

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "writing-a-codec.md"
EXAMPLE = REPO / "examples" / "codecs" / "minirpc.py"
EXCERPT = "# examples/codecs/minirpc.py (excerpt)\n"
IMPORT_PATH = "examples.codecs.minirpc:MiniRpcCodec"
TIMEOUT = 5.0
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def guide_blocks(language: str) -> list[str]:
    """The bodies of the guide's fenced blocks in ``language``, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def guide_bootstrap() -> Any:
    (block,) = guide_blocks("yaml")
    return yaml.safe_load(block)


def decode_one(frame: bytes, side: Side = Side.REQUEST) -> Metadata:
    (md,) = MiniRpcCodec(side).decode(frame)
    return md


def payload_of(md: Metadata) -> bytes:
    return md.origin[md.header_size :]


# -- the guide ---------------------------------------------------------------------------------
def test_guide_excerpts_are_verbatim_code_of_the_example() -> None:
    source = EXAMPLE.read_text(encoding="utf-8")
    excerpts = [b for b in guide_blocks("python") if b.startswith(EXCERPT)]
    assert len(excerpts) >= 6
    for excerpt in excerpts:
        body = excerpt[len(EXCERPT) :]
        assert body in source, f"guide excerpt is not in {EXAMPLE.name}:\n{body}"


def test_guide_python_snippets_run_in_order() -> None:
    snippets = [b for b in guide_blocks("python") if not b.startswith(EXCERPT)]
    assert len(snippets) >= 4
    namespace: dict[str, Any] = {"__name__": "guide"}
    for index, code in enumerate(snippets):
        exec(compile(code, f"{GUIDE}#snippet{index}", "exec"), namespace)
    assert namespace["MiniRpcCodec"] is MiniRpcCodec


def test_guide_bootstrap_loads_and_names_the_codec_by_import_path() -> None:
    config = bootstrap_from_dict(guide_bootstrap(), source=str(GUIDE))
    (listener,) = config.listeners
    proxy = listener.proxy
    assert (proxy.codec, proxy.application_protocol) == (IMPORT_PATH, "minirpc")
    assert proxy.multiplexing
    assert resolve_codec(proxy.codec) is MiniRpcCodec
    assert proxy.route_table is not None
    canary, greeter = proxy.route_table.routes
    assert (canary.cluster, [m.name for m in canary.match]) == (
        "greeter-v2",
        ["method", "x-canary"],
    )
    assert greeter.cluster == "greeter-v1"
    assert greeter.request_mutation == (("x-routed-by", "aeraki"),)
    assert greeter.response_mutation == (("x-served-via", "aeraki"),)
    assert {c.name for c in config.clusters} == {"greeter-v1", "greeter-v2"}


def test_guide_bootstrap_file_loads_with_load_bootstrap(tmp_path: Path) -> None:
    (block,) = guide_blocks("yaml")
    path = tmp_path / "minirpc.yaml"
    path.write_text(block, encoding="utf-8")
    assert load_bootstrap(path) == bootstrap_from_dict(guide_bootstrap())


def test_a_wrong_import_path_fails_at_load_with_the_field_path() -> None:
    data = guide_bootstrap()
    typed = data["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    typed["typed_config"]["protocol"]["codec"]["name"] = "examples.codecs.minirpc:Nope"
    with pytest.raises(ConfigErrors, match=r"protocol\.codec\.name.*not a subclass"):
        bootstrap_from_dict(data)


# -- the codec ---------------------------------------------------------------------------------
REQUESTS = [
    build_frame(REQUEST, 1, "Greeter.SayHello", {"tenant": "acme"}, b"world"),
    build_frame(REQUEST, 0xFFFFFFFF, "", {}),
    build_frame(REQUEST, 0, "Ünïcode.Métho∂", {"k": "", "": "v", "ключ": "значение"}, b"\x00"),
    build_frame(ONEWAY, 2, "Log.Write", {"level": "info"}, b"line"),
    build_frame(REQUEST, 3, "Blob.Put", {f"h{i}": "x" * i for i in range(50)}, bytes(70_000)),
]
RESPONSES = [
    build_frame(RESPONSE, 1, "Greeter.SayHello", {"server": "v1"}, b"hello world"),
    build_frame(RESPONSE, 2, "", {}),
    build_frame(ERROR, 3, "Greeter.SayHello", {"error-type": "BUSINESS"}, b"no such user"),
]
GARBAGE = [
    b"\xff\xff\xff\xff",  # length above MAX_FRAME
    b"\x00\x00\x00\x07" + bytes(7),  # length below the smallest frame
    b"\x00\x00\x00\x08\x00\x00\x00\x01\x09\x00\x00\x00",  # unknown kind 9
    b"\x00\x00\x00\x08\x00\x00\x00\x01\x00\x05\x00\x00",  # method runs past the frame
    b"\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x01",  # one header, no bytes for it
    b"\x00\x00\x00\x0a\x00\x00\x00\x01\x00\x02\xff\xfe\x00\x00",  # method is not UTF-8
]


def test_conformance_kit_passes() -> None:
    check_codec(MiniRpcCodec, REQUESTS, RESPONSES, garbage=GARBAGE, mutations=500)


def test_decode_fills_metadata() -> None:
    md = decode_one(REQUESTS[0])
    assert (md.message_type, md.request_id, md.response_status) == (
        MessageType.REQUEST,
        1,
        ResponseStatus.OK,
    )
    assert md.strings == {"method": "Greeter.SayHello", "tenant": "acme"}
    assert md.operation_name == "Greeter.SayHello"
    assert (md.body_size, md.message_size) == (5, len(REQUESTS[0]))
    assert payload_of(md) == b"world"
    assert decode_one(REQUESTS[3]).message_type is MessageType.ONEWAY
    error = decode_one(RESPONSES[2], Side.RESPONSE)
    assert (error.message_type, error.response_status) == (MessageType.ERROR, ResponseStatus.ERROR)


def test_a_header_named_method_cannot_spoof_the_method() -> None:
    md = decode_one(build_frame(REQUEST, 1, "Real.Method", {"Method": "Admin.Delete"}))
    assert md.get_string("method") == "Real.Method"


def test_encode_without_changes_returns_the_origin_object() -> None:
    md = decode_one(REQUESTS[0])
    assert MiniRpcCodec(Side.REQUEST).encode(md, {}) is md.origin
    assert MiniRpcCodec(Side.REQUEST).encode(md, {}, request_id=1) is md.origin


def test_mutation_rewrites_headers_and_keeps_method_and_payload() -> None:
    md = decode_one(REQUESTS[0])
    out = MiniRpcCodec(Side.REQUEST).encode(md, {"TENANT": "other", "x-new": "1"})
    again = decode_one(out)
    assert again.get("headers") == {"TENANT": "other", "x-new": "1"}
    assert (again.request_id, again.get_string("method"), payload_of(again)) == (
        1,
        "Greeter.SayHello",
        b"world",
    )
    assert int.from_bytes(out[:4], "big") == len(out) - 4


def test_request_id_rewrite_and_restore() -> None:
    codec = MiniRpcCodec(Side.REQUEST)
    md = decode_one(REQUESTS[0])
    rewritten = codec.encode(md, {}, request_id=77)
    assert rewritten == REQUESTS[0][:4] + (77).to_bytes(4, "big") + REQUESTS[0][8:]
    restored = codec.encode(decode_one(rewritten), {}, request_id=1)
    assert restored == REQUESTS[0]


@pytest.mark.parametrize(
    ("mutation", "request_id"),
    [
        ({"k" * 256: "v"}, None),  # key longer than its u8 length
        ({"k": "v" * 0x10000}, None),  # value longer than its u16 length
        ({"k": "v" * 0xFFFF, "j": "v" * 0xFFFF}, None),  # frame above MAX_FRAME
        ({}, -1),
        ({}, 1 << 32),
    ],
)
def test_encode_refuses_what_does_not_fit_with_codec_error(
    mutation: dict[str, str], request_id: int | None
) -> None:
    md = decode_one(build_frame(REQUEST, 1, "m", {}, bytes(MAX_FRAME - 0x10000)))
    with pytest.raises(CodecError):
        MiniRpcCodec(Side.REQUEST).encode(md, mutation, request_id=request_id)


def test_oversized_length_fails_before_the_frame_arrives() -> None:
    with pytest.raises(CodecError, match="invalid frame length"):
        MiniRpcCodec(Side.REQUEST).decode((MAX_FRAME + 1).to_bytes(4, "big"))


def test_local_reply_is_an_error_frame_carrying_the_message() -> None:
    md = decode_one(REQUESTS[0])
    for error_type in ErrorType:
        reply = MiniRpcCodec(Side.REQUEST).on_error(md, LocalError(error_type, "why ✓"))
        got = decode_one(reply, Side.RESPONSE)
        assert (got.message_type, got.request_id) == (MessageType.ERROR, 1)
        assert got.get_string("error-type") == error_type.name
        assert got.operation_name == "Greeter.SayHello"
        assert payload_of(got).decode() == "why ✓"


# -- property-based ----------------------------------------------------------------------------
texts = st.text(max_size=12)
frames = st.builds(
    build_frame,
    st.sampled_from([REQUEST, RESPONSE, ERROR, ONEWAY]),
    st.integers(0, 0xFFFFFFFF),
    texts,
    st.dictionaries(texts, texts, max_size=6),
    st.binary(max_size=64),
)


@FUZZ
@given(st.lists(st.binary(max_size=48), max_size=8), st.sampled_from(list(Side)))
def test_fuzz_any_bytes_raise_only_codec_error(chunks: list[bytes], side: Side) -> None:
    codec = MiniRpcCodec(side)
    try:
        for chunk in chunks:
            for md in codec.decode(chunk):
                codec.encode(md, {"x-fuzz": "1"}, request_id=9)
    except CodecError:
        pass


@FUZZ
@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_fuzz_corrupted_frames_raise_only_codec_error(
    samples: list[bytes], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(samples))
    for _ in range(data.draw(st.integers(1, 4))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    codec = MiniRpcCodec(Side.RESPONSE)
    try:
        for md in codec.decode(bytes(stream)):
            codec.encode(md, {"x-fuzz": "1"})
    except CodecError:
        pass


@FUZZ
@given(
    st.lists(frames, min_size=1, max_size=4),
    st.data(),
    st.dictionaries(texts, texts, max_size=3),
    st.none() | st.integers(0, 0xFFFFFFFF),
)
def test_fuzz_any_split_decodes_the_same_and_mutations_round_trip(
    samples: list[bytes],
    data: st.DataObject,
    mutation: dict[str, str],
    request_id: int | None,
) -> None:
    stream = b"".join(samples)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    codec = MiniRpcCodec(Side.REQUEST)
    decoded: list[Metadata] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoded.extend(codec.decode(stream[start:end]))
    assert [md.origin for md in decoded] == samples
    for md in decoded:
        again = decode_one(codec.encode(md, mutation, request_id=request_id))
        replaced = {k.lower() for k in mutation}
        kept = {k: v for k, v in md.get("headers").items() if k.lower() not in replaced}
        assert again.get("headers") == {**kept, **mutation}
        assert again.request_id == (md.request_id if request_id is None else request_id)
        assert (again.message_type, again.operation_name) == (md.message_type, md.operation_name)
        assert payload_of(again) == payload_of(md)


# -- end to end through a real proxy -----------------------------------------------------------
class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, owner: MiniRpcUpstream) -> None:
        self.owner = owner
        self.codec = MiniRpcCodec(Side.REQUEST)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner.connections += 1

    def data_received(self, data: bytes) -> None:
        for md in self.codec.decode(data):
            self.owner.on_request(self, md)


class MiniRpcUpstream:
    """A minirpc server on 127.0.0.1: answers ``<label>: <payload>`` with a ``server`` header.

    With ``hold`` set, requests are held until that many arrived, then all are answered in
    reverse order in one write (out-of-order responses on a shared connection).
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.received: list[Metadata] = []
        self.connections = 0
        self.hold = 0
        self._held: list[tuple[_UpstreamProtocol, Metadata]] = []
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def start(self) -> MiniRpcUpstream:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _UpstreamProtocol(self), "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def answer(self, md: Metadata) -> bytes:
        payload = f"{self.label}: ".encode() + payload_of(md)
        return build_frame(
            RESPONSE, md.request_id, md.operation_name, {"server": self.label}, payload
        )

    def on_request(self, proto: _UpstreamProtocol, md: Metadata) -> None:
        self.received.append(md)
        asyncio.get_running_loop().create_task(self._notify())
        assert proto.transport is not None
        if md.message_type is MessageType.ONEWAY:
            return
        if not self.hold:
            proto.transport.write(self.answer(md))
            return
        self._held.append((proto, md))
        if len(self._held) == self.hold:
            frames = [self.answer(held) for _, held in reversed(self._held)]
            proto.transport.write(b"".join(frames))
            self._held.clear()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_received(self, count: int) -> list[Metadata]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.received) >= count), TIMEOUT
            )
        return self.received

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


class MiniRpcClient:
    """A client connection to the proxy."""

    def __init__(self) -> None:
        self.codec = MiniRpcCodec(Side.RESPONSE)
        self.pending: list[Metadata] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> MiniRpcClient:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), TIMEOUT
        )
        return self

    def send(
        self,
        request_id: int,
        method: str,
        headers: Mapping[str, str] | None = None,
        payload: bytes = b"",
        *,
        kind: int = REQUEST,
    ) -> None:
        assert self.writer is not None
        self.writer.write(build_frame(kind, request_id, method, headers, payload))

    async def receive(self) -> Metadata:
        assert self.reader is not None
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not data:
                raise ConnectionError("the proxy closed the connection")
            self.pending.extend(self.codec.decode(data))
        return self.pending.pop(0)

    async def call(
        self,
        request_id: int,
        method: str,
        headers: Mapping[str, str] | None = None,
        payload: bytes = b"",
    ) -> Metadata:
        self.send(request_id, method, headers, payload)
        return await self.receive()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)


def config_from_guide(ports: Mapping[str, int]) -> ProxyConfig:
    """The guide's bootstrap with its clusters pointing at ``ports``, listening on a port the
    kernel picks (a bootstrap requires 1..65535, so port 0 is set on the loaded config)."""
    data = guide_bootstrap()
    for cluster in data["static_resources"]["clusters"]:
        for group in cluster["load_assignment"]["endpoints"]:
            for lb_endpoint in group["lb_endpoints"]:
                address = lb_endpoint["endpoint"]["address"]["socket_address"]
                address["port_value"] = ports[cluster["name"]]
    config = bootstrap_from_dict(data, source=str(GUIDE))
    (listener,) = config.listeners
    anywhere = replace(listener, address=SocketAddress("127.0.0.1", 0))
    return replace(config, listeners=(anywhere,))


@asynccontextmanager
async def guide_proxy() -> AsyncIterator[tuple[ProxyServer, MiniRpcUpstream, MiniRpcUpstream]]:
    v1 = await MiniRpcUpstream("v1").start()
    v2 = await MiniRpcUpstream("v2").start()
    server = ProxyServer(config_from_guide({"greeter-v1": v1.port, "greeter-v2": v2.port}))
    try:
        await asyncio.wait_for(server.start(), TIMEOUT)
        try:
            yield server, v1, v2
        finally:
            await asyncio.wait_for(server.shutdown(), TIMEOUT)
    finally:
        v1.close()
        v2.close()


async def client_of(server: ProxyServer) -> MiniRpcClient:
    return await MiniRpcClient().connect(server.listeners[0].port)


def stat(server: ProxyServer, name: str) -> int:
    return server.stats()[f"meta_protocol.minirpc.minirpc.{name}"]


async def test_requests_are_routed_by_method_and_header() -> None:
    async with guide_proxy() as (server, _v1, _v2):
        client = await client_of(server)
        plain = await client.call(11, "Greeter.SayHello", {}, b"hello")
        canary = await client.call(12, "Greeter.SayHello", {"X-Canary": "yes"}, b"hi")
        assert (plain.message_type, plain.request_id) == (MessageType.RESPONSE, 11)
        assert (plain.get_string("server"), payload_of(plain)) == ("v1", b"v1: hello")
        assert plain.get_string("x-served-via") == "aeraki"  # the route's response_mutation
        assert (canary.request_id, canary.get_string("server")) == (12, "v2")
        assert payload_of(canary) == b"v2: hi"
        assert not canary.has_string("x-served-via")  # the canary route mutates nothing
        await client.close()
        assert stat(server, "response_success") == 2


async def test_unknown_method_gets_the_codecs_route_not_found_error_frame() -> None:
    async with guide_proxy() as (server, v1, v2):
        client = await client_of(server)
        reply = await client.call(5, "Billing.Charge", {"tenant": "acme"}, b"100 EUR")
        assert (reply.message_type, reply.request_id) == (MessageType.ERROR, 5)
        assert reply.response_status is ResponseStatus.ERROR
        assert reply.get_string("error-type") == "ROUTE_NOT_FOUND"
        assert reply.operation_name == "Billing.Charge"
        assert payload_of(reply) == (
            b"meta protocol router: no matched route for request '5' (Billing.Charge)"
        )
        ok = await client.call(6, "Greeter.SayHello")  # the connection stays usable
        assert ok.get_string("server") == "v1"
        await client.close()
        assert stat(server, "route_not_found") == 1
        assert [md.operation_name for md in v1.received + v2.received] == ["Greeter.SayHello"]


async def test_request_mutation_arrives_at_the_upstream_and_nothing_else_changes() -> None:
    async with guide_proxy() as (server, v1, _v2):
        client = await client_of(server)
        client.send(1, "Greeter.Log", {"level": "info"}, b"fire and forget", kind=ONEWAY)
        reply = await client.call(2, "Greeter.SayHello", {"tenant": "acme"}, b"\x00payload\xff")
        assert reply.get_string("server") == "v1"
        oneway, request = await v1.wait_received(2)
        assert oneway.message_type is MessageType.ONEWAY
        assert oneway.get("headers") == {"level": "info", "x-routed-by": "aeraki"}
        assert request.get("headers") == {"tenant": "acme", "x-routed-by": "aeraki"}
        assert (request.get_string("method"), payload_of(request)) == (
            "Greeter.SayHello",
            b"\x00payload\xff",
        )
        # the proxy's own routable property is not a header: it never reaches the wire
        assert not request.has_string("x-meta-protocol-application-protocol")
        await client.close()


async def test_clients_share_one_upstream_connection_through_request_id_rewriting() -> None:
    async with guide_proxy() as (server, v1, _v2):
        v1.hold = 4  # answer only when all four are in, in reverse order
        clients = [await client_of(server) for _ in range(2)]
        for n, client in enumerate(clients):
            # both clients use ids 1 and 2: the proxy must keep them apart upstream
            client.send(1, "Greeter.SayHello", {}, f"c{n}-a".encode())
            client.send(2, "Greeter.SayHello", {}, f"c{n}-b".encode())
        received = await v1.wait_received(4)
        assert v1.connections == 1
        assert len({md.request_id for md in received}) == 4
        for n, client in enumerate(clients):
            replies = {(r := await client.receive()).request_id: payload_of(r) for _ in range(2)}
            assert replies == {1: f"v1: c{n}-a".encode(), 2: f"v1: c{n}-b".encode()}
            await client.close()
