"""Incremental translation (translate/memo.py): a memoised translation is byte for byte the
fresh one, whatever changed, and only what changed is rebuilt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aeraki.control.model import ConfigSnapshot
from aeraki.control.push import ConfigBuilder
from aeraki.control.sources.files import parse_manifests
from aeraki.control.translate import NodeInfo, Translation, TranslationMemo, translate
from aeraki.control.xds.snapshot import LISTENER_TYPE, ROUTE_TYPE, Snapshot
from tests.control.translate.helpers import DATA, to_json
from tests.control.translate.test_golden import SCENARIOS

DEMO = "org.apache.dubbo.samples.basic.api.demoservice"
SECOND = "org.apache.dubbo.samples.basic.api.secondservice"
FILES = (
    "translate/services.yaml",
    "metaprotocol/base/destinationrule.yaml",
    "metaprotocol/metarouters/metarouter-v1.yaml",
    "translate/rate-limit-server.yaml",
)


def wire(translation: Translation) -> list[bytes]:
    return [m.SerializeToString(deterministic=True) for m in translation.resources]


def assert_same(memoised: Translation, config: ConfigSnapshot, node: NodeInfo) -> None:
    fresh = translate(config, node)
    assert wire(memoised) == wire(fresh)
    assert memoised.problems == fresh.problems


class Manifests:
    """Manifests held as a store would hold them, built by one ConfigBuilder (which keeps
    unchanged resources the same objects, as the control plane does)."""

    def __init__(self, *names: str) -> None:
        self.builder = ConfigBuilder()
        self.objects: dict[tuple[str, str, str], Any] = {}
        for name in names:
            self.put((DATA / name).read_text(), name)

    def put(self, text: str, origin: str = "edit.yaml") -> None:
        for doc in parse_manifests(text).docs:
            self.objects[doc.key] = (doc.obj, f"{origin}:{doc.line}")

    def drop(self, kind: str, namespace: str, name: str) -> None:
        del self.objects[(kind, namespace, name)]

    def config(self) -> ConfigSnapshot:
        items = [(k, o, origin) for k, (o, origin) in sorted(self.objects.items())]
        return self.builder.build(items).config


def router(subset: str, name: str = "test-metaprotocol-route", host: str = DEMO) -> str:
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: {name}, namespace: metaprotocol}}
spec:
  hosts: [{host}]
  routes:
    - name: r
      route: [{{destination: {{host: {DEMO}, subset: {subset}}}}}]
      timeout: 1s
"""


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"NAMESPACE": "team", "SERVICES": [SECOND]},
        {"AERAKI_DATA_PLANE": "meta-protocol-proxy"},
        {"LABELS": {"app": "dubbo-sample-provider", "version": "v1"}, "INSTANCE_IPS": "127.0.0.11"},
    ],
)
def test_every_change_gives_the_fresh_translation_and_rebuilds_only_what_changed(
    metadata: dict[str, Any],
) -> None:
    node = NodeInfo(id="n", metadata=metadata)
    mesh = Manifests(*FILES)
    memo = TranslationMemo()
    assert_same(translate(mesh.config(), node, memo=memo), mesh.config(), node)
    built = memo.misses
    assert built > 0

    steps: list[tuple[str, Any]] = [
        ("unchanged", lambda: None),
        ("MetaRouter edited", lambda: mesh.put(router("v2"))),
        ("MetaRouter for a second host", lambda: mesh.put(router("v1", "two", SECOND))),
        ("MetaRouter deleted", lambda: mesh.drop("MetaRouter", "metaprotocol", "two")),
        (
            "DestinationRule edited (everything is rebuilt)",
            lambda: mesh.put(
                (DATA / "metaprotocol/base/destinationrule.yaml")
                .read_text()
                .replace("name: batchjob", "name: batch")
            ),
        ),
        ("unchanged again", lambda: None),
    ]
    for what, change in steps:
        change()
        config = mesh.config()
        memoised = translate(config, node, memo=memo)
        assert_same(memoised, config, node)
        if what.startswith("unchanged"):
            assert memo.misses == 0, what
        elif what.startswith("MetaRouter"):
            # the pieces of the edited host: plans, listener, routes (+ a cluster its new
            # route needs); none for a node that does not see the host
            assert memo.misses <= 4, (what, memo.misses, built)
            assert memo.hits > 0, what
        else:
            assert memo.hits == 0, what


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_scenarios_memoised_twice_match_their_goldens(name: str) -> None:
    """Problems a piece reported are reported again when it is reused."""
    scenario = SCENARIOS[name]
    node = NodeInfo(id=f"test~{name}", metadata=scenario.metadata)
    config = scenario.config()
    memo = TranslationMemo()
    first = translate(config, node, scenario.options, memo)
    again = translate(config, node, scenario.options, memo)
    assert memo.misses == 0
    assert to_json(again) == to_json(first)
    assert (Path(__file__).parent / "golden" / f"{name}.json").read_text() == to_json(again)


def test_a_snapshot_reuses_the_resources_of_unchanged_messages() -> None:
    mesh = Manifests(*FILES[:3])
    memo = TranslationMemo()
    node = NodeInfo(id="n")
    before = Snapshot.from_messages(*translate(mesh.config(), node, memo=memo).resources)
    mesh.put(router("v2"))
    after = Snapshot.from_messages(
        *translate(mesh.config(), node, memo=memo).resources, previous=before
    )
    fresh = Snapshot.from_messages(*translate(mesh.config(), node).resources)
    assert after == fresh  # same content versions
    rebuilt = {
        (t, n)
        for t in after.type_urls()
        for n, res in after.resources(t).items()
        if before.resources(t).get(n) is not res
    }
    # The edited service's routes, and its listener (it depends on the MetaRouter's rate
    # limits): re-serialised, but only the routes' content, hence version, changed.
    assert rebuilt == {(ROUTE_TYPE, f"{DEMO}_20880"), (LISTENER_TYPE, "127.0.0.1_20880")}
    assert after.version(LISTENER_TYPE) == before.version(LISTENER_TYPE)
    assert after.version(ROUTE_TYPE) != before.version(ROUTE_TYPE)
    after.check_consistent()
