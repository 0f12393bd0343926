"""Golden files for the EnvoyFilter tests: the rendered YAML, problems as leading comments.

``UPDATE_GOLDEN=1 pytest tests/control/envoyfilter`` rewrites them; review the diff before
committing: each golden must stay what the reference (§5-§11) would render, deviations aside.
"""

from __future__ import annotations

import os
from pathlib import Path

from aeraki.control.envoyfilter import RenderResult
from aeraki.control.envoyfilter.cli import dump_yaml
from aeraki.control.model import ConfigSnapshot
from aeraki.control.validation import load_config
from tests.control.translate.helpers import DATA, data, problem_lines

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"

__all__ = ["DATA", "HERE", "check_golden", "load", "to_text"]


def load(*names: str) -> ConfigSnapshot:
    """Manifests from tests/control/data (or ``envoyfilter/data/…`` here) through validation."""
    paths = [HERE / n if n.startswith("data/") else data(n)[0] for n in names]
    config = load_config(paths)
    assert not config.errors, [p.format() for p in config.errors]
    return config


def to_text(result: RenderResult) -> str:
    lines = [f"# {line}" for line in problem_lines(result.problems)]
    lines = [line.replace(f"{HERE}{os.sep}", "") for line in lines]
    return "\n".join([*lines, dump_yaml(result.envoyfilters)])


def check_golden(name: str, result: RenderResult) -> None:
    path = GOLDEN / f"{name}.yaml"
    actual = to_text(result)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(encoding="utf-8"), f"{path} differs (UPDATE_GOLDEN=1)"
