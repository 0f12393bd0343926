"""Cross-resource checks, the snapshot's last-good rule, output format and ``main_validate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeraki.control.validation import format_problems, load_config, main_validate
from tests.control.helpers import DATA, lines, snapshot_of

H = "org.apache.dubbo.samples.basic.api.demoservice"
BASE = DATA / "metaprotocol" / "base"
MRS = DATA / "metaprotocol" / "metarouters"

SE = f"""\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {{name: se, namespace: ns}}
spec:
  hosts: [{H}]
  ports: [{{number: 20880, name: tcp-metaprotocol-dubbo}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: dr, namespace: ns}}
spec:
  host: {H}
  subsets: [{{name: v1, labels: {{version: v1}}}}]
"""


def _mr(subset: str, name: str = "mr", host: str = H) -> str:
    return f"""\
---
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: {name}, namespace: ns}}
spec:
  hosts: [{host}]
  routes:
    - route: [{{destination: {{host: {host}, subset: {subset}}}}}]
"""


@pytest.mark.parametrize("name", sorted(p.name for p in MRS.iterdir()))
def test_every_e2e_metarouter_is_valid_with_the_base_manifests(name: str) -> None:
    snap = load_config([BASE, MRS / name])
    assert snap.errors == ()
    assert len(snap.meta_routers) == 1


def test_dangling_subset_is_an_error_and_the_router_is_skipped() -> None:
    snap = snapshot_of(SE + _mr("v9"))
    assert lines(snap.errors) == [
        "test.yaml:21: error: MetaRouter ns/mr: spec.routes[0].route[0].destination.subset: "
        'subset "v9" is not defined in DestinationRule ns/dr (subsets: v1)'
    ]
    assert snap.meta_routers == ()
    assert [r.meta.name for r in snap.service_entries] == ["se"]
    assert [r.meta.name for r in snap.destination_rules] == ["dr"]


def test_subset_without_any_destination_rule() -> None:
    snap = snapshot_of(SE.split("---")[0] + _mr("v1"))
    assert [p.message for p in snap.errors] == [
        f'subset "v1" is not defined: no DestinationRule for host "{H}"'
    ]


def test_mirror_subset_is_checked_too() -> None:
    text = SE + _mr("v1") + "      mirror: {host: " + H + ", subset: v2}\n"
    assert [(p.field_path, p.message) for p in snapshot_of(text).errors] == [
        (
            "spec.routes[0].mirror.subset",
            'subset "v2" is not defined in DestinationRule ns/dr (subsets: v1)',
        )
    ]


def test_host_without_service_entry_is_a_warning() -> None:
    snap = snapshot_of(SE + _mr("", host="other.ns.svc.cluster.local"))
    assert snap.errors == ()
    assert [(p.field_path, p.message) for p in snap.warnings] == [
        (
            "spec.hosts[0]",
            'no ServiceEntry has "other.ns.svc.cluster.local" as hosts[0], so this MetaRouter '
            "routes nothing (hosts match by exact string, §2.1; Kubernetes Services are not "
            "checked here)",
        )
    ]
    assert len(snap.meta_routers) == 1


def test_duplicate_names_error_names_both_origins(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SE + _mr("v1"))
    (tmp_path / "b.yaml").write_text("# second copy\n" + _mr("v1").lstrip("-\n"))
    snap = load_config([tmp_path])
    assert lines(snap.errors) == [
        f"{tmp_path / 'b.yaml'}:4: error: MetaRouter ns/mr: metadata.name: duplicate MetaRouter "
        f"ns/mr: first defined at {tmp_path / 'a.yaml'}:15; this definition is ignored"
    ]
    (mr,) = snap.meta_routers
    assert mr.meta.origin.file == str(tmp_path / "a.yaml")


def test_two_routers_for_one_host_warn() -> None:
    snap = snapshot_of(SE + _mr("v1") + _mr("v1", name="mr2"))
    assert [p.message for p in snap.warnings] == [
        f'MetaRouter ns/mr (test.yaml:15) already routes "{H}"; this one is ignored'
    ]


def test_codec_lookup_for_metaprotocol_ports() -> None:
    text = SE.split("---")[0].replace("tcp-metaprotocol-dubbo", "tcp-metaprotocol-Dubbo")
    text += "---\n" + SE.split("---")[0].replace("name: se", "name: se2").replace(
        "tcp-metaprotocol-dubbo", "tcp-metaprotocol-videopacket"
    ).replace(H, "v.ns")
    snap = snapshot_of(text)
    assert [(p.name, p.field_path, p.message) for p in snap.errors] == [
        (
            "se",
            "spec.ports[0].name",
            "can't find codec for protocol: Dubbo (application protocols are case-sensitive: "
            'did you mean "dubbo"?)',
        ),
        (
            "se2",
            "spec.ports[0].name",
            "can't find codec for protocol: videopacket (define an ApplicationProtocol for it)",
        ),
    ]
    assert snap.service_entries == ()
    with_ap = text + (
        "---\napiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: ApplicationProtocol\n"
        "metadata: {name: videopacket}\n"
        "spec: {protocol: videopacket, codec: aeraki.meta_protocol.codec.videopacket}\n"
    )
    assert [r.meta.name for r in snapshot_of(with_ap).service_entries] == ["se2"]


def test_virtual_service_dangling_subset_and_short_dr_host() -> None:
    snap = load_config([DATA / "thrift"])
    assert snap.problems == ()
    bad = (DATA / "thrift" / "thrift.yaml").read_text().replace("subset: v2", "subset: v3")
    assert [(p.kind, p.field_path) for p in snapshot_of(bad).errors] == [
        ("VirtualService", "spec.http[0].route[1].destination.subset")
    ]


def test_last_good_bad_metarouter_next_to_good_service_entries() -> None:
    snap = load_config([DATA / "bad" / "broken.yaml", BASE, MRS / "metarouter-v1.yaml"])
    names = [r.meta.name for r in snap.service_entries]
    assert names == ["good-before", "good-after", "dubbo-demoservice", "dubbo-secondservice"]
    assert [r.meta.name for r in snap.meta_routers] == ["test-metaprotocol-route"]
    assert len(snap.errors) == 1  # the broken YAML document only
    broken_semantics = snapshot_of(SE + _mr("v1").replace("subset: v1", "subset: v1}, weight: 7"))
    assert broken_semantics.meta_routers == ()
    assert [r.meta.name for r in broken_semantics.service_entries] == ["se"]


def test_format_problems_one_line_each() -> None:
    snap = snapshot_of(SE + _mr("v9") + "---\nkind: Secret\napiVersion: v1\n")
    assert format_problems(snap.problems).splitlines() == [
        "test.yaml:21: error: MetaRouter ns/mr: spec.routes[0].route[0].destination.subset: "
        'subset "v9" is not defined in DestinationRule ns/dr (subsets: v1)',
        'test.yaml:23: warning: kind "Secret" (v1) is not read by Aeraki; skipped',
    ]


def test_main_validate_prints_errors_then_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_validate([str(DATA / "bad"), str(BASE)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Errors (1):"
    assert out[1].endswith(
        "broken.yaml:11:5: error: invalid YAML: did not find expected ',' or "
        "'}' (while parsing a flow mapping started at line 10)"
    )
    assert out[2:5] == ["", "Warnings (2):", out[4]]
    assert 'kind "ConfigMap"' in out[4]
    assert out[-1] == "7 valid resources, 1 error, 2 warnings"


def test_main_validate_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_validate([str(DATA / "thrift")]) == 0
    assert capsys.readouterr().out == "3 valid resources, 0 errors, 0 warnings\n"
