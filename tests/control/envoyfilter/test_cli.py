"""``aeraki envoyfilter``: output parses back, problems on stderr, exit statuses, --mesh."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from aeraki.control.envoyfilter import parse_mesh_config, render_envoyfilters
from aeraki.control.envoyfilter.cli import add_commands
from aeraki.control.envoyfilter.mesh import DEFAULT_ACCESS_LOG_FORMAT, MeshConfigError
from tests.control.envoyfilter.helpers import DATA, load

BASE = str(DATA / "metaprotocol/base")


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    handlers = add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["envoyfilter", *argv])
    return handlers[args.command](args)


def test_yaml_output_parses_back(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(BASE, "--allocate-vips", "--namespace-root", "mesh-root") == 0
    out, err = capsys.readouterr()
    docs = list(yaml.safe_load_all(out))
    assert len(docs) == 4
    assert {d["metadata"]["namespace"] for d in docs} == {"mesh-root"}
    assert "assumed VIP 240.240.0.1" in err  # warnings on stderr, not in the YAML


def test_json_output_is_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(BASE, "-o", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "List"
    expected = render_envoyfilters(load("metaprotocol/base")).envoyfilters
    assert doc["items"] == expected
    assert [i["metadata"]["name"].split("-")[1] for i in doc["items"]] == ["inbound", "inbound"]


def test_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(DATA / "bad")) == 1
    assert "error" in capsys.readouterr().err


def test_mesh_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = tmp_path / "istio.yaml"
    body = {"accessLogFile": "/dev/stdout", "enableTracing": False, "rootNamespace": "root"}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"mesh": yaml.safe_dump(body)}}
    mesh.write_text(yaml.safe_dump(config_map))
    assert run(BASE, "--mesh", str(mesh)) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    value = docs[0]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
    assert "tracing" not in value
    log = value["access_log"][0]["typed_config"]["log_format"]["text_format_source"]
    assert log["inline_string"] == DEFAULT_ACCESS_LOG_FORMAT
    assert docs[0]["metadata"]["namespace"] == "root"
    mesh.write_text("enableTracing: maybe\n")
    assert run(BASE, "--mesh", str(mesh)) == 1
    assert "enableTracing" in capsys.readouterr().err


def test_parse_mesh_config() -> None:
    mesh = parse_mesh_config(
        "enableTracing: true\naccessLogEncoding: json\ndefaultConfig:\n  tracing:\n"
        "    sampling: 0\n"
    )
    assert mesh.access_log_encoding == "JSON"
    assert mesh.tracing_sampling == 0.0  # §16.17 replicated: set means used, even 0
    assert parse_mesh_config("{}").tracing_sampling is None
    with pytest.raises(MeshConfigError):
        parse_mesh_config("kind: ConfigMap\ndata: {}\n")
