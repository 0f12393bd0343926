"""ConfigBuilder: per-resource last good versions, withdrawal on delete, parse caching."""

from __future__ import annotations

from typing import Any

import yaml

from aeraki.control.push import CONTROL_METRICS, ConfigBuilder, ControlMetrics, parse_origin
from aeraki.control.sources.api import JsonDict, ResourceKey

SE = """\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: svc, namespace: ns}
spec:
  hosts: [svc.ns.svc.cluster.local]
  ports: [{number: 9090, name: tcp-metaprotocol-thrift-x, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
"""
DR = """\
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: svc, namespace: ns}
spec:
  host: svc.ns.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""


def router(subset: str, weight: Any = None) -> str:
    extra = "" if weight is None else f", weight: {weight}"
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: r, namespace: ns}}
spec:
  hosts: [svc.ns.svc.cluster.local]
  routes: [{{name: a, route: [{{destination: {{host: svc.ns.svc.cluster.local, subset: {subset}}}{extra}}}]}}]
"""  # noqa: E501


def items(*texts: str) -> list[tuple[ResourceKey, JsonDict, str]]:
    out = []
    for i, text in enumerate(texts):
        obj = yaml.safe_load(text)
        meta = obj["metadata"]
        out.append(((obj["kind"], meta["namespace"], meta["name"]), obj, f"/m/{i}.yaml:1"))
    return sorted(out, key=lambda item: item[0])


def subset_of(builder_result: Any) -> str:
    (mr,) = builder_result.config.meta_routers
    return str(mr.spec.routes[0].route[0].destination.subset)


def test_valid_config_has_no_problems() -> None:
    result = ConfigBuilder().build(items(SE, DR, router("v1")))
    assert result.config.problems == ()
    assert len(result.config.resources()) == 3
    assert result.fallbacks == ()


def test_invalid_edit_keeps_last_good_version_with_a_note() -> None:
    builder = ConfigBuilder()
    builder.build(items(SE, DR, router("v1")))
    result = builder.build(items(SE, DR, router("v9")))
    assert subset_of(result) == "v1"
    assert result.fallbacks == (("MetaRouter", "ns", "r"),)
    errors = [p.format() for p in result.config.errors]
    assert len(errors) == 1
    assert 'subset "v9" is not defined' in errors[0]
    assert errors[0].startswith("/m/2.yaml:1: error: MetaRouter ns/r")
    (note,) = result.config.warnings
    assert "stays in force" in note.message
    # a field-level error (wrong type) falls back the same way
    result = builder.build(items(SE, DR, router("v2", weight='"lots"')))
    assert subset_of(result) == "v1"
    # fixed: the new version is in force and becomes the last good one
    result = builder.build(items(SE, DR, router("v2")))
    assert subset_of(result) == "v2"
    assert result.config.problems == ()
    result = builder.build(items(SE, DR, router("v9")))
    assert subset_of(result) == "v2"


def test_never_valid_resource_is_left_out() -> None:
    result = ConfigBuilder().build(items(SE, DR, router("v9")))
    assert result.config.meta_routers == ()
    assert result.fallbacks == ()
    assert len(result.config.errors) == 1


def test_last_good_that_no_longer_fits_is_withdrawn() -> None:
    builder = ConfigBuilder()
    builder.build(items(SE, DR, router("v2")))
    dr_v1_only = DR.replace(", {name: v2, labels: {version: v2}}", "")
    result = builder.build(items(SE, dr_v1_only, router("v2")))  # the router itself unchanged
    assert result.config.meta_routers == ()
    assert any('subset "v2" is not defined' in p.message for p in result.config.errors)
    # edited to something invalid while its last good version stopped fitting: withdrawn
    builder = ConfigBuilder()
    builder.build(items(SE, DR, router("v2")))
    result = builder.build(items(SE, dr_v1_only, router("v9")))
    assert result.config.meta_routers == ()
    assert result.fallbacks == ()
    assert any("withdrawn" in p.message for p in result.config.warnings)


def test_deleted_resource_is_withdrawn_and_forgotten() -> None:
    builder = ConfigBuilder()
    builder.build(items(SE, DR, router("v1")))
    assert builder.build(items(SE, DR)).config.meta_routers == ()
    # its last good version is gone too: an invalid re-creation does not resurrect it
    assert builder.build(items(SE, DR, router("v9"))).config.meta_routers == ()


def test_unchanged_objects_are_not_reparsed() -> None:
    builder = ConfigBuilder()
    listed = items(SE, DR, router("v1"))
    first = builder.build(listed)
    second = builder.build(listed)
    assert first.config.service_entries[0] is second.config.service_entries[0]


def test_kinds_the_model_does_not_read_are_skipped() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    result = ConfigBuilder().build([(("Service", "default", "s"), service, "k8s:services@1")])
    assert result.config.problems == ()


def test_parse_origin() -> None:
    assert (parse_origin("/a/b.yaml:12").file, parse_origin("/a/b.yaml:12").line) == (
        "/a/b.yaml",
        12,
    )
    assert parse_origin("k8s:metarouters@123").file == "k8s:metarouters@123"
    assert parse_origin("k8s:metarouters@123").line is None


def test_every_metric_is_declared_once_with_help() -> None:
    names = [m.name for m in CONTROL_METRICS]
    assert len(names) == len(set(names))
    assert all(m.help and m.kind in ("counter", "gauge") for m in CONTROL_METRICS)
    assert list(ControlMetrics().snapshot()) == names
