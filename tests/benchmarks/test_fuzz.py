"""``make fuzz`` itself: the runner works end to end, and its oracle catches each bug class.

Each planted codec below breaks one rule of the codec contract on purpose (built on the
example minirpc codec); the oracle must name that rule. A small real run over every codec
must come back clean, and its report must land in a results file without eating older runs.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from pathlib import Path

import pytest

from aeraki.codec.api import LocalError, Metadata, Mutation, Side
from benchmarks import fuzz
from benchmarks.fuzz_coverage import measure
from benchmarks.fuzz_engine import Finding, Input, check_input, make_input, probe_memory
from benchmarks.results_section import write_section
from examples.codecs.minirpc import MiniRpcCodec
from tests.codec.corpus import CODECS, Family, families

MINIRPC = next(f for f in families() if f.codec_name == "minirpc")
VALID = MINIRPC.requests[0]


class RaisesIndexError(MiniRpcCodec):
    def decode(self, data: bytes) -> list[Metadata]:
        if b"\xee" in data:
            return [][0]
        return super().decode(data)


class ForgetsPartialReads(MiniRpcCodec):
    """Drops what it buffered whenever a read ends mid-frame: chunking changes the result."""

    def decode(self, data: bytes) -> list[Metadata]:
        out = super().decode(data)
        self._buffer.clear()
        return out


class CutsMessagesShort(MiniRpcCodec):
    def decode(self, data: bytes) -> list[Metadata]:
        out = super().decode(data)
        for md in out:
            md.origin = md.origin[:-1]
        return out


class EncodesSloppily(MiniRpcCodec):
    def encode(
        self, metadata: Metadata, mutation: Mutation, *, request_id: int | None = None
    ) -> bytes:
        return bytes(super().encode(metadata, mutation, request_id=request_id))[:-1] + b"!"


class DropsMutations(MiniRpcCodec):
    def encode(
        self, metadata: Metadata, mutation: Mutation, *, request_id: int | None = None
    ) -> bytes:
        if mutation:  # rewrites the frame (new bytes) but without the mutation
            mutation = {"x-other": "1"}
        return super().encode(metadata, mutation, request_id=request_id)


class RepliesWithWrongId(MiniRpcCodec):
    def on_error(self, metadata: Metadata, error: LocalError) -> bytes:
        twin = metadata.clone()
        twin.request_id = (metadata.request_id + 1) & 0xFFFFFFFF
        return super().on_error(twin, error)


class BuffersForever(MiniRpcCodec):
    """Never decides anything: holds every byte it is given."""

    def decode(self, data: bytes) -> list[Metadata]:
        self._buffer += data
        return []


class Hangs(MiniRpcCodec):
    def decode(self, data: bytes) -> list[Metadata]:
        deadline = time.monotonic() + 30  # bounded: the runner's alarm fires long before
        while time.monotonic() < deadline:
            pass
        return []


def planted(codec: type[MiniRpcCodec]) -> Family:
    return dataclasses.replace(MINIRPC, name=f"minirpc/{codec.__name__}", codec=codec)


def check(codec: type[MiniRpcCodec], data: bytes, cuts: tuple[int, ...] = ()) -> None:
    check_input(Input(planted(codec), Side.REQUEST, data, cuts, "planted"), random.Random(0))


@pytest.mark.parametrize(
    ("codec", "data", "cuts", "kind"),
    [
        (RaisesIndexError, VALID[:9] + b"\xee", (), "decode raised IndexError"),
        (ForgetsPartialReads, VALID, (5,), "chunking"),
        (CutsMessagesShort, VALID, (), "sizes"),
        (EncodesSloppily, VALID, (), "encode-identity"),
        (DropsMutations, VALID, (), "encode-mutation"),
        (RepliesWithWrongId, VALID, (), "on_error"),
    ],
)
def test_the_oracle_names_each_planted_bug(
    codec: type[MiniRpcCodec], data: bytes, cuts: tuple[int, ...], kind: str
) -> None:
    with pytest.raises(Finding) as found:
        check(codec, data, cuts)
    assert re.fullmatch(kind, found.value.kind), found.value


def test_the_oracle_passes_the_unbroken_codec() -> None:
    check(MiniRpcCodec, VALID * 3, (1, 30, 31))


def test_a_message_shorter_than_its_length_field_is_caught() -> None:
    """A codec trusting less than the declared length: origin is the stream prefix, but the
    length field says otherwise."""

    class IgnoresLastByte(MiniRpcCodec):
        def decode(self, data: bytes) -> list[Metadata]:
            out = super().decode(data)
            if out:
                self._buffer[:0] = out[-1].origin[-1:]
                out[-1].origin = out[-1].origin[:-1]
                out[-1].body_size -= 1  # consistent sizes: only the length field tells
            return out

    with pytest.raises(Finding, match="short"):
        check(IgnoresLastByte, VALID)


def test_the_memory_probe_catches_unbounded_buffering() -> None:
    case = Input(planted(BuffersForever), Side.REQUEST, VALID[:10], (), "planted")
    with pytest.raises(Finding, match="buffer"):
        probe_memory(case)
    assert probe_memory(dataclasses.replace(case, family=MINIRPC))  # the real codec decides


def test_a_hanging_codec_is_a_hang_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuzz, "_family", lambda name: planted(Hangs))
    job = fuzz.Job(
        "minirpc/Hangs",
        seed=1,
        count=2,
        deadline=time.time() + 60,
        input_timeout=0.2,
        probe_every=1,
    )
    started = time.monotonic()
    _, tally = fuzz.run_job(job)
    assert time.monotonic() - started < 10
    assert tally.inputs == 2
    (found,) = tally.findings.values()
    assert (found["kind"], found["count"]) == ("hang", 2)


def test_inputs_are_reproducible_from_their_seed() -> None:
    fam = families()[0]
    first = [make_input(random.Random(s), fam, families()) for s in range(50)]
    again = [make_input(random.Random(s), fam, families()) for s in range(50)]
    assert first == again
    assert len({(c.data, c.cuts) for c in first}) > 40  # and they differ from each other
    for case in first:
        assert b"".join(case.chunks()) == case.data


def test_a_small_run_over_every_codec_is_clean_and_reported(tmp_path: Path) -> None:
    settings = fuzz.Settings(inputs=300, seconds=120, jobs=1, probe_every=20, coverage_inputs=300)
    tallies, wall = fuzz.run(settings, progress=False)
    assert set(tallies) == set(CODECS)
    for codec, tally in tallies.items():
        assert tally.inputs == 300, codec
        assert tally.findings == {}, (codec, list(tally.findings.values())[:1])
        assert tally.verdicts["messages"] > 0, codec
        assert tally.verdicts["error"] > 0, codec
        assert tally.encodes > 0, codec
        assert tally.replies > 0, codec
        assert tally.coverage is not None
        assert tally.coverage > 0.6, codec  # even 300 inputs get well past the length checks
    text = fuzz.report(settings, tallies, wall)
    assert "Findings: none." in text
    for codec in CODECS:
        assert re.search(rf"^\| {codec} \| \d+ \| 300 \|", text, re.MULTILINE), text
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Runs (newest first)\n\nolder data-plane runs\n")
    write_section(results, "fuzz", fuzz.METHOD, text)
    write_section(results, "fuzz", fuzz.METHOD, text.replace("Findings: none.", "second"))
    final = results.read_text()
    assert final.count("## Fuzzing") == 1
    assert final.index("second") < final.index("Findings: none.")  # newest first
    assert final.startswith("# Results\n\n## Runs (newest first)\n\nolder data-plane runs\n")


def test_line_coverage_counts_function_bodies_of_the_codec_files() -> None:
    cov = measure("minirpc", 200)
    ((path, executable),) = cov.executable.items()
    assert path == "examples/codecs/minirpc.py"
    missed = cov.missed().get(path, [])
    assert 0 < cov.ratio == 1 - len(missed) / len(executable)
    source = (Path(__file__).parents[2] / path).read_text().splitlines()
    first_decode_line = next(
        i for i, line in enumerate(source, 1) if "buffer += data" in line and "self" not in line
    )
    assert first_decode_line in cov.executed[path]  # a line every decode runs
