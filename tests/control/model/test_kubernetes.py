"""A Kubernetes Service (+ Endpoints) → Istio's synthetic ServiceEntry (reference §3.1)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aeraki.control.model import Origin, Parsed, ServicePort, WorkloadEntry
from aeraki.control.model.kubernetes import (
    EXPORT_TO_ANNOTATION,
    pod_labels,
    pod_refs,
    service_entry_from_service,
    service_host,
    synthetic_name,
)

JsonDict = dict[str, Any]
PORT = "tcp-metaprotocol-dubbo-server"


def service(**spec: Any) -> JsonDict:
    body: JsonDict = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "dubbo",
            "namespace": "ns",
            "labels": {"team": "a"},
            "annotations": {"interface": "org.Demo"},
            "resourceVersion": "17",
        },
        "spec": {
            "clusterIP": "10.96.0.10",
            "selector": {"app": "dubbo"},
            "ports": [{"name": PORT, "port": 20880, "targetPort": 20881, "protocol": "TCP"}],
        },
    }
    body["spec"].update(spec)
    return body


def endpoints(*subsets: JsonDict) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "dubbo", "namespace": "ns"},
        "subsets": list(subsets),
    }


def subset(*ips: str, ports: dict[str, int] | None = None, **extra: Any) -> JsonDict:
    ports = {PORT: 20881} if ports is None else ports
    out: JsonDict = {
        "addresses": [
            {"ip": ip, "targetRef": {"kind": "Pod", "name": f"pod-{i}"}} for i, ip in enumerate(ips)
        ],
        "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports.items()],
    }
    out.update(extra)
    return out


def convert(svc: Any, eps: Any = None, **kwargs: Any) -> Parsed:
    kwargs.setdefault("service_origin", Origin(file="k8s:services@17"))
    kwargs.setdefault("endpoints_origin", Origin(file="k8s:endpoints@18"))
    return service_entry_from_service(svc, eps, **kwargs)


def valid(svc: Any, eps: Any = None, **kwargs: Any) -> Any:
    parsed = convert(svc, eps, **kwargs)
    assert parsed.problems == ()
    assert parsed.is_valid
    assert parsed.resource is not None
    return parsed.resource


def errors(parsed: Parsed) -> list[str]:
    return [p.format() for p in parsed.problems if p.is_error]


# --------------------------------------------------------------------------- the Service


def test_cluster_ip_service_becomes_a_static_mesh_internal_service_entry() -> None:
    se = valid(service())
    assert se.meta.kind == "ServiceEntry"
    assert (se.meta.namespace, se.meta.name) == ("ns", "synthetic-dubbo")
    assert se.meta.labels == {"team": "a"}
    assert se.meta.annotations == {"interface": "org.Demo"}  # native Dubbo reads it (§3.2)
    assert se.meta.resource_version == "17"
    assert se.meta.origin == Origin(file="k8s:services@17")
    spec = se.spec
    assert spec.hosts == ("dubbo.ns.svc.cluster.local",)
    assert spec.addresses == ("10.96.0.10",)
    assert spec.ports == (ServicePort(number=20880, name=PORT, protocol="TCP", target_port=20881),)
    assert (spec.resolution, spec.location) == ("STATIC", "MESH_INTERNAL")
    assert spec.endpoints == ()  # no Endpoints (yet): no endpoints
    assert spec.workload_selector == {"app": "dubbo"}
    assert spec.export_to == ()


def test_names_and_domain() -> None:
    assert synthetic_name("x") == "synthetic-x"
    assert service_host("x", "y") == "x.y.svc.cluster.local"
    assert valid(service(), domain="corp.example").spec.hosts == ("dubbo.ns.svc.corp.example",)


def test_namespace_from_the_source_key_else_metadata_else_default() -> None:
    assert valid(service(), namespace="other").meta.namespace == "other"
    body = service()
    del body["metadata"]["namespace"]
    se = valid(body)
    assert se.meta.namespace == "default"
    assert se.spec.hosts == ("dubbo.default.svc.cluster.local",)


def test_every_port_is_carried_in_order_with_numeric_or_named_target_ports() -> None:
    ports = [
        {"name": "http-web", "port": 80, "targetPort": 8080},  # not Aeraki's: still carried
        {"name": PORT, "port": 20880, "targetPort": "dubbo"},  # named: number unknown here
        {"name": "tcp-metaprotocol-thrift", "port": 9090},  # no targetPort: same as port
        {"name": "udp-dns", "port": 53, "protocol": "UDP", "targetPort": 53.0},
    ]
    spec = valid(service(ports=ports)).spec
    assert spec.ports == (
        ServicePort(number=80, name="http-web", protocol="TCP", target_port=8080),
        ServicePort(number=20880, name=PORT, protocol="TCP", target_port=0),
        ServicePort(number=9090, name="tcp-metaprotocol-thrift", protocol="TCP", target_port=0),
        ServicePort(number=53, name="udp-dns", protocol="UDP", target_port=53),
    )


def test_an_unnamed_single_port_is_carried_without_a_problem() -> None:
    spec = valid(service(ports=[{"port": 8080}])).spec
    assert spec.ports == (ServicePort(number=8080, protocol="TCP"),)


def test_dual_stack_cluster_ips() -> None:
    spec = valid(service(clusterIPs=["10.96.0.10", "fd00::a"])).spec
    assert spec.addresses == ("10.96.0.10", "fd00::a")


@pytest.mark.parametrize("field", ["clusterIP", "clusterIPs"])
def test_headless_service_has_no_address_and_resolution_none(field: str) -> None:
    value: Any = "None" if field == "clusterIP" else ["None"]
    svc = service(**{field: value})
    eps = endpoints(subset("10.0.0.1", "10.0.0.2"))
    spec = valid(svc, eps).spec
    assert spec.addresses == ()
    assert spec.resolution == "NONE"
    assert [e.address for e in spec.endpoints] == ["10.0.0.1", "10.0.0.2"]


def test_service_without_cluster_ip_yet_is_static_without_address() -> None:
    body = service()
    del body["spec"]["clusterIP"]
    spec = valid(body).spec
    assert (spec.addresses, spec.resolution) == ((), "STATIC")


def test_external_name_service_resolves_by_dns() -> None:
    svc = service(type="ExternalName", externalName="db.example.com", clusterIP="")
    se = valid(svc, endpoints(subset("10.0.0.1")))  # an ExternalName has no Endpoints: ignored
    spec = se.spec
    assert (spec.resolution, spec.location, spec.addresses) == ("DNS", "MESH_EXTERNAL", ())
    assert spec.endpoints == (WorkloadEntry(address="db.example.com"),)


def test_service_without_selector_has_no_workload_selector() -> None:
    body = service()
    del body["spec"]["selector"]
    se = valid(body, endpoints(subset("10.0.0.1")))
    assert se.spec.workload_selector is None
    assert se.spec.endpoints[0].labels == {}


def test_service_without_spec_is_an_empty_service_entry() -> None:
    spec = valid({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}).spec
    assert (spec.hosts, spec.ports, spec.addresses) == (("s.default.svc.cluster.local",), (), ())


@pytest.mark.parametrize(
    ("annotation", "export_to"),
    [
        (".", (".",)),
        ("*", ("*",)),
        ("~", ("~",)),
        ("ns, other ,", ("ns", "other")),
    ],
)
def test_export_to_annotation(annotation: str, export_to: tuple[str, ...]) -> None:
    body = service()
    body["metadata"]["annotations"][EXPORT_TO_ANNOTATION] = annotation
    assert valid(body).spec.export_to == export_to


def test_bad_export_to_annotation_is_an_error_on_the_annotation() -> None:
    body = service()
    body["metadata"]["annotations"][EXPORT_TO_ANNOTATION] = "*, Bad_Name"
    found = errors(convert(body))
    assert found
    assert all(
        e.startswith(
            'k8s:services@17: error: Service ns/dubbo: metadata.annotations["networking.istio.io'
            '/exportTo"]: '
        )
        for e in found
    )


# --------------------------------------------------------------------------- the Endpoints


def test_endpoints_one_per_ready_address_of_every_subset() -> None:
    eps = endpoints(
        subset("10.0.0.1", "10.0.0.2", notReadyAddresses=[{"ip": "10.0.0.9"}]),
        subset("10.0.1.1", ports={PORT: 30000}),
    )
    spec = valid(service(), eps).spec
    assert spec.endpoints == (
        WorkloadEntry(address="10.0.0.1", ports={PORT: 20881}, labels={"app": "dubbo"}),
        WorkloadEntry(address="10.0.0.2", ports={PORT: 20881}, labels={"app": "dubbo"}),
        WorkloadEntry(address="10.0.1.1", ports={PORT: 30000}, labels={"app": "dubbo"}),
    )


def test_endpoints_with_only_not_ready_addresses_give_no_endpoint() -> None:
    eps = endpoints({"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 1}]})
    assert valid(service(), eps).spec.endpoints == ()
    assert valid(service(), endpoints()).spec.endpoints == ()
    assert valid(service(), {"metadata": {"name": "dubbo"}}).spec.endpoints == ()


def test_endpoint_ports_map_by_service_port_name_only() -> None:
    ports = [{"name": PORT, "port": 20880}, {"name": "http-admin", "port": 80}]
    eps = endpoints(subset("10.0.0.1", ports={PORT: 20881, "http-admin": 8080, "stale": 1}))
    (entry,) = valid(service(ports=ports), eps).spec.endpoints
    assert entry.ports == {PORT: 20881, "http-admin": 8080}
    # a single unnamed port: nothing to map by (translation falls back to targetPort/number)
    eps = endpoints(subset("10.0.0.1", ports={"": 8080}))
    (entry,) = valid(service(ports=[{"port": 80, "targetPort": 8080}]), eps).spec.endpoints
    assert entry.ports == {}


def test_endpoint_labels_are_the_service_selector_without_pods() -> None:
    """Endpoints carry no pod labels: without the Pods, the selector is all that is known."""
    (entry,) = valid(
        service(selector={"app": "dubbo", "tier": "be"}), endpoints(subset("10.0.0.1"))
    ).spec.endpoints
    assert entry.labels == {"app": "dubbo", "tier": "be"}


def test_the_conversion_does_not_modify_its_input() -> None:
    svc, eps = service(), endpoints(subset("10.0.0.1"))
    before = copy.deepcopy((svc, eps))
    convert(svc, eps)
    assert (svc, eps) == before


# --------------------------------------------------------------------------- malformed objects


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("text", 'k8s:services@17: error: Service: a Service must be a mapping, got string "text"'),
        ({"spec": {}}, "k8s:services@17: error: Service: metadata: required field is missing"),
        ({"metadata": {}}, "Service: metadata.name: required field is missing"),
        ({"metadata": {"name": 5}}, "metadata.name: expected a string, got number 5"),
        ({"metadata": {"name": "s"}, "spec": []}, "Service default/s: spec: expected a mapping"),
    ],
)
def test_unusable_service_is_an_error_without_resource(body: Any, message: str) -> None:
    parsed = convert(body)
    assert parsed.resource is None
    assert not parsed.is_valid
    assert any(message in e for e in errors(parsed)), errors(parsed)


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"ports": [{"name": "a"}]}, "spec.ports[0].port", "required field"),
        ({"ports": [{"port": 0}]}, "spec.ports[0].port", "0 is out of range 1..65535"),
        ({"ports": [{"port": 70000}]}, "spec.ports[0].port", "out of range"),
        ({"ports": [{"port": "80"}]}, "spec.ports[0].port", 'expected an integer, got string "80"'),
        ({"ports": [{"port": 80, "targetPort": True}]}, "spec.ports[0].targetPort", "port name"),
        ({"ports": [{"port": 80, "targetPort": 0}]}, "spec.ports[0].targetPort", "out of range"),
        ({"ports": [{"port": 80, "name": 1}]}, "spec.ports[0].name", "expected a string"),
        ({"ports": "80"}, "spec.ports", "expected a list"),
        ({"ports": [None]}, "spec.ports[0]", "may not be null"),
        ({"ports": [80]}, "spec.ports[0]", "expected a mapping"),
        (
            {"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]},
            "spec.ports[1].port",
            "port 80 is already defined by spec.ports[0]",
        ),
        (
            {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]},
            "spec.ports[1].name",
            'port name "a" is also spec.ports[0]',
        ),
        (
            {"ports": [{"port": 80, "name": "tcp-metaprotocol"}]},
            "spec.ports[0].name",
            "has no application protocol",
        ),
        ({"clusterIP": "not-an-ip"}, "spec.clusterIP", '"not-an-ip" is not an IP address'),
        ({"clusterIPs": ["10.0.0.1", "x"]}, "spec.clusterIPs[1]", '"x" is not an IP address'),
        ({"selector": {"app": 1}}, "spec.selector.app", "expected a string"),
        ({"type": "ExternalName", "clusterIP": ""}, "spec.externalName", "required"),
    ],
)
def test_malformed_service_field_is_an_error_at_its_path(
    spec: JsonDict, path: str, message: str
) -> None:
    parsed = convert(service(**spec))
    found = errors(parsed)
    prefix = f"k8s:services@17: error: Service ns/dubbo: {path}: "
    assert any(e.startswith(prefix) and message in e for e in found), found
    assert not parsed.is_valid  # left out of the snapshot (or its last good version kept)


@pytest.mark.parametrize(
    ("eps", "path", "message"),
    [
        ("x", "", "an Endpoints object must be a mapping"),
        ({"subsets": {}}, "subsets", "expected a list"),
        ({"subsets": [1]}, "subsets[0]", "expected a mapping"),
        ({"subsets": [{"addresses": [{}]}]}, "subsets[0].addresses[0].ip", "required"),
        ({"subsets": [{"addresses": [{"ip": "pod-a"}]}]}, "subsets[0].addresses[0].ip", "IP"),
        ({"subsets": [{"addresses": ["1.2.3.4"]}]}, "subsets[0].addresses[0]", "mapping"),
        ({"subsets": [{"ports": [{"name": PORT}]}]}, "subsets[0].ports[0].port", "required"),
        ({"subsets": [{"ports": [{"port": -1}]}]}, "subsets[0].ports[0].port", "out of range"),
    ],
)
def test_malformed_endpoints_are_errors_on_the_endpoints(eps: Any, path: str, message: str) -> None:
    parsed = convert(service(), eps)
    found = errors(parsed)
    where = f"{path}: " if path else ""
    prefix = f"k8s:endpoints@18: error: Endpoints ns/dubbo: {where}"
    assert any(e.startswith(prefix) and message in e for e in found), found
    assert not parsed.is_valid
    assert parsed.resource is not None  # the Service part is fine; the whole is not valid


def test_every_problem_is_reported_at_once() -> None:
    svc = service(ports=[{"port": 0}, {"port": 80, "name": "tcp-metaprotocol"}], clusterIP="x")
    eps = endpoints({"addresses": [{"ip": "nope"}]})
    found = errors(convert(svc, eps))
    assert len(found) == 4
    assert [e.split(": ")[0] for e in found] == ["k8s:services@17"] * 3 + ["k8s:endpoints@18"]


# --------------------------------------------------------------------------- Pod labels


def test_endpoint_labels_are_their_pods_labels_joined_by_target_ref() -> None:
    """``subset()`` names the pods pod-0, pod-1… (no namespace: the Endpoints' own)."""
    eps = endpoints(subset("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    eps["subsets"][0]["addresses"][2]["targetRef"] = {"kind": "Node", "name": "pod-2"}
    pods = {
        ("ns", "pod-0"): {"app": "dubbo", "version": "v1"},
        ("ns", "pod-1"): {"app": "dubbo", "version": "v2"},
        ("ns", "pod-2"): {"app": "dubbo", "version": "v3"},  # not referenced as a Pod
    }
    entries = valid(service(), eps, pods=pods).spec.endpoints
    assert [(e.address, dict(e.labels)) for e in entries] == [
        ("10.0.0.1", {"app": "dubbo", "version": "v1"}),
        ("10.0.0.2", {"app": "dubbo", "version": "v2"}),
        ("10.0.0.3", {"app": "dubbo"}),  # no Pod targetRef: the selector's labels
    ]


def test_unknown_pods_and_other_namespaces_fall_back_to_the_selector() -> None:
    eps = endpoints(subset("10.0.0.1", "10.0.0.2"))
    eps["subsets"][0]["addresses"][1]["targetRef"]["namespace"] = "other"
    pods = {("ns", "pod-1"): {"version": "wrong-namespace"}, ("other", "pod-1"): {"v": "2"}}
    first, second = valid(service(), eps, pods=pods).spec.endpoints
    assert dict(first.labels) == {"app": "dubbo"}  # pod-0 is not known (yet)
    assert dict(second.labels) == {"v": "2"}  # the targetRef's namespace, not the Service's


def test_pod_refs_and_pod_labels_read_raw_objects_leniently() -> None:
    eps = endpoints(subset("10.0.0.1", "10.0.0.2"), {"addresses": [{"ip": "10.0.0.3"}, "x"]})
    eps["subsets"].append("not a subset")
    eps["subsets"][0]["addresses"][1]["targetRef"]["namespace"] = "other"
    assert pod_refs(eps, "ns") == (("ns", "pod-0"), ("other", "pod-1"))
    assert pod_refs(None, "ns") == ()
    assert pod_labels({"metadata": {"name": "p", "labels": {"a": "b", "n": 1}}}) == {"a": "b"}
    assert pod_labels({"metadata": {"name": "p"}}) == {}
    assert pod_labels({"metadata": {"labels": "oops"}}) is None
    assert pod_labels("oops") is None
