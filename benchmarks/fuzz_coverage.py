"""Which codec lines the fuzz inputs reach: a small line tracer (no coverage.py needed).

Why: "a million inputs, no findings" means little if the inputs never get past the first
length check. ``make fuzz`` runs a sample of inputs per codec under ``sys.settrace`` limited
to the codec's own source files and reports executed / executable lines per codec; the
unreached lines are printed so gaps in the corpus or the mutators can be seen and closed.
"""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.fuzz_engine import Finding, check_input, make_input, probe_memory
from tests.codec.corpus import families

__all__ = ["Coverage", "measure"]

ROOT = Path(__file__).resolve().parent.parent
#: The source files that make up each codec (what its coverage is measured on).
SOURCES: dict[str, tuple[str, ...]] = {
    "thrift": ("src/aeraki/codec/thrift/*.py",),
    "dubbo": ("src/aeraki/codec/dubbo/*.py",),
    "minirpc": ("examples/codecs/minirpc.py",),
    "fake": ("src/aeraki/testing/fake_codec.py",),
}


def _files(codec: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for g in SOURCES[codec] for p in ROOT.glob(g))


@dataclass
class Coverage:
    """Executed and executable lines of one codec's files."""

    executable: dict[str, set[int]] = field(default_factory=dict)
    executed: dict[str, set[int]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        total = sum(len(lines) for lines in self.executable.values())
        hit = sum(len(self.executed[f] & lines) for f, lines in self.executable.items())
        return hit / total if total else 0.0

    def missed(self) -> dict[str, list[int]]:
        return {
            f: sorted(lines - self.executed[f])
            for f, lines in self.executable.items()
            if lines - self.executed[f]
        }


_FUNCTION = 0x01 | 0x02  # CO_OPTIMIZED | CO_NEWLOCALS: a function body, not a class body


def _code_lines(code: types.CodeType) -> Iterator[int]:
    """Lines of function bodies in ``code`` (def lines and class bodies run at import)."""
    if code.co_flags & _FUNCTION == _FUNCTION:
        for _, _, line in code.co_lines():
            if line is not None and line != code.co_firstlineno:
                yield line
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_lines(const)


def _executable(path: Path) -> set[int]:
    return set(_code_lines(compile(path.read_text(), str(path), "exec")))


def measure(codec: str, inputs: int, seed: int = 7) -> Coverage:
    """Run ``inputs`` fuzz inputs of ``codec`` (its families in turn) under a line tracer."""
    paths = {str(ROOT / p): p for p in _files(codec)}
    cov = Coverage(
        executable={p: _executable(ROOT / p) for p in paths.values()},
        executed={p: set() for p in paths.values()},
    )

    def local(frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            cov.executed[paths[frame.f_code.co_filename]].add(frame.f_lineno)
        return local

    def global_(frame: types.FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in paths else None

    fams = [f for f in families() if f.codec_name == codec]
    rng = random.Random(seed)
    sys.settrace(global_)
    try:
        for index in range(inputs):
            case = make_input(rng, fams[index % len(fams)], families())
            try:
                outcome = check_input(case, rng)
                if outcome.verdict == "pending" and index % 50 == 0:
                    probe_memory(case)
            except Finding:
                pass  # findings are the parallel run's business; here only lines count
    finally:
        sys.settrace(None)
    return cov
