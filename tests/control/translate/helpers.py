"""Golden files and proxy-acceptance checks for the translation tests.

Goldens are JSON (``json_format.MessageToDict``, proto field names, sorted keys) so a change in
the translation shows as a readable diff. ``UPDATE_GOLDEN=1 pytest tests/control/translate``
rewrites them; review the diff before committing.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from aeraki.control.manifests import load_documents
from aeraki.control.model import ConfigSnapshot, Problem, Resource, parse_resource
from aeraki.control.translate import Translation
from aeraki.control.validation import load_config
from aeraki.control.xds.snapshot import Snapshot
from aeraki.proxy.xds_apply import (
    TYPE_CDS,
    TYPE_EDS,
    TYPE_LDS,
    TYPE_RDS,
    clusters_from_resources,
    endpoints_from_resource,
    listeners_from_resources,
    route_table_from_resource,
)

DATA = Path(__file__).parent.parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def data(*names: str) -> list[Path]:
    return [DATA / n for n in names]


def load(*names: str) -> ConfigSnapshot:
    """Manifests through validation, as the control plane loads them."""
    config = load_config(data(*names))
    assert not config.errors, [p.format() for p in config.errors]
    return config


def load_unvalidated(*names: str) -> ConfigSnapshot:
    """Manifests parsed one by one, without the cross-resource checks: the translation must
    cope on its own with what validation would have removed (dangling subsets, …)."""
    docs, problems = load_documents(data(*names))
    assert not problems, problems
    kinds: dict[str, list[Resource[Any]]] = defaultdict(list)
    for doc in docs:
        parsed = parse_resource(doc.body, doc.origin)
        if parsed.is_valid and parsed.resource is not None:
            kinds[parsed.resource.meta.kind].append(parsed.resource)
    return ConfigSnapshot(
        meta_routers=tuple(kinds["MetaRouter"]),
        application_protocols=tuple(kinds["ApplicationProtocol"]),
        service_entries=tuple(kinds["ServiceEntry"]),
        destination_rules=tuple(kinds["DestinationRule"]),
        virtual_services=tuple(kinds["VirtualService"]),
    )


def problem_lines(problems: Sequence[Problem]) -> list[str]:
    """Problems formatted with file names relative to the test data directory."""
    return [p.format().replace(f"{DATA}{os.sep}", "") for p in problems]


def to_json(translation: Translation) -> str:
    doc = {
        "problems": problem_lines(translation.problems),
        "resources": [
            {
                "@type": msg.DESCRIPTOR.full_name,
                **json_format.MessageToDict(msg, preserving_proto_field_name=True),
            }
            for msg in translation.resources
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check_golden(name: str, translation: Translation) -> None:
    """Compare with ``golden/<name>.json`` (rewrite it when ``UPDATE_GOLDEN=1``)."""
    path = GOLDEN / f"{name}.json"
    actual = to_json(translation)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(encoding="utf-8"), f"{path} differs (UPDATE_GOLDEN=1)"


def by_type(resources: Sequence[Message]) -> dict[str, list[any_pb2.Any]]:
    """The packed resources of each type URL, exactly as the xDS server serves them (a
    MetaProtocol route configuration travels under RDS, ``snapshot.CARRIED_BY``)."""
    snapshot = Snapshot.from_messages(*resources)
    out: dict[str, list[any_pb2.Any]] = defaultdict(list)
    for type_url in snapshot.type_urls():
        out[type_url] = [res.packed for res in snapshot.resources(type_url).values()]
    return out


def assert_accepted(translation: Translation) -> None:
    """Our proxy's xDS converters accept every resource and the snapshot is consistent.

    Each converter raises ``ConfigError`` (with every problem) on anything the proxy would NACK.
    """
    Snapshot.from_messages(*translation.resources).check_consistent()
    groups = by_type(translation.resources)
    assert set(groups) <= {TYPE_CDS, TYPE_EDS, TYPE_LDS, TYPE_RDS}, set(groups)
    clusters = clusters_from_resources(groups[TYPE_CDS])
    assert len(clusters) == len(groups[TYPE_CDS])
    for resource in groups[TYPE_EDS]:
        endpoints_from_resource(resource)
    listeners = listeners_from_resources(groups[TYPE_LDS])
    assert len(listeners) == len(groups[TYPE_LDS])
    for resource in groups[TYPE_RDS]:
        route_table_from_resource(resource)
