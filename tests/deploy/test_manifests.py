"""The Kubernetes deployment in deploy/kubernetes, validated without a cluster (issue 3, item 10).

No API server runs here, so each object is checked against what one would check:
- every document against the real Kubernetes OpenAPI schemas (``kubernetes-validate``, strict:
  unknown fields are errors) for the oldest supported Kubernetes (1.30) and the newest the
  package knows;
- the CRDs against the structural-schema rules the API server enforces for
  ``apiextensions.k8s.io/v1``, and their schemas against real MetaRouter/ApplicationProtocol
  YAML (every one the control plane's own validator accepts must be accepted) and broken ones;
- the references between objects (service account, role bindings, selectors, named ports,
  probes, flags) and that RBAC covers every kind the control plane reads and writes;
- ``kubectl kustomize`` (offline) renders exactly the objects of the files.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aeraki import cli
from aeraki.control.model.kinds import KINDS, parse_resource
from aeraki.control.sources.api import DEFAULT_KINDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = DEPLOY / "kubernetes"
NAMESPACE = "aeraki-system"
LEASE_NAME = "aeraki-controller"  # the control plane's leader-election Lease (§13.5)
# Kubernetes versions to validate against: the oldest we support and the newest schema shipped
# with kubernetes-validate ("latest" is resolved when the test runs).
K8S_VERSIONS = ("1.30", "latest")

READ = ("get", "list", "watch")
# Every kind the control plane reads, as RBAC names it: (API group, resource). Kept here once;
# test_watched_kinds_match_the_kubernetes_source cross-checks it with the source's own list.
WATCHED: frozenset[tuple[str, str]] = frozenset(
    {
        ("metaprotocol.aeraki.io", "metarouters"),
        ("metaprotocol.aeraki.io", "applicationprotocols"),
        ("networking.istio.io", "serviceentries"),
        ("networking.istio.io", "destinationrules"),
        ("networking.istio.io", "virtualservices"),
        ("", "services"),
        ("", "endpoints"),
        ("", "pods"),
    }
)
# What the leader writes cluster-wide: EnvoyFilters for Istio sidecars (reconciled: listed by
# label, created, updated, deleted).
WRITTEN: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("networking.istio.io", "envoyfilters"): (*READ, "create", "update", "patch", "delete"),
}
LEASE_VERBS = ("get", "create", "update")  # what sources/leader.py does with the Lease

Json = dict[str, Any]


# ------------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class Doc:
    file: str
    index: int
    body: Json

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.body.get("metadata", {}).get("namespace", ""))

    @property
    def id(self) -> str:
        return f"{self.file}#{self.index}:{self.kind}/{self.name}"


def _manifest_files() -> list[Path]:
    return sorted(
        p
        for p in MANIFESTS.glob("*.y*ml")
        if p.name not in ("kustomization.yaml", "kustomization.yml")
    )


def _load(path: Path) -> list[Json]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _load_docs() -> list[Doc]:
    return [
        Doc(path.name, i, body) for path in _manifest_files() for i, body in enumerate(_load(path))
    ]


DOCS = _load_docs()


def _one(kind: str, name: str | None = None) -> Json:
    found = [d.body for d in DOCS if d.kind == kind and (name is None or d.name == name)]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _all(kind: str) -> list[Json]:
    return [d.body for d in DOCS if d.kind == kind]


def _crd(plural: str) -> Json:
    return _one("CustomResourceDefinition", f"{plural}.metaprotocol.aeraki.io")


def _crd_schema(plural: str) -> Json:
    (version,) = _crd(plural)["spec"]["versions"]
    schema: Json = version["schema"]["openAPIV3Schema"]
    return schema


def _deployment() -> Json:
    return _one("Deployment", "aeraki")


def _pod_spec() -> Json:
    spec: Json = _deployment()["spec"]["template"]["spec"]
    return spec


def _container() -> Json:
    (container,) = _pod_spec()["containers"]
    result: Json = container
    return result


def _container_ports() -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in _container()["ports"]}


# ---------------------------------------------------------------------- files and kustomize


def test_every_manifest_is_listed_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in _manifest_files()]
    images = {i["name"] for i in kustomization.get("images", [])}
    assert _container()["image"].rpartition(":")[0] in images


def test_every_document_has_kind_name_and_the_right_namespace() -> None:
    assert len(DOCS) >= 10
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for doc in DOCS:
        assert doc.kind, doc.id
        assert doc.name, doc.id
        expected = "" if doc.kind in cluster_scoped else NAMESPACE
        assert doc.namespace == expected, doc.id
    assert _one("Namespace", NAMESPACE)
    keys = [(d.kind, d.namespace, d.name) for d in DOCS]
    assert len(keys) == len(set(keys)), "duplicate objects"


def _canonical(docs: list[Json]) -> list[str]:
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


def test_kubectl_kustomize_renders_exactly_the_files() -> None:
    """``kubectl apply -k`` installs what the files say (kustomize runs offline, in kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    assert _canonical(rendered) == _canonical([d.body for d in DOCS])


# -------------------------------------------------------------- Kubernetes OpenAPI schemas


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    return pytest.importorskip(
        "kubernetes_validate.utils",
        reason="kubernetes-validate is not installed (pip install kubernetes-validate)",
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.id)
def test_object_is_valid_for_kubernetes(kubernetes_validate: Any, doc: Doc, version: str) -> None:
    kv = kubernetes_validate
    wanted = kv.latest_version() if version == "latest" else version
    try:
        validated = kv.validate(doc.body, wanted, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(f"{doc.id} is invalid for Kubernetes {e.version}: {path}: {e.message}")
    except kv.SchemaNotFoundError as e:
        pytest.fail(f"{doc.id}: {e.message}")
    assert kv.major_minor(validated) == kv.major_minor(wanted)


def test_strict_validation_catches_a_misspelt_field(kubernetes_validate: Any) -> None:
    """The check above is not vacuous: an unknown field in a pod template is an error."""
    kv = kubernetes_validate
    broken = copy.deepcopy(_deployment())
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, "1.30", strict=True)


# ------------------------------------------------------------- CRDs: structure and names


_JUNCTORS = ("allOf", "anyOf", "oneOf")
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_NOT_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")


def structural_problems(node: Any, path: str = "", *, in_junctor: bool = False) -> list[str]:
    """The API server's rules for a structural schema (apiextensions.k8s.io/v1), as messages.

    Every field, item and the root has a type (unless it preserves unknown fields or is
    int-or-string); properties and additionalProperties exclude each other and
    additionalProperties is never false; arrays have one items schema; no $ref, no
    uniqueItems: true; inside allOf/anyOf/oneOf/not no type, description, default, nullable or
    additionalProperties, and only fields that are also specified outside them; at the root,
    metadata may restrict only name and generateName.
    """
    where = path or "<root>"
    if not isinstance(node, dict):
        return [f"{where}: a schema must be a mapping"]
    problems: list[str] = []
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if preserve is not None and preserve is not True:
        problems.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true or absent")
    if in_junctor:
        problems += [
            f"{where}: {k} is not allowed inside a junctor" for k in _NOT_IN_JUNCTORS if k in node
        ]
    elif not node.get("type"):
        if not (preserve or node.get("x-kubernetes-int-or-string")):
            problems.append(f"{where}: no type")
    elif node["type"] not in _TYPES:
        problems.append(f"{where}: unknown type {node['type']!r}")
    for forbidden in ("$ref", "definitions", "additionalItems"):
        if forbidden in node:
            problems.append(f"{where}: {forbidden} is not allowed")
    if node.get("uniqueItems") is True:
        problems.append(f"{where}: uniqueItems: true is not allowed")
    properties = node.get("properties", {})
    extra = node.get("additionalProperties")
    if properties and extra is not None:
        problems.append(f"{where}: properties and additionalProperties together")
    if extra is False:
        problems.append(f"{where}: additionalProperties: false is not allowed")
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{where}: an array needs one items schema")
    for key, sub in properties.items():
        problems += structural_problems(sub, f"{path}.{key}", in_junctor=in_junctor)
    if isinstance(extra, dict):
        problems += structural_problems(extra, f"{path}.*", in_junctor=in_junctor)
    if "items" in node:
        problems += structural_problems(node["items"], f"{path}[]", in_junctor=in_junctor)
    branches = [(f"{path}.{j}[{i}]", b) for j in _JUNCTORS for i, b in enumerate(node.get(j, []))]
    if "not" in node:
        branches.append((f"{path}.not", node["not"]))
    for branch_path, branch in branches:
        problems += structural_problems(branch, branch_path, in_junctor=True)
        if isinstance(branch, dict):
            for key in branch.get("properties", {}):
                if key not in properties:
                    problems.append(f"{branch_path}: field {key} is not specified outside")
            if "items" in branch and "items" not in node:
                problems.append(f"{branch_path}: items are not specified outside")
    if not path:
        if node.get("type") != "object":
            problems.append("<root>: the root must be of type object")
        meta_fields = set(properties.get("metadata", {}).get("properties", {}))
        if meta_fields - {"name", "generateName"}:
            problems.append("<root>.metadata: only name and generateName may be restricted")
    return problems


@pytest.mark.parametrize("plural", ["metarouters", "applicationprotocols"])
def test_crd_schema_is_structural(plural: str) -> None:
    assert structural_problems(_crd_schema(plural)) == []


def test_structural_check_finds_violations() -> None:
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "a": {"properties": {"b": {"type": "string"}}},  # no type
            "c": {"type": "object", "properties": {}, "additionalProperties": False},
            "d": {
                "type": "object",
                "properties": {"e": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "f": {"type": "array"},
            "g": {"type": "object", "oneOf": [{"type": "object", "properties": {"h": {}}}]},
        },
    }
    found = structural_problems(bad)
    expected = [
        ".a: no type",
        ".c: additionalProperties: false is not allowed",
        ".d: properties and additionalProperties together",
        ".f: an array needs one items schema",
        ".g.oneOf[0]: type is not allowed inside a junctor",
        ".g.oneOf[0]: field h is not specified outside",
        "<root>.metadata: only name and generateName may be restricted",
    ]
    for message in expected:
        assert message in found


@pytest.mark.parametrize("plural", ["metarouters", "applicationprotocols"])
def test_crd_names_and_versions_are_aerakis(plural: str) -> None:
    """Group, names, categories and version as in Aeraki (§2.1, §2.2), scope as our model."""
    crd = _crd(plural)
    spec = crd["spec"]
    names = spec["names"]
    kind = {"metarouters": "MetaRouter", "applicationprotocols": "ApplicationProtocol"}[plural]
    assert spec["group"] == "metaprotocol.aeraki.io"
    assert crd["metadata"]["name"] == f"{names['plural']}.{spec['group']}"
    assert names == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["aeraki-io", "metaprotocol-aeraki-io"],
    }  # and no shortNames: Aeraki has none for these two
    info = KINDS[kind]
    assert spec["group"] == info.group
    assert spec["scope"] == ("Namespaced" if info.namespaced else "Cluster")
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["name"] in info.versions
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_every_aeraki_kind_of_the_model_has_a_crd() -> None:
    crds = {
        (c["spec"]["group"], c["spec"]["names"]["kind"]) for c in _all("CustomResourceDefinition")
    }
    aeraki = {(i.group, i.kind) for i in KINDS.values() if i.group.endswith(".aeraki.io")}
    assert crds == aeraki


# ---------------------------------------------------- CRDs: accepting and rejecting objects


def to_json_schema(node: Json, *, root: bool = True) -> Json:
    """A CRD schema as JSON Schema, with the API server's reading of it.

    ``nullable`` admits null; every object that lists its properties and does not preserve
    unknown fields rejects other fields (the API server prunes them, and kubectl's default
    ``--validate=strict`` field validation reports them as errors, which is what users see).
    Kubernetes extensions (x-kubernetes-*) have no JSON Schema meaning and are dropped.
    """
    out: Json = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    if "type" in out and node.get("nullable"):
        out["type"] = [out["type"], "null"]
    if "properties" in node:
        out["properties"] = {
            k: to_json_schema(v, root=False) for k, v in node["properties"].items()
        }
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"], root=False)
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"], root=False)
    for junctor in _JUNCTORS:
        if junctor in node:
            out[junctor] = [to_json_schema(b, root=False) for b in node[junctor]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"], root=False)
    if root:
        out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


@pytest.fixture(scope="module")
def jsonschema() -> Any:
    return pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed (comes with kubernetes-validate)"
    )


Validate = Callable[[Json], list[str]]


@pytest.fixture(scope="module")
def validate_custom(jsonschema: Any) -> Validate:
    """Errors of a MetaRouter/ApplicationProtocol against its CRD (empty list = accepted)."""
    plurals = {"MetaRouter": "metarouters", "ApplicationProtocol": "applicationprotocols"}
    validators = {}
    for kind, plural in plurals.items():
        schema = to_json_schema(_crd_schema(plural))
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft202012Validator(schema)

    def validate(obj: Json) -> list[str]:
        crd = _crd(plurals[obj["kind"]])
        problems = []
        if obj["apiVersion"] != f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}":
            problems.append(f"apiVersion {obj['apiVersion']} is not served")
        for error in validators[obj["kind"]].iter_errors(obj):
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{path}: {error.message}")
        return problems

    return validate


def _custom_objects() -> Iterator[tuple[str, Json]]:
    """Every MetaRouter/ApplicationProtocol in the test data and the examples that our own
    validator accepts (a deliberately bad sample belongs to the validator's tests)."""
    roots = [ROOT / "tests" / "control" / "data", ROOT / "examples"]
    for path in sorted(p for root in roots for p in root.rglob("*.y*ml")):
        if "bad" in path.parts:
            continue
        for i, body in enumerate(_load(path)):
            if not isinstance(body, dict):
                continue
            kind = body.get("kind")
            if kind in ("MetaRouter", "ApplicationProtocol") and parse_resource(body).is_valid:
                yield f"{path.relative_to(ROOT)}#{i}", body


CUSTOM_OBJECTS = list(_custom_objects())


def test_there_are_samples_of_both_kinds() -> None:
    kinds = [body["kind"] for _, body in CUSTOM_OBJECTS]
    assert kinds.count("MetaRouter") >= 10
    assert kinds.count("ApplicationProtocol") >= 2


@pytest.mark.parametrize(("where", "obj"), CUSTOM_OBJECTS, ids=[w for w, _ in CUSTOM_OBJECTS])
def test_crd_accepts_what_aeraki_accepts(validate_custom: Validate, where: str, obj: Json) -> None:
    assert validate_custom(obj) == [], where


VALID_ROUTER: Json = {
    "apiVersion": "metaprotocol.aeraki.io/v1alpha1",
    "kind": "MetaRouter",
    "metadata": {"name": "r", "namespace": "ns"},
    "spec": {
        "hosts": ["svc.ns.svc.cluster.local"],
        "routes": [
            {
                "name": "split",
                "match": {"attributes": {"method": {"exact": "sayHello"}, "present": None}},
                "route": [
                    {
                        "destination": {"host": "svc.ns.svc.cluster.local", "subset": "v1"},
                        "weight": 20,
                    },
                    {
                        "destination": {"host": "svc.ns.svc.cluster.local", "subset": "v2"},
                        "weight": 80,
                    },
                ],
                "mirror": {"host": "svc.ns.svc.cluster.local", "port": {"number": 20880}},
                "mirrorPercentage": {"value": 12.5},
                "requestMutation": [{"key": "foo", "value": "bar"}],
                # the project's extension (docs/traffic-policy.md)
                "timeout": "2s",
                "idempotent": False,
                "retries": {
                    "attempts": 2,
                    "perTryTimeout": "500ms",
                    "retryOn": "connect-failure,reset",
                    "retryNonIdempotent": False,
                    "backoff": {"baseInterval": "25ms", "maxInterval": "250ms"},
                },
                "fault": {
                    "delay": {"fixedDelay": "1s", "percentage": {"value": 5}},
                    "abort": {
                        "errorType": "OVER_LIMIT",
                        "message": "drill",
                        "percentage": {"value": 0.5},
                    },
                },
            }
        ],
        "localRateLimit": {
            "tokenBucket": {"maxTokens": 5, "tokensPerFill": None, "fillInterval": "1s"}
        },
    },
}
VALID_PROTOCOL: Json = {
    "apiVersion": "metaprotocol.aeraki.io/v1alpha1",
    "kind": "ApplicationProtocol",
    "metadata": {"name": "brpc"},
    "spec": {"protocol": "brpc", "codec": "aeraki.meta_protocol.codec.brpc"},
}


def _with(obj: Json, path: str, value: Any) -> Json:
    """A deep copy of ``obj`` with ``value`` at dotted ``path`` (numbers index lists);
    ``...`` as the value deletes the field."""
    result = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is ...:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return result


def test_crd_accepts_the_full_sample(validate_custom: Validate) -> None:
    assert validate_custom(VALID_ROUTER) == []
    assert validate_custom(VALID_PROTOCOL) == []


BROKEN: list[tuple[str, Json, str]] = [
    ("weight as text", _with(VALID_ROUTER, "spec.routes.0.route.0.weight", "20"), "weight"),
    ("misspelt field", _with(VALID_ROUTER, "spec.routes.0.rout", []), "rout"),
    ("unknown top field", _with(VALID_ROUTER, "spec.host", "x"), "host"),
    ("no hosts", _with(VALID_ROUTER, "spec.hosts", ...), "hosts"),
    ("two hosts", _with(VALID_ROUTER, "spec.hosts", ["a", "b"]), "hosts"),
    (
        "exact and prefix together",
        _with(VALID_ROUTER, "spec.routes.0.match.attributes.method", {"exact": "a", "prefix": "b"}),
        "method",
    ),
    ("matcher as a string", _with(VALID_ROUTER, "spec.routes.0.match.attributes.m", "a"), "m"),
    (
        "mirror over 100 %",
        _with(VALID_ROUTER, "spec.routes.0.mirrorPercentage.value", 150),
        "value",
    ),
    (
        "destination without host",
        _with(VALID_ROUTER, "spec.routes.0.route.0.destination", {}),
        "host",
    ),
    ("port out of range", _with(VALID_ROUTER, "spec.routes.0.mirror.port.number", 70000), "number"),
    (
        "zero tokens",
        _with(VALID_ROUTER, "spec.localRateLimit.tokenBucket.maxTokens", 0),
        "maxTokens",
    ),
    (
        "retries without attempts",
        _with(VALID_ROUTER, "spec.routes.0.retries.attempts", ...),
        "attempts",
    ),
    (
        "unknown abort error type",
        _with(VALID_ROUTER, "spec.routes.0.fault.abort.errorType", "TEAPOT"),
        "errorType",
    ),
    (
        "fault delay over 100 %",
        _with(VALID_ROUTER, "spec.routes.0.fault.delay.percentage.value", 101),
        "value",
    ),
    ("timeout as a number", _with(VALID_ROUTER, "spec.routes.0.timeout", 2), "timeout"),
    ("no spec", _with(VALID_ROUTER, "spec", ...), "spec"),
    ("v2 apiVersion", _with(VALID_ROUTER, "apiVersion", "metaprotocol.aeraki.io/v2"), "apiVersion"),
    ("protocol without codec", _with(VALID_PROTOCOL, "spec.codec", ...), "codec"),
    ("protocol with a dash", _with(VALID_PROTOCOL, "spec.protocol", "my-proto"), "protocol"),
]


@pytest.mark.parametrize(("obj", "field"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_crd_rejects_broken_objects(validate_custom: Validate, obj: Json, field: str) -> None:
    problems = validate_custom(obj)
    assert problems, "accepted"
    assert any(field in p for p in problems), problems


# --------------------------------------------------------------------------------- RBAC


def _allows(rules: list[Json], group: str, resource: str, verb: str, name: str = "") -> bool:
    for rule in rules:
        if group not in rule.get("apiGroups", []) or resource not in rule.get("resources", []):
            continue
        if verb not in rule.get("verbs", []):
            continue
        names = rule.get("resourceNames", [])
        # resourceNames cannot authorize create (the name is not known) nor collection verbs.
        if names and (verb in ("create", "list", "watch") or name not in names):
            continue
        return True
    return False


def _bound_to_service_account(kind: str, role: Json) -> bool:
    binding_kind = f"{kind}Binding"
    sa = _pod_spec()["serviceAccountName"]
    for binding in _all(binding_kind):
        ref = binding["roleRef"]
        if (ref["apiGroup"], ref["kind"], ref["name"]) != (
            "rbac.authorization.k8s.io",
            kind,
            role["metadata"]["name"],
        ):
            continue
        if kind == "Role" and binding["metadata"]["namespace"] != role["metadata"]["namespace"]:
            continue
        subject = {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
        if subject in binding["subjects"]:
            return True
    return False


def test_watched_kinds_match_the_kubernetes_source() -> None:
    assert {(k.group, k.plural) for k in DEFAULT_KINDS} == WATCHED


def test_cluster_role_covers_every_watched_and_written_kind() -> None:
    (role,) = _all("ClusterRole")
    assert _bound_to_service_account("ClusterRole", role)
    rules = role["rules"]
    for group, resource in sorted(WATCHED):
        for verb in READ:
            assert _allows(rules, group, resource, verb), (group, resource, verb)
    for (group, resource), verbs in WRITTEN.items():
        for verb in verbs:
            assert _allows(rules, group, resource, verb), (group, resource, verb)


def test_cluster_role_grants_nothing_else() -> None:
    """Least privilege: no wildcards, no secrets, no write access beyond EnvoyFilters."""
    (role,) = _all("ClusterRole")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                allowed = WRITTEN.get(key, READ if key in WATCHED else ())
                assert set(rule["verbs"]) <= set(allowed), (key, rule["verbs"])


def test_lease_role_allows_leader_election_in_the_pod_namespace() -> None:
    roles = [r for r in _all("Role") if r["metadata"]["namespace"] == NAMESPACE]
    bound = [r for r in roles if _bound_to_service_account("Role", r)]
    assert bound
    rules = [rule for role in bound for rule in role["rules"]]
    for verb in LEASE_VERBS:
        assert _allows(rules, "coordination.k8s.io", "leases", verb, LEASE_NAME), verb
    # ... but only that Lease may be read or renewed.
    assert not _allows(rules, "coordination.k8s.io", "leases", "update", "someone-elses")


def test_bindings_reference_existing_roles_and_accounts() -> None:
    accounts = {(d.namespace, d.name) for d in DOCS if d.kind == "ServiceAccount"}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in _all(kind):
            ref = binding["roleRef"]
            assert _one(ref["kind"], ref["name"])
            for subject in binding["subjects"]:
                assert subject["kind"] == "ServiceAccount"
                assert (subject["namespace"], subject["name"]) in accounts


# -------------------------------------------------------------- Deployment, Service, PDB


def _pod_labels() -> dict[str, str]:
    labels: dict[str, str] = _deployment()["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: Mapping[str, str]) -> bool:
    return bool(selector) and all(_pod_labels().get(k) == v for k, v in selector.items())


def test_deployment_selector_and_service_account() -> None:
    deployment = _deployment()
    assert _selects(deployment["spec"]["selector"]["matchLabels"])
    sa = _pod_spec()["serviceAccountName"]
    assert ("ServiceAccount", NAMESPACE, sa) in {(d.kind, d.namespace, d.name) for d in DOCS}
    assert _pod_spec().get("automountServiceAccountToken", True) is True  # in-cluster config


def test_services_select_the_pods_and_target_their_ports() -> None:
    ports = _container_ports()
    services = _all("Service")
    assert services
    exposed: dict[str, int] = {}
    for service in services:
        assert _selects(service["spec"]["selector"])
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), port
            exposed[port["name"]] = port["port"]
    assert exposed.get("grpc-xds") == 15010
    assert "http-admin" in exposed


def test_pod_disruption_budget_keeps_a_replica() -> None:
    (pdb,) = _all("PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"])
    assert 1 <= pdb["spec"]["minAvailable"] < _deployment()["spec"]["replicas"]


def _flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} must be given once in {args}"
    return args[args.index(name) + 1]


def test_flags_listen_on_the_container_ports() -> None:
    container = _container()
    args = container["args"]
    assert container["command"] == ["aeraki"]
    assert args[0] == "control"
    assert "--kubernetes" in args
    ports = _container_ports()
    assert _flag(args, "--xds-address") == f"0.0.0.0:{ports['grpc-xds']}"
    assert _flag(args, "--admin-address") == f"0.0.0.0:{ports['http-admin']}"
    assert int(_flag(args, "--quiet-ms")) <= int(_flag(args, "--max-delay-ms"))
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_flags_parse_with_the_cli() -> None:
    """Once ``aeraki control`` exists, the Deployment's arguments must be accepted by it."""
    parser = cli._parser(_container()["args"])
    commands = {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    if "control" not in commands:
        pytest.skip("`aeraki control` is not in the CLI yet")
    try:
        parser.parse_args(_container()["args"])
    except SystemExit as e:
        pytest.fail(f"aeraki rejects the Deployment's arguments (exit {e.code})")


def test_probes_use_the_admin_port() -> None:
    container = _container()
    ports = _container_ports()
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/ready"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in ports or get["port"] in ports.values(), probe
        assert get["port"] in ("http-admin", ports["http-admin"]), probe
        assert get["path"] in ("/ready", "/metrics"), probe
    # Liveness must not follow readiness: losing the API server must not restart replicas
    # that keep serving proxies their last good config.
    assert container["livenessProbe"]["httpGet"]["path"] != "/ready"


def test_deployment_is_replicated_and_hardened() -> None:
    deployment = _deployment()
    assert deployment["spec"]["replicas"] >= 2  # every replica serves xDS, the leader writes
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = _pod_spec()
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) >= {"cpu", "memory"}, bound
    image = container["image"]
    assert ":" in image
    assert not image.endswith(":latest")
    # The read-only root needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"


# ------------------------------------------------------------------------------ Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_matches_the_deployment() -> None:
    instructions = _dockerfile_instructions()
    last_stage = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    final = instructions[last_stage:]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage must not run as root"
    uid, _, gid = users[-1].partition(":")
    security = _pod_spec()["securityContext"]
    assert int(uid) == security["runAsUser"]
    assert int(gid) == security["runAsGroup"]
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    assert exposed == set(_container_ports().values())
    (entrypoint,) = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == _container()["command"]
    assert entrypoint[0] in scripts
    # Every file the build copies is let through the Dockerfile's own ignore file.
    allowed = {
        line.strip().rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    }
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert f"!{source.rstrip('/')}" in allowed, source
