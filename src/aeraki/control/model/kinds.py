"""The kinds the control plane reads, and one raw document → typed :class:`Resource`.

``parse_resource`` is the single entry for a raw object from any source (YAML file, Kubernetes
API JSON): envelope (apiVersion/kind/metadata), spec conversion, then the kind's own rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aeraki.control.model import istio, metaprotocol, rules, virtualservice
from aeraki.control.model.base import Meta, Origin, Problem, Report, Resource, child_path
from aeraki.control.model.names import is_dns1123_label, is_dns1123_subdomain
from aeraki.control.model.reader import Reader, describe

__all__ = ["KINDS", "KindInfo", "Parsed", "parse_resource"]

AERAKI_GROUP = "metaprotocol.aeraki.io"
ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1alpha3", "v1beta1", "v1")  # one schema for all three (issue 3, item 1)
AERAKI_VERSIONS = ("v1alpha1", "v1")  # the webhook accepts v1 as an alias (§13.9)


@dataclass(frozen=True, slots=True, kw_only=True)
class KindInfo:
    """How to read one kind: its group and versions, scope, spec parser and rules."""

    kind: str
    group: str
    versions: tuple[str, ...]
    namespaced: bool
    parse: Callable[[Reader, Any, str], Any]
    check: Callable[[Reader, Any, str, str], None]


def _check_ap(r: Reader, spec: Any, namespace: str, path: str) -> None:
    rules.check_application_protocol(r, spec, path)


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            kind="MetaRouter",
            group=AERAKI_GROUP,
            versions=AERAKI_VERSIONS,
            namespaced=True,
            parse=metaprotocol.parse_meta_router,
            check=rules.check_meta_router,
        ),
        KindInfo(
            kind="ApplicationProtocol",
            group=AERAKI_GROUP,
            versions=AERAKI_VERSIONS,
            namespaced=False,  # Cluster scope, as in the api repo (§2.2, §16.20)
            parse=metaprotocol.parse_application_protocol,
            check=_check_ap,
        ),
        KindInfo(
            kind="ServiceEntry",
            group=ISTIO_GROUP,
            versions=ISTIO_VERSIONS,
            namespaced=True,
            parse=istio.parse_service_entry,
            check=rules.check_service_entry,
        ),
        KindInfo(
            kind="DestinationRule",
            group=ISTIO_GROUP,
            versions=ISTIO_VERSIONS,
            namespaced=True,
            parse=istio.parse_destination_rule,
            check=rules.check_destination_rule,
        ),
        KindInfo(
            kind="VirtualService",
            group=ISTIO_GROUP,
            versions=ISTIO_VERSIONS,
            namespaced=True,
            parse=virtualservice.parse_virtual_service,
            check=rules.check_virtual_service,
        ),
    )
}

DEFAULT_NAMESPACE = "default"
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
_METADATA = ("name", "namespace", "labels", "annotations", "resourceVersion")
_METADATA_IGNORED = (
    "uid",
    "generation",
    "generateName",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    """A document's outcome: the resource (``None`` if skipped or unusable) and its problems.

    ``is_valid`` is False as soon as one problem is an error: such a resource is reported and
    left out of the snapshot (issue 3, item 2).
    """

    resource: Resource[Any] | None
    problems: tuple[Problem, ...]

    @property
    def is_valid(self) -> bool:
        return self.resource is not None and not any(p.is_error for p in self.problems)


def parse_resource(body: Any, origin: Origin | None = None) -> Parsed:
    """Convert and check one raw object (decoded YAML or API JSON).

    Never raises on bad input. A kind we do not read is a warning and ``resource=None``.
    """
    report = Report(origin or Origin())
    r = Reader(report)
    if not isinstance(body, Mapping):
        r.error("", f"a manifest must be a mapping with apiVersion and kind, got {describe(body)}")
        return Parsed(resource=None, problems=tuple(report.problems))
    kind = r.string(body, "kind", "", required="required field is missing")
    api_version = r.string(body, "apiVersion", "", required="required field is missing")
    info = KINDS.get(kind)
    if info is None:
        if kind:
            r.warning("", f'kind "{kind}" ({api_version}) is not read by Aeraki; skipped')
        return Parsed(resource=None, problems=tuple(report.problems))
    report.kind = kind
    meta = _meta(r, body, info, api_version)
    report.namespace, report.name = meta.namespace, meta.name
    for key in body:
        if key not in _TOP_LEVEL:
            ident = f"{meta.namespace}/{meta.name}"
            r.error(child_path("", key), f'unknown field "{key}" on {kind} resource {ident}')
    group, _, version = api_version.rpartition("/")
    if api_version and (group != info.group or version not in info.versions):
        wanted = ", ".join(f"{info.group}/{v}" for v in info.versions)
        r.error("apiVersion", f'"{api_version}" is not an apiVersion of {kind} (use {wanted})')
    spec = r.child(
        body, "spec", "", lambda v, p: info.parse(r, v, p), required="required field is missing"
    )
    if spec is None:
        return Parsed(resource=None, problems=_by_line(report.problems))
    info.check(r, spec, meta.namespace, "spec")
    return Parsed(resource=Resource(meta=meta, spec=spec), problems=_by_line(report.problems))


def _by_line(problems: list[Problem]) -> tuple[Problem, ...]:
    """In file order, as a user reads the manifest (stable: same line keeps finding order)."""
    return tuple(sorted(problems, key=lambda p: p.line or 0))


def _meta(r: Reader, body: Mapping[str, Any], info: KindInfo, api_version: str) -> Meta:
    origin = r.report.origin
    data = r.child(
        body,
        "metadata",
        "",
        lambda v, p: r.obj(v, p, _METADATA, ignored=_METADATA_IGNORED),
        required="required field is missing",
    )
    data = data or {}
    name = r.string(data, "name", "metadata", required="required field is missing")
    r.report.name = name
    if name and not is_dns1123_subdomain(name):
        r.error(
            "metadata.name",
            f'"{name}" is not a valid name (lower-case letters, digits, "-" and ".")',
        )
    namespace = r.string(data, "namespace", "metadata")
    if namespace and not is_dns1123_label(namespace):
        r.error("metadata.namespace", f'"{namespace}" is not a valid namespace name')
    if not info.namespaced:
        namespace = ""
    elif not namespace:
        namespace = DEFAULT_NAMESPACE
    r.report.namespace = namespace
    return Meta(
        kind=info.kind,
        api_version=api_version,
        name=name,
        namespace=namespace,
        labels=r.string_map(data, "labels", "metadata"),
        annotations=r.string_map(data, "annotations", "metadata"),
        resource_version=r.string(data, "resourceVersion", "metadata"),
        origin=origin,
    )
