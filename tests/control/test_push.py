"""ConfigBuilder: per-resource last good versions, withdrawal on delete, parse caching."""

from __future__ import annotations

from typing import Any

import yaml

from aeraki.control.push import CONTROL_METRICS, ConfigBuilder, ControlMetrics, parse_origin
from aeraki.control.sources.api import JsonDict, ResourceKey
from aeraki.control.translate import NodeInfo, translate

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
    # (Services are read since issue 3 item 3: see the Kubernetes tests below.)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "s"}}
    result = ConfigBuilder().build(
        [
            (("ConfigMap", "default", "c"), config_map, "k8s:configmaps@1"),
            (("Endpoints", "default", "s"), endpoints, "k8s:endpoints@1"),  # no Service: ignored
        ]
    )
    assert result.config.problems == ()
    assert result.config.resources() == ()


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


# --------------------------------------------------------------------------- Kubernetes Services

K8S_HOST = "dubbo.ns.svc.cluster.local"
K8S_PORT = "tcp-metaprotocol-dubbo-server"


def k8s_service(*ports: JsonDict, **meta: Any) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dubbo", "namespace": "ns", **meta},
        "spec": {
            "clusterIP": "10.96.0.10",
            "selector": {"app": "dubbo"},
            "ports": list(ports) or [{"name": K8S_PORT, "port": 20880}],
        },
    }


def k8s_endpoints(*ips: str, port: Any = 20881) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "dubbo", "namespace": "ns"},
        "subsets": [
            {
                "addresses": [{"ip": ip} for ip in ips],
                "ports": [{"name": K8S_PORT, "port": port}],
            }
        ],
    }


def k8s(*objs: JsonDict, version: int = 1) -> list[tuple[ResourceKey, JsonDict, str]]:
    """Store items of Kubernetes objects (and YAML texts), sorted by key as the store lists."""
    out = []
    for obj in objs:
        meta = obj["metadata"]
        plural = obj["kind"].lower() + ("" if obj["kind"] == "Endpoints" else "s")
        origin = f"k8s:{plural}@{version}"
        out.append(((obj["kind"], meta["namespace"], meta["name"]), obj, origin))
    return sorted(out, key=lambda item: item[0])


def k8s_router(subset: str = "") -> str:
    dest = f"{{host: {K8S_HOST}" + (f", subset: {subset}" if subset else "") + "}"
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: dubbo, namespace: ns}}
spec:
  hosts: [{K8S_HOST}]
  routes: [{{name: a, route: [{{destination: {dest}}}]}}]
"""


def synthetic(result: Any) -> Any:
    (se,) = [se for se in result.config.service_entries if se.meta.name == "synthetic-dubbo"]
    return se


def test_service_and_endpoints_become_a_synthetic_service_entry() -> None:
    router_item = items(k8s_router())
    result = ConfigBuilder().build(
        router_item + k8s(k8s_service(), k8s_endpoints("10.0.0.1", "10.0.0.2"))
    )
    assert result.config.problems == ()  # the MetaRouter finds its host: no warning
    se = synthetic(result)
    assert (se.meta.kind, se.meta.namespace) == ("ServiceEntry", "ns")
    assert se.meta.origin.file == "k8s:services@1"
    assert se.spec.hosts == (K8S_HOST,)
    assert se.spec.addresses == ("10.96.0.10",)
    assert se.spec.resolution == "STATIC"
    assert [(e.address, dict(e.ports)) for e in se.spec.endpoints] == [
        ("10.0.0.1", {K8S_PORT: 20881}),
        ("10.0.0.2", {K8S_PORT: 20881}),
    ]
    assert len(result.config.meta_routers) == 1


def test_service_without_endpoints_is_a_service_entry_without_endpoints() -> None:
    result = ConfigBuilder().build(k8s(k8s_service()))
    assert result.config.problems == ()
    assert synthetic(result).spec.endpoints == ()


def test_endpoints_update_changes_the_endpoints_and_only_then_reconverts() -> None:
    builder = ConfigBuilder()
    service = k8s_service()
    first = builder.build(k8s(service, k8s_endpoints("10.0.0.1")))
    same = builder.build(k8s(service, k8s_endpoints("10.0.0.1")))  # equal objects: cached
    assert synthetic(same) is synthetic(first)
    moved = builder.build(k8s(service, k8s_endpoints("10.0.0.7", port=30000)))
    assert [(e.address, dict(e.ports)) for e in synthetic(moved).spec.endpoints] == [
        ("10.0.0.7", {K8S_PORT: 30000})
    ]
    gone = builder.build(k8s(service))  # Endpoints deleted: the service stays, no endpoints
    assert synthetic(gone).spec.endpoints == ()


def test_deleted_service_withdraws_its_service_entry() -> None:
    builder = ConfigBuilder()
    builder.build(k8s(k8s_service(), k8s_endpoints("10.0.0.1")))
    result = builder.build(k8s(k8s_endpoints("10.0.0.1")))  # Endpoints left behind: ignored
    assert result.config.service_entries == ()
    assert result.config.problems == ()


def test_malformed_endpoints_keep_the_last_good_service_entry() -> None:
    builder = ConfigBuilder()
    builder.build(k8s(k8s_service(), k8s_endpoints("10.0.0.1")))
    result = builder.build(k8s(k8s_service(), k8s_endpoints("10.0.0.1", port="x")))
    assert [e.address for e in synthetic(result).spec.endpoints] == ["10.0.0.1"]
    assert result.fallbacks == (("Service", "ns", "dubbo"),)
    (error,) = result.config.errors
    assert error.format().startswith(
        "k8s:endpoints@1: error: Endpoints ns/dubbo: subsets[0].ports[0].port: expected an integer"
    )
    (note,) = result.config.warnings
    assert (note.kind, note.name) == ("Service", "dubbo")
    assert "k8s:services@1" in note.message
    assert "stays in force" in note.message


def test_malformed_new_service_is_reported_and_left_out() -> None:
    bad = k8s_service({"name": K8S_PORT, "port": 0})
    result = ConfigBuilder().build(k8s(bad))
    assert result.config.service_entries == ()
    (error,) = result.config.errors
    assert error.format().startswith("k8s:services@1: error: Service ns/dubbo: spec.ports[0].port")


def test_synthetic_service_entry_meets_the_same_cross_resource_checks() -> None:
    port = {"name": "tcp-metaprotocol-nosuch", "port": 7000}
    result = ConfigBuilder().build(k8s(k8s_service(port)))
    assert result.config.service_entries == ()
    (error,) = result.config.errors
    assert error.kind == "ServiceEntry"
    assert error.name == "synthetic-dubbo"
    assert error.field_path == "spec.ports[0].name"  # also the Service's field
    assert "can't find codec for protocol: nosuch" in error.message


def test_ports_not_named_for_aeraki_are_carried_and_ignored_by_translation() -> None:
    ports = ({"name": "http-web", "port": 80}, {"name": K8S_PORT, "port": 20880})
    result = ConfigBuilder().build(k8s(k8s_service(*ports), k8s_endpoints("10.0.0.1")))
    assert [p.name for p in synthetic(result).spec.ports] == ["http-web", K8S_PORT]
    translation = translate(result.config, NodeInfo(id="n"))
    names = {
        getattr(r, "name", "") or getattr(r, "cluster_name", "") for r in translation.resources
    }
    assert f"outbound|20880||{K8S_HOST}" in names
    assert not any("|80|" in n or n.endswith("_80") for n in names)
    assert translation.problems == ()


def test_a_real_service_entry_for_the_host_wins_over_the_synthetic_one() -> None:
    real = SE.replace("svc.ns.svc.cluster.local", K8S_HOST)
    builder = ConfigBuilder()
    result = builder.build(items(real) + k8s(k8s_service(), k8s_endpoints("10.0.0.1")))
    (se,) = result.config.service_entries
    assert se.meta.name == "svc"
    (warning,) = result.config.warnings
    assert warning.format().startswith("k8s:services@1: warning: Service ns/dubbo: ")
    assert "ServiceEntry ns/svc (/m/0.yaml:1)" in warning.message
    # the real one deleted: the Service is served again
    assert synthetic(builder.build(k8s(k8s_service()))).spec.hosts == (K8S_HOST,)


def test_a_real_service_entry_wins_by_short_host_name_and_even_when_invalid() -> None:
    short = SE.replace("svc.ns.svc.cluster.local", "dubbo")  # expanded in its namespace
    result = ConfigBuilder().build(items(short) + k8s(k8s_service()))
    assert [se.meta.name for se in result.config.service_entries] == ["svc"]
    invalid = SE.replace("svc.ns.svc.cluster.local", K8S_HOST).replace("9090", "0")
    result = ConfigBuilder().build(items(invalid) + k8s(k8s_service()))
    assert result.config.service_entries == ()  # the user's (broken) definition, not ours
    assert len(result.config.errors) == 1
    assert any("instead" in w.message for w in result.config.warnings)


def test_a_real_service_entry_named_like_the_synthetic_one_wins() -> None:
    named = SE.replace("{name: svc,", "{name: synthetic-dubbo,")
    result = ConfigBuilder().build(items(named) + k8s(k8s_service()))
    (se,) = result.config.service_entries
    assert se.spec.hosts == ("svc.ns.svc.cluster.local",)
    assert len(result.config.warnings) == 1


def test_cluster_domain_is_configurable() -> None:
    result = ConfigBuilder(cluster_domain="corp").build(k8s(k8s_service()))
    assert synthetic(result).spec.hosts == ("dubbo.ns.svc.corp",)


def pod(name: str, **labels: str) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": "dubbo", **labels}},
    }


def pod_endpoints(*pods: tuple[str, str]) -> JsonDict:
    """Endpoints whose addresses name their pods (``(ip, pod name)``), as the controller
    writes them."""
    eps = k8s_endpoints(*(ip for ip, _ in pods))
    for address, (_, name) in zip(eps["subsets"][0]["addresses"], pods, strict=True):
        address["targetRef"] = {"kind": "Pod", "name": name, "namespace": "ns"}
    return eps


K8S_DR = f"""\
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: dubbo, namespace: ns}}
spec:
  host: {K8S_HOST}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
"""


def subset_endpoints(result: Any, subset: str) -> list[str]:
    """Addresses of the subset's cluster, as a proxy with this config would get them."""
    resources = translate(result.config, NodeInfo(id="n")).resources
    name = f"outbound|20880|{subset}|{K8S_HOST}"
    found: list[Any] = [r for r in resources if getattr(r, "cluster_name", "") == name]
    (cla,) = found
    return [
        lb.endpoint.address.socket_address.address
        for locality in cla.endpoints
        for lb in locality.lb_endpoints
    ]


def test_pod_labels_select_kubernetes_endpoints_into_subsets() -> None:
    builder = ConfigBuilder()
    eps = pod_endpoints(("10.0.0.1", "a"), ("10.0.0.2", "b"))
    result = builder.build(
        items(K8S_DR, k8s_router("v1"))
        + k8s(k8s_service(), eps, pod("a", version="v1"), pod("b", version="v2"))
    )
    assert result.config.errors == ()
    assert subset_endpoints(result, "v1") == ["10.0.0.1"]
    assert subset_endpoints(result, "v2") == ["10.0.0.2"]
    # Relabelled pods move between subsets: the Service is re-converted from its Pods.
    relabelled = builder.build(
        items(K8S_DR, k8s_router("v1"))
        + k8s(k8s_service(), eps, pod("a", version="v2"), pod("b", version="v2"))
    )
    assert subset_endpoints(relabelled, "v1") == []
    assert subset_endpoints(relabelled, "v2") == ["10.0.0.1", "10.0.0.2"]
    # A deleted Pod leaves its address with the selector's labels only.
    gone = builder.build(
        items(K8S_DR, k8s_router("v1")) + k8s(k8s_service(), eps, pod("b", version="v2"))
    )
    assert [dict(e.labels) for e in synthetic(gone).spec.endpoints] == [
        {"app": "dubbo"},
        {"app": "dubbo", "version": "v2"},
    ]


def test_a_pod_change_reconverts_only_the_services_naming_it() -> None:
    other_service = {**k8s_service(), "metadata": {"name": "other", "namespace": "ns"}}
    other_eps = {
        **pod_endpoints(("10.0.0.9", "z")),
        "metadata": {"name": "other", "namespace": "ns"},
    }
    eps = pod_endpoints(("10.0.0.1", "a"))
    builder = ConfigBuilder()

    def build(*pods: JsonDict) -> tuple[Any, Any]:
        result = builder.build(k8s(k8s_service(), eps, other_service, other_eps, *pods))
        by_name = {se.meta.name: se for se in result.config.service_entries}
        return by_name["synthetic-dubbo"], by_name["synthetic-other"]

    dubbo, other = build(pod("a", version="v1"), pod("z", version="v1"))
    same_dubbo, same_other = build(pod("a", version="v1"), pod("z", version="v1"))
    assert (same_dubbo, same_other) == (dubbo, other)
    assert same_dubbo is dubbo  # equal objects: nothing re-converted
    new_dubbo, still_other = build(pod("a", version="v2"), pod("z", version="v1"))
    assert new_dubbo is not dubbo
    assert still_other is other
    assert dict(new_dubbo.spec.endpoints[0].labels)["version"] == "v2"
