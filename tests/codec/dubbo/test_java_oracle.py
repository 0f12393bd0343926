"""Caucho Hessian (Java, Debian libhessian-java) as an independent oracle for the scanner.

``java/HessianOracle.java`` is compiled at test time into a temporary directory; it writes
values and whole Dubbo bodies with ``Hessian2Output``. The scanner must skip each value exactly,
read Java's strings (CESU-8, surrogate pairs split across 32768-unit chunks) and decode the
Dubbo requests and responses built from those bodies.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aeraki.codec.api import MessageType, Metadata, Side
from aeraki.codec.dubbo import DubboCodec
from aeraki.codec.dubbo.hessian2 import read_string, skip_values
from tests.codec.dubbo import h2w

HESSIAN_JAR = Path("/usr/share/java/hessian.jar")
SOURCE = Path(__file__).parent / "java" / "HessianOracle.java"
JAVA_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.util", "java.math")
]

pytestmark = pytest.mark.skipif(
    shutil.which("javac") is None or shutil.which("java") is None or not HESSIAN_JAR.exists(),
    reason="needs javac/java and /usr/share/java/hessian.jar (apt-get install libhessian-java)",
)

Cases = dict[str, tuple[bytes, str | None]]


@pytest.fixture(scope="module")
def java_cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    classes = tmp_path_factory.mktemp("hessian-oracle")
    subprocess.run(
        ["javac", "-d", str(classes), "-cp", str(HESSIAN_JAR), str(SOURCE)],
        check=True,
        timeout=120,
    )
    run = subprocess.run(
        ["java", *JAVA_OPENS, "-cp", f"{HESSIAN_JAR}:{classes}", "HessianOracle"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cases: Cases = {}
    for line in run.stdout.decode().splitlines():
        name, data, text = line.split("\t")
        expected = None if text == "-" else bytes.fromhex(text[1:]).decode()
        cases[name] = (bytes.fromhex(data), expected)
    return cases


def test_oracle_produced_every_case(java_cases: Cases) -> None:
    assert len([n for n in java_cases if n.startswith("value:")]) >= 55
    assert {"request", "response value", "response exception", "response null"} <= set(java_cases)


def test_scanner_skips_every_java_value_exactly(java_cases: Cases) -> None:
    for name, (data, _) in java_cases.items():
        if name.startswith("value:"):
            assert skip_values(data + b"\x90", 0, 1, []) == len(data), name


def test_java_strings_read_back(java_cases: Cases) -> None:
    strings = [(n, d, t) for n, (d, t) in java_cases.items() if t is not None]
    assert len(strings) >= 10
    for name, data, text in strings:
        if name.startswith("value:string"):
            assert read_string(data, 0) == (text, len(data)), name


def test_java_request_body_decodes(java_cases: Cases) -> None:
    body = java_cases["request"][0]
    md = _decode_one(h2w.frame(0xC2, 0, 42, body), Side.REQUEST)
    assert md.operation_name == "com.example.CarService/park"
    assert md.load_strings() == {
        "interface": "com.example.CarService",
        "method": "park",
        "version": "1.0.0",
        "path": "com.example.CarService",
        "group": "g1",
        "x-user": "jason",
    }
    out = DubboCodec(Side.REQUEST).encode(md, {"x-request-id": "1", "group": "g2"})
    again = _decode_one(out, Side.REQUEST)
    assert (again.get_string("group"), again.get_string("x-request-id")) == ("g2", "1")


@pytest.mark.parametrize(
    ("case", "message_type"),
    [
        ("response value", MessageType.RESPONSE),
        ("response exception", MessageType.ERROR),
        ("response null", MessageType.RESPONSE),
    ],
)
def test_java_response_bodies_decode(
    java_cases: Cases, case: str, message_type: MessageType
) -> None:
    md = _decode_one(h2w.frame(0x02, 20, 7, java_cases[case][0]), Side.RESPONSE)
    assert md.message_type is message_type
    assert md.get_string("x-user") == "jason"


def _decode_one(frame: bytes, side: Side) -> Metadata:
    out = DubboCodec(side).decode(frame)
    assert len(out) == 1
    return out[0]
