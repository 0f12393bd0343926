"""``make fuzz``: at least a million structure-aware inputs per codec, every invariant checked.

Codecs: Thrift (every transport x protocol family), Dubbo, the example minirpc codec and the
test FakeCodec (``tests/codec/corpus.py``). Inputs and the oracle are in
:mod:`benchmarks.fuzz_engine` (the same ones the bounded Hypothesis tests in ``make test`` use).

How it runs: the work is cut into batches of :data:`BATCH` inputs of one family, interleaved
across codecs (so a time-bounded run still covers every codec evenly), and spread over
``FUZZ_JOBS`` worker processes (default: one per CPU). Each input gets a per-input time bound
(``SIGALRM``; exceeding it is a "hang" finding); inputs that leave a codec waiting for more
bytes are, one in ``FUZZ_PROBE_EVERY``, also fed one maximum-size message of filler (the
runaway-memory probe). Every case is reproducible from its batch seed and index.

Knobs (environment): FUZZ_INPUTS per codec (1000000), FUZZ_SECONDS overall time bound (3600),
FUZZ_JOBS (CPUs), FUZZ_SEED (1), FUZZ_INPUT_TIMEOUT seconds (2), FUZZ_PROBE_EVERY (200),
FUZZ_COVERAGE_INPUTS per codec for the line-coverage sample (20000; 0 skips it),
FUZZ_CODECS (comma list; all), FUZZ_FINDINGS (JSON file of findings), FUZZ_RESULTS (results
file; benchmarks/RESULTS.md), FUZZ_NO_WRITE=1 (print only).

    python -m benchmarks.fuzz            # exit 0 clean, 1 findings, 2 input target not reached
    python -m benchmarks.fuzz --replay FINDINGS.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import signal
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.fuzz_coverage import Coverage, measure
from benchmarks.fuzz_engine import Finding, Input, check_input, make_input, probe_memory
from benchmarks.results_section import machine_line, write_section
from tests.codec.corpus import CODECS, Family, families

HERE = Path(__file__).resolve().parent
#: Inputs per batch (one worker task): big enough to amortise the task, small enough to
#: balance two workers and to stop soon after the time bound.
BATCH = 10_000
#: Time bound of one memory probe (it copies up to one maximum-size message, ~16 MiB).
PROBE_TIMEOUT = 30.0


class InputTimeout(BaseException):
    """Raised by SIGALRM inside a codec call that exceeded the per-input time bound.

    A BaseException, so no ``except Exception`` in a codec can swallow it.
    """


@dataclass(frozen=True)
class Settings:
    """Every knob, from the environment (see the module docstring)."""

    inputs: int = 1_000_000
    seconds: float = 3600.0
    jobs: int = os.cpu_count() or 1
    seed: int = 1
    input_timeout: float = 2.0
    probe_every: int = 200
    coverage_inputs: int = 20_000
    codecs: tuple[str, ...] = CODECS

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            inputs=int(env("FUZZ_INPUTS") or cls.inputs),
            seconds=float(env("FUZZ_SECONDS") or cls.seconds),
            jobs=int(env("FUZZ_JOBS") or cls.jobs),
            seed=int(env("FUZZ_SEED") or cls.seed),
            input_timeout=float(env("FUZZ_INPUT_TIMEOUT") or cls.input_timeout),
            probe_every=int(env("FUZZ_PROBE_EVERY") or cls.probe_every),
            coverage_inputs=int(env("FUZZ_COVERAGE_INPUTS") or cls.coverage_inputs),
            codecs=tuple((env("FUZZ_CODECS") or ",".join(CODECS)).split(",")),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One batch: ``count`` inputs of family ``family`` from ``seed``, stopping at ``deadline``."""

    family: str
    seed: int
    count: int
    deadline: float
    input_timeout: float
    probe_every: int


@dataclass
class Tally:
    """What a batch (or a whole codec, summed) did."""

    inputs: int = 0
    #: CPU seconds the workers spent (on a shared machine, wall time would measure others)
    seconds: float = 0.0
    verdicts: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    encodes: int = 0
    replies: int = 0
    probes: int = 0
    slowest_ms: float = 0.0
    max_rss_mib: float = 0.0
    #: share of the codec's executable lines the coverage sample reached (None: not measured)
    coverage: float | None = None
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.seconds += other.seconds
        self.verdicts.update(other.verdicts)
        self.messages += other.messages
        self.encodes += other.encodes
        self.replies += other.replies
        self.probes += other.probes
        self.slowest_ms = max(self.slowest_ms, other.slowest_ms)
        self.max_rss_mib = max(self.max_rss_mib, other.max_rss_mib)
        for key, found in other.findings.items():
            mine = self.findings.setdefault(key, found)
            if mine is not found:
                mine["count"] += found["count"]


# ------------------------------------------------------------------------------ workers


def _family(name: str) -> Family:
    return next(f for f in families() if f.name == name)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise InputTimeout


def case_at(family: Family, seed: int, index: int) -> tuple[Input, random.Random]:
    """Input ``index`` of the batch seeded ``seed``, and the generator its check uses."""
    rng = random.Random(seed * 1_000_003 + index)
    return make_input(rng, family, families()), rng


def _timed(timeout: float, call: Any, *args: Any) -> Any:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return call(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_job(job: Job) -> tuple[str, Tally]:
    """Fuzz one batch (in a worker process, or inline); returns (family name, tally)."""
    signal.signal(signal.SIGALRM, _on_alarm)
    family, tally = _family(job.family), Tally()
    cpu_started = time.process_time()
    for index in range(job.count):
        if index % 256 == 0 and time.time() > job.deadline:
            break
        case, rng = case_at(family, job.seed, index)
        t0 = time.perf_counter()
        try:
            outcome = _timed(job.input_timeout, check_input, case, rng)
            tally.slowest_ms = max(tally.slowest_ms, (time.perf_counter() - t0) * 1000)
            tally.verdicts[outcome.verdict] += 1
            tally.messages += outcome.messages
            tally.encodes += outcome.encodes
            tally.replies += outcome.replies
            if outcome.verdict == "pending" and rng.randrange(job.probe_every) == 0:
                tally.probes += _timed(PROBE_TIMEOUT, probe_memory, case)
        except Finding as found:
            _record(tally, found.kind, found.detail, found.where, case, job, index)
        except InputTimeout:
            _record(tally, "hang", "no result within the time bound", "", case, job, index)
        tally.inputs += 1
    tally.seconds = time.process_time() - cpu_started  # CPU seconds: fair on a busy machine
    tally.max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return job.family, tally


def _record(
    tally: Tally, kind: str, detail: str, where: str, case: Input, job: Job, index: int
) -> None:
    key = f"{case.family.name} {kind} {where}"
    found = tally.findings.get(key)
    if found is not None:
        found["count"] += 1
        return
    tally.findings[key] = {
        "family": case.family.name,
        "kind": kind,
        "detail": detail,
        "where": where,
        "count": 1,
        "seed": job.seed,
        "index": index,
        "side": case.side.value,
        "recipe": case.recipe,
        "data": case.data.hex(),
        "cuts": list(case.cuts),
    }


# ------------------------------------------------------------------------------ driver


def plan(s: Settings, deadline: float) -> list[Job]:
    """Batches for every selected codec (inputs split evenly over its families), interleaved."""
    per_codec: list[list[Job]] = []
    for codec in s.codecs:
        fams = [f for f in families() if f.codec_name == codec]
        if not fams:
            raise SystemExit(f"fuzz: unknown codec {codec!r} (known: {', '.join(CODECS)})")
        jobs = []
        for rank, fam in enumerate(fams):
            share = s.inputs // len(fams) + (rank < s.inputs % len(fams))
            for start in range(0, share, BATCH):
                seed = zlib.crc32(f"{s.seed}:{fam.name}:{start}".encode())
                count = min(BATCH, share - start)
                jobs.append(Job(fam.name, seed, count, deadline, s.input_timeout, s.probe_every))
        per_codec.append(jobs)
    return [job for group in _interleave(per_codec) for job in group]


def _interleave(groups: list[list[Job]]) -> Iterator[list[Job]]:
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]


def run(s: Settings, *, progress: bool = True) -> tuple[dict[str, Tally], float]:
    """Run every batch (in ``s.jobs`` processes), then the coverage sample of each codec;
    returns tallies per codec and the wall seconds of the fuzzing proper."""
    started = time.time()
    jobs = plan(s, started + s.seconds)
    tallies = {codec: Tally() for codec in s.codecs}
    covered: list[tuple[str, Coverage]] = []
    sample = [(codec, s.coverage_inputs) for codec in s.codecs] if s.coverage_inputs else []
    if s.jobs <= 1:
        results: Iterator[tuple[str, Tally]] = map(run_job, jobs)
        _collect(results, tallies, started, progress)
        wall = time.time() - started
        covered = [_coverage(item) for item in sample]
    else:
        with multiprocessing.get_context("fork").Pool(s.jobs) as pool:
            _collect(pool.imap_unordered(run_job, jobs), tallies, started, progress)
            wall = time.time() - started
            covered = pool.map(_coverage, sample)
    for codec, cov in covered:
        tallies[codec].coverage = cov.ratio
        if progress:
            for path, lines in cov.missed().items():
                print(f"fuzz: {codec}: lines not reached in {path}: {lines}")
    return tallies, wall


def _coverage(item: tuple[str, int]) -> tuple[str, Coverage]:
    codec, inputs = item
    return codec, measure(codec, inputs)


def _collect(
    results: Iterator[tuple[str, Tally]], tallies: dict[str, Tally], started: float, progress: bool
) -> None:
    last = time.time()
    for name, tally in results:
        tallies[_family(name).codec_name].add(tally)
        if progress and time.time() - last > 15:
            last = time.time()
            done = ", ".join(f"{c} {t.inputs:,}" for c, t in tallies.items())
            print(f"fuzz: {time.time() - started:.0f}s: {done}", flush=True)


# ------------------------------------------------------------------------------ report

METHOD = """\
## Fuzzing (`make fuzz`, `benchmarks/fuzz.py`)

- **Codecs.** Thrift in all six transport x protocol families (framed, unframed, THeader x
  binary, compact; samples written by Apache Thrift and thriftpy2), Dubbo/Hessian2, the
  example minirpc codec and the test FakeCodec; samples in `tests/codec/corpus.py`.
- **Inputs** (`benchmarks/fuzz_engine.py`): 1-3 valid messages then 1-6 structure-aware
  mutations (bit flips, interesting bytes and ints, the family's length field set to edge
  values, truncation, insertion, deletion, duplication, swaps, splices — sometimes with another
  family's bytes —, varint runs), or random bytes, or a valid start plus random bytes; random
  read boundaries (sometimes one byte per read); both sides.
- **Checked per input**: only `CodecError` escapes decode/encode/on_error/heartbeat_reply;
  whole and chunked decodes agree (verdict; messages when valid); every message is exactly the
  stream's next bytes, returned only once complete, as long as its length field says; encode
  without changes is byte-exact; a mutation + new request id round-trips (or CodecError);
  out-of-range ids raise CodecError; local and heartbeat replies decode with the request's id.
  Per-input time bound (SIGALRM) = hang finding. Pending inputs (1 in `FUZZ_PROBE_EVERY`) are fed
  one maximum-size message of filler: holding more than that undecided = runaway memory.
- **Columns.** *inputs/s/core* = inputs ÷ worker CPU seconds spent on that codec; *mix* = share
  of inputs that decoded messages (valid), failed with `CodecError` (some after valid
  messages), or left the codec waiting; *checked* = encode round trips + local replies run on
  decoded messages; *slowest* = longest single input, all its checks included (memory probes
  excluded: bounded separately); *line coverage* = share of the codec's function-body lines
  (`benchmarks/fuzz_coverage.py`: its package, or its one file) executed by a separate sample of
  `FUZZ_COVERAGE_INPUTS` inputs under a line tracer (unreached lines are printed: mostly
  defensive checks, encode limits past 16 MiB, and table builders that run only at import);
  RSS = peak of any worker. The same engine runs bounded in `make test`
  (`tests/codec/test_fuzz_all.py`).
- **Found by the fuzzer** (fixed, with regression tests in `tests/codec/test_fuzz_all.py`):
  the test FakeCodec let `struct.error` escape `encode` for request ids outside 64 bits, and
  for header values under 65,536 characters but over 65,535 UTF-8 bytes (also its local reply
  for a long message). Thrift, Dubbo and minirpc: nothing so far.
"""


def report(s: Settings, tallies: dict[str, Tally], wall: float) -> str:
    """The run as Markdown: a table per codec, totals, findings."""
    rows = [
        "| codec | families | inputs | inputs/s/core | mix: valid / error / pending | checked "
        "| memory probes | slowest ms | line coverage | findings |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    total = Tally()
    for codec, t in tallies.items():
        total.add(t)
        fams = sum(1 for f in families() if f.codec_name == codec)
        rate = t.inputs / t.seconds if t.seconds else 0.0
        rows.append(
            f"| {codec} | {fams} | {t.inputs:,} | {rate:,.0f} | {_mix(t)} | "
            f"{t.encodes + t.replies:,} | {t.probes:,} | {t.slowest_ms:.1f} | "
            f"{'n/a' if t.coverage is None else f'{t.coverage:.1%}'} | "
            f"{sum(f['count'] for f in t.findings.values())} |"
        )
    lines = [
        f"##### {machine_line(HERE.parent)}",
        "",
        f"{total.inputs:,} inputs in {wall:.0f} s with {s.jobs} worker(s): "
        f"{total.inputs / wall:,.0f} inputs/s overall; target {s.inputs:,} per codec, "
        f"time bound {s.seconds:.0f} s, seed {s.seed}, per-input bound {s.input_timeout} s; "
        f"peak worker RSS {total.max_rss_mib:.0f} MiB.",
        "",
        *rows,
        "",
        _findings_text(total),
    ]
    return "\n".join(lines) + "\n"


def _mix(t: Tally) -> str:
    n = t.inputs or 1
    valid = t.verdicts["messages"]
    error = t.verdicts["error"] + t.verdicts["messages+error"]
    return f"{valid / n:.0%} / {error / n:.0%} / {t.verdicts['pending'] / n:.0%}"


def _findings_text(total: Tally) -> str:
    if not total.findings:
        return "Findings: none."
    lines = ["Findings:"]
    for found in total.findings.values():
        lines.append(
            f"- {found['family']}: **{found['kind']}** ×{found['count']} {found['where']} — "
            f"{found['detail'][:160]} (seed {found['seed']} index {found['index']})"
        )
    return "\n".join(lines)


def replay(path: Path) -> int:
    """Re-check every finding in ``path`` in this process and print what it raises now."""
    failing = 0
    for found in json.loads(path.read_text()):
        case, rng = case_at(_family(found["family"]), found["seed"], found["index"])
        try:
            check_input(case, rng)
            print(f"fixed:   {found['family']} {found['kind']} {found['where']}")
        except Finding as now:
            failing += 1
            print(f"FAILING: {found['family']} {now} side={case.side.value}")
            print(f"         data={case.data.hex()} cuts={list(case.cuts)}")
    return 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replay", type=Path, help="re-check the findings saved in this file")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    s = Settings.from_env()
    print(f"fuzz: {s}", flush=True)
    tallies, wall = run(s)
    text = report(s, tallies, wall)
    print(text)
    findings = [f for t in tallies.values() for f in t.findings.values()]
    if findings:
        out = Path(os.environ.get("FUZZ_FINDINGS") or tempfile.gettempdir())
        if out.is_dir():
            out = out / f"aeraki-fuzz-findings-{int(time.time())}.json"
        out.write_text(json.dumps(findings, indent=1))
        print(f"fuzz: findings saved to {out} (replay: python -m benchmarks.fuzz --replay {out})")
    if not os.environ.get("FUZZ_NO_WRITE"):
        results = Path(os.environ.get("FUZZ_RESULTS") or HERE / "RESULTS.md")
        write_section(results, "fuzz", METHOD, text)
        print(f"fuzz: results written to {results}")
    short = [c for c, t in tallies.items() if t.inputs < s.inputs]
    if short and not findings:
        print(f"fuzz: time bound reached before {s.inputs:,} inputs for {', '.join(short)}")
    return 1 if findings else 2 if short else 0


if __name__ == "__main__":
    sys.exit(main())
