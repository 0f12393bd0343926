"""YAML loading: documents, origins, line maps, invalid YAML, directories (issue 3, item 1)."""

from __future__ import annotations

from pathlib import Path

from aeraki.control.manifests import load_documents, load_text
from tests.control.helpers import DATA


def test_documents_and_line_map() -> None:
    text = (
        "# leading comment\n"
        "---\n"
        "kind: A\n"
        "spec:\n"
        "  routes:\n"
        "    - route:\n"
        "        - weight: 1\n"
        "        - {weight: 2}\n"
        "---\n"
        "# only a comment\n"
        "--- {kind: B}\n"
    )
    docs, problems = load_text(text, "f.yaml")
    assert problems == []
    assert [d.body for d in docs] == [
        {"kind": "A", "spec": {"routes": [{"route": [{"weight": 1}, {"weight": 2}]}]}},
        {"kind": "B"},
    ]
    first = docs[0].origin
    assert (first.file, first.index, first.line) == ("f.yaml", 0, 3)
    assert first.lines["spec.routes[0].route[0].weight"] == 7
    assert first.lines["spec.routes[0].route[1]"] == 8
    assert first.line_of("spec.routes[0].route[1].weight") == 8
    assert first.line_of("spec.routes[0].missing.deeper") == 6  # nearest ancestor
    assert (docs[1].origin.index, docs[1].origin.line) == (1, 11)


def test_map_keys_that_are_not_identifiers_are_quoted() -> None:
    docs, _ = load_text("metadata:\n  labels:\n    app.kubernetes.io/name: x\n")
    assert docs[0].origin.lines['metadata.labels["app.kubernetes.io/name"]'] == 3


def test_dates_stay_strings() -> None:
    docs, _ = load_text("a: 2024-01-01\n")
    assert docs[0].body == {"a": "2024-01-01"}


def test_invalid_yaml_names_line_and_column_and_neighbours_load() -> None:
    docs, problems = load_documents([DATA / "bad" / "broken.yaml"])
    assert [d.body["metadata"]["name"] for d in docs] == ["good-before", "good-after"]
    assert [d.origin.index for d in docs] == [0, 1]
    assert [d.origin.line for d in docs] == [1, 13]
    file = str(DATA / "bad" / "broken.yaml")
    (problem,) = problems
    assert (problem.file, problem.line, problem.column) == (file, 11, 5)
    assert problem.message.startswith("invalid YAML: ")
    assert problem.format().startswith(f"{file}:11:5: error: invalid YAML: ")


def test_directories_are_sorted_recursive_and_skip_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "..data").mkdir()
    (tmp_path / "b" / "z.yml").write_text("kind: Z\n")
    (tmp_path / "a.yaml").write_text("kind: A\n")
    (tmp_path / "c.json").write_text("kind: C\n")
    (tmp_path / ".hidden.yaml").write_text("kind: H\n")
    (tmp_path / "..data" / "a.yaml").write_text("kind: D\n")
    docs, problems = load_documents([tmp_path, tmp_path / "a.yaml", tmp_path / "c.json"])
    assert problems == []
    assert [d.body["kind"] for d in docs] == ["A", "Z", "C"]  # a.yaml read once


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"a: \xe9\n")
    docs, problems = load_documents([tmp_path / "nope.yaml", tmp_path / "latin1.yaml"])
    assert docs == []
    assert problems[0].format() == f"{tmp_path / 'nope.yaml'}: error: no such file or directory"
    assert problems[1].message.startswith("cannot read file: 'utf-8' codec can't decode byte 0xe9")
