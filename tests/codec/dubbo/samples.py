"""Sample Dubbo frames shared by the codec tests: every request kind and every response
status and result kind, with string and non-string values and attachments."""

from __future__ import annotations

from tests.codec.dubbo import h2w

CAR_DEF = h2w.class_def("example.Car", ["color", "model"])
CAR = h2w.obj(0, [h2w.string("red"), h2w.string("corvette")])
RICH_ATTACHMENTS = h2w.map_(
    [
        (h2w.string("path"), h2w.string(h2w.SVC)),
        (h2w.string("timeout"), h2w.int_(3000)),
        (h2w.string("group"), h2w.string("blue")),
        (h2w.string("tags"), h2w.list_([h2w.string("a"), h2w.string("b")])),
        (h2w.int_(7), h2w.string("int key")),
        (h2w.string("car"), h2w.obj(0, [h2w.string("blue"), h2w.string("golf")])),
        (h2w.string("nothing"), h2w.null()),
    ]
)

REQUESTS: list[bytes] = [
    h2w.request(request_id=1),
    h2w.request(request_id=2, two_way=False),
    h2w.heartbeat_request(3),
    h2w.request(
        request_id=4,
        method="add",
        descriptor="II",
        args=(h2w.int_(1), h2w.int_(100000)),
        attachments=h2w.str_map({"group": "g1", "interface": "override.Iface"}),
    ),
    h2w.request(
        request_id=5,
        method="echo",
        descriptor="Lexample/Car;[Ljava/lang/String;Ljava/util/Map;JD",
        args=(
            CAR_DEF + CAR,
            h2w.list_([h2w.string("x"), h2w.string("中文")], type_="[string"),
            h2w.map_([(h2w.string("k"), h2w.ref(0))], type_="java.util.HashMap"),
            h2w.long_(2**40),
            h2w.double(12.25),
        ),
        attachments=RICH_ATTACHMENTS,
    ),
    h2w.request(request_id=6, descriptor="", args=(), attachments=b""),  # no attachments
    h2w.request(request_id=7, descriptor="", args=(), attachments=b"N"),  # null attachments
    h2w.request(
        request_id=8,
        attachments=h2w.map_([(h2w.string("k"), h2w.string("v"))], type_="java.util.TreeMap"),
    ),
    h2w.request(request_id=2**63 + 5, version="", interface="a.B", method="m"),
]

OK_ATTACHMENTS = h2w.str_map({"server": "provider-1", "dubbo": "2.0.2"})

RESPONSES: list[bytes] = [
    h2w.response(1, h2w.string("hi, world"), request_id=1),
    h2w.response(1, h2w.int_(42), request_id=2),
    h2w.response(1, h2w.list_([h2w.int_(1), h2w.long_(2), h2w.null()]), request_id=3),
    h2w.response(1, CAR_DEF + CAR, request_id=4),
    h2w.response(2, request_id=5),
    h2w.response(0, CAR_DEF + CAR, request_id=6),  # exception object
    h2w.response(3, CAR_DEF + CAR, OK_ATTACHMENTS, request_id=7),
    h2w.response(4, h2w.string("v"), OK_ATTACHMENTS, request_id=8),
    h2w.response(4, h2w.map_([(h2w.boolean(True), CAR_DEF + CAR)]), RICH_ATTACHMENTS, request_id=9),
    h2w.response(5, b"", OK_ATTACHMENTS, request_id=10),
    h2w.heartbeat_response(11),
    *(
        h2w.frame(0x02, status, 20 + status, h2w.string(f"status {status}"))
        for status in (30, 31, 40, 50, 60, 70, 80, 90, 100)
    ),
    h2w.frame(0x06, 70, 12, b"\x05hello"),  # an error status in another serialization
]

GARBAGE: list[bytes] = [
    b"\x00" * 16,
    b"\xda\xbb\xc2\x00" + b"\x00" * 8 + b"\x7f\xff\xff\xff",  # 2 GiB body
    b"\xda\xbb\xc2\x00" + b"\x00" * 8 + b"\x01\x00\x00\x01",  # just over 16 MiB
    b"\xda\xbb\xc2\x00" + b"\x00" * 8 + b"\xff\xff\xff\xff",  # negative length
    h2w.frame(0xC6, 0, 1, b"N"),  # request in serialization 6
    h2w.frame(0xC2, 0, 1, b""),  # empty request body
    h2w.frame(0xC2, 0, 1, b"\x05"),
    h2w.frame(0xC2, 0, 1, b"\x05" + b"\xff" * 5 + b"\x00" * 10),
    h2w.request(method="\udc00"),  # a lone surrogate: not a string
    h2w.response(6),  # unknown result type
]

#: Requests and responses whose header and fixed part (strings before the descriptor, result
#: type) are sound but whose deferred part is not: they decode, their deferred properties
#: load as nothing, and ``encode`` with a mutation raises CodecError.
BAD_BODIES: list[bytes] = [
    h2w.request(descriptor="Ljava/lang/String"),
    h2w.request(descriptor="Q"),
    h2w.request(attachments=h2w.str_map({"a": "b"}) + b"\x90"),  # trailing bytes
    h2w.request(attachments=h2w.int_(3)),  # attachments not a map
    h2w.request(args=(h2w.obj(3, []),)),  # undefined class
    h2w.request(args=(b"W" * 5000 + b"Z" * 5000,)),  # too deep
    h2w.request(attachments=b"H\x01a"),  # truncated map
    h2w.response(4, h2w.string("v"), b"H\x03key"),  # truncated result attachments
    h2w.response(3, h2w.obj(0, []), h2w.str_map({})),  # exception object of no class
]
