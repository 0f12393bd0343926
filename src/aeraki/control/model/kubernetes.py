"""Istio's synthetic ServiceEntry of a Kubernetes Service (reference §3.1, issue 3 item 3).

Istio's ``api`` generator hands Aeraki, besides the real ServiceEntries, one *synthetic*
ServiceEntry per Kubernetes Service; that is why naming a Service port
``tcp-metaprotocol-<protocol>-…`` is enough to get a MetaProtocol listener. We watch Services and
Endpoints ourselves, so :func:`service_entry_from_service` builds that ServiceEntry from the raw
objects, purely (no I/O), for :class:`~aeraki.control.push.ConfigBuilder` to check and keep at
its last good version like any other resource:

=====================  ========================================================================
ServiceEntry           from the Service (and its Endpoints, same namespace and name)
=====================  ========================================================================
``metadata.name``      ``synthetic-<service>`` (Istio's name; Redis strips the prefix, §3.2)
``metadata.*``         namespace, labels and annotations of the Service (so ``interface`` for
                       native Dubbo, §3.2, can be written on the Service)
``hosts``              ``[<service>.<namespace>.svc.<domain>]``, domain ``cluster.local``
``addresses``          ``spec.clusterIPs`` (else ``spec.clusterIP``); none when headless
``ports``              ``spec.ports[]`` in order: ``port`` → number, ``name``, ``protocol``, and
                       a numeric ``targetPort`` (a named one is left 0: only the Endpoints know
                       its number). Every port is carried; translation ignores the ones whose
                       name is not an Aeraki protocol (§4), as for any ServiceEntry
``resolution``         STATIC; NONE for a headless Service (``clusterIP: None``, Istio's
                       passthrough), with its endpoint addresses; DNS for ``ExternalName``
``location``           MESH_INTERNAL (MESH_EXTERNAL for ``ExternalName``)
``endpoints``          one per ready address of each ``subsets[]`` of the Endpoints
                       (``notReadyAddresses`` are left out), ``ports`` = the subset's ports by
                       name, ``labels`` = its pod's labels (below); an ``ExternalName`` Service
                       has one endpoint, its external name. No Endpoints (yet): no endpoints
``workloadSelector``   ``spec.selector`` (inbound listeners for the Service's pods, §3.2)
``exportTo``           annotation ``networking.istio.io/exportTo`` (comma-separated; ``~``
                       hides the Service from every namespace)
=====================  ========================================================================

Endpoint labels: Endpoints carry no labels, so each address is joined to its Pod through its
``targetRef`` (kind Pod, name, namespace — the Endpoints' own when absent), as Istio does, and
the endpoint gets that Pod's labels: a DestinationRule subset ``version: v1`` selects the pods
labelled so. An address without a Pod ``targetRef`` (a Service without selector, Endpoints
written by hand) or whose Pod is not known (yet) is labelled with the Service's ``selector``
only — the labels every selected pod is certain to have. Pods come from the same source
(watched by the Kubernetes source, trimmed to their labels; or manifests); a label change
re-converts the Services whose Endpoints name the Pod (``ConfigBuilder``).

Other limits: EndpointSlices are not read (the Endpoints object is, capped by Kubernetes at 1000
addresses); a port missing from an address's subset falls back to the port's ``targetPort`` (or
number) for that address, as for a ServiceEntry endpoint without that port. The endpoint's
locality (region/zone of the Pod's Node, Istio's ``topology.kubernetes.io/*`` labels) is not
derived: Nodes are not watched.

Problems are reported against the Service (``kind: Service``) or its Endpoints, at the paths of
those objects; the Service's origin (``k8s:services@<resourceVersion>`` or ``file:line``) is the
synthetic ServiceEntry's origin, so later problems (a port without codec) point at the Service,
whose ``spec.ports[i]`` are the ServiceEntry's ``spec.ports[i]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aeraki.control.model.base import Meta, Origin, Report, Resource, child_path
from aeraki.control.model.istio import PORT_MAX, ServiceEntrySpec, ServicePort, WorkloadEntry
from aeraki.control.model.kinds import DEFAULT_NAMESPACE, Parsed
from aeraki.control.model.names import export_to_errors, is_dns1123_subdomain
from aeraki.control.model.reader import Reader, describe
from aeraki.control.model.services import Protocol, application_protocol_of, protocol_of

__all__ = [
    "DEFAULT_DOMAIN",
    "EXPORT_TO_ANNOTATION",
    "SYNTHETIC_API_VERSION",
    "SYNTHETIC_PREFIX",
    "PodKey",
    "pod_labels",
    "pod_refs",
    "service_entry_from_service",
    "service_host",
    "synthetic_name",
]

#: (namespace, name) of a Pod.
PodKey = tuple[str, str]

DEFAULT_DOMAIN = "cluster.local"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
SYNTHETIC_PREFIX = "synthetic-"
SYNTHETIC_API_VERSION = "networking.istio.io/v1alpha3"
_EXPORT_TO_PATH = child_path(child_path("metadata", "annotations"), EXPORT_TO_ANNOTATION)
_HEADLESS = "None"


def service_host(name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """``<name>.<namespace>.svc.<domain>``: the host of a Kubernetes Service."""
    return f"{name}.{namespace}.svc.{domain}"


def synthetic_name(service: str) -> str:
    """Istio's name for the synthetic ServiceEntry of Service ``service``."""
    return SYNTHETIC_PREFIX + service


def pod_labels(pod: Any) -> Mapping[str, str] | None:
    """``metadata.labels`` of a raw Pod (``{}`` when it has none); ``None`` when the object is
    unusable (its own problems are not the Service's to report)."""
    if not isinstance(pod, Mapping):
        return None
    metadata = pod.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        return None
    return {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}


def pod_refs(endpoints: Any, namespace: str) -> tuple[PodKey, ...]:
    """The Pods the ready addresses of a raw Endpoints object point at (``targetRef``), in
    order; lenient (a malformed part is skipped here and reported by the conversion)."""
    out: list[PodKey] = []
    subsets = endpoints.get("subsets") if isinstance(endpoints, Mapping) else None
    for subset in subsets if isinstance(subsets, list) else ():
        addresses = subset.get("addresses") if isinstance(subset, Mapping) else None
        for address in addresses if isinstance(addresses, list) else ():
            ref = _pod_ref(address, namespace)
            if ref is not None:
                out.append(ref)
    return tuple(out)


def _pod_ref(address: Any, namespace: str) -> PodKey | None:
    ref = address.get("targetRef") if isinstance(address, Mapping) else None
    if not isinstance(ref, Mapping) or ref.get("kind") != "Pod":
        return None
    name, ns = ref.get("name"), ref.get("namespace") or namespace
    return (ns, name) if isinstance(name, str) and name and isinstance(ns, str) else None


def service_entry_from_service(
    service: Any,
    endpoints: Any = None,
    *,
    namespace: str = "",
    service_origin: Origin | None = None,
    endpoints_origin: Origin | None = None,
    domain: str = DEFAULT_DOMAIN,
    pods: Mapping[PodKey, Mapping[str, str]] | None = None,
) -> Parsed:
    """The synthetic ServiceEntry of a raw Service and its raw Endpoints (``None``: none yet).

    Args:
        service: the Service object as the API server (or a manifest) has it.
        endpoints: the Endpoints object of the same namespace/name, or ``None``.
        pods: labels of the Pods the Endpoints' addresses name (:func:`pod_refs`), by
            (namespace, name); an address whose Pod is missing gets the selector's labels.
        namespace: the Service's namespace as its source keyed it (``""``: from its metadata,
            else ``default``).
        service_origin: where the Service came from; also the ServiceEntry's origin.
        endpoints_origin: where the Endpoints came from (for their problems).
        domain: the cluster DNS domain.

    Returns:
        The ServiceEntry (``None`` when the Service is unusable) and every problem, Service
        problems first. Never raises on bad input.
    """
    origin = service_origin or Origin()
    report = Report(origin, kind="Service", namespace=namespace)
    r = Reader(report)
    if not isinstance(service, Mapping):
        r.error("", f"a Service must be a mapping, got {describe(service)}")
        return Parsed(resource=None, problems=tuple(report.problems))
    metadata = _mapping(r, service, "metadata", "", required=True)
    name = r.string(metadata, "name", "metadata", required="required field is missing")
    report.name = name
    if name and not is_dns1123_subdomain(name):
        r.error("metadata.name", f'"{name}" is not a valid name')
    namespace = namespace or r.string(metadata, "namespace", "metadata") or DEFAULT_NAMESPACE
    report.namespace = namespace
    labels = r.string_map(metadata, "labels", "metadata")
    annotations = r.string_map(metadata, "annotations", "metadata")
    export_to = _export_to(r, annotations, namespace)
    resource_version = r.string(metadata, "resourceVersion", "metadata")
    raw_spec = service.get("spec")
    spec = _mapping(r, service, "spec", "")
    if not name or (raw_spec is not None and not isinstance(raw_spec, Mapping)):
        return Parsed(resource=None, problems=tuple(report.problems))  # nothing to build from

    kind = r.string(spec, "type", "spec") or "ClusterIP"
    external = kind == "ExternalName"
    ports = r.items(spec, "ports", "spec", lambda v, p: _service_port(r, v, p))
    _check_ports(r, ports)
    selector = r.string_map(spec, "selector", "spec")
    addresses, headless = _cluster_ips(r, spec)
    entries: tuple[WorkloadEntry, ...] = ()
    if external:
        target = r.string(spec, "externalName", "spec", required="required for type ExternalName")
        entries = (WorkloadEntry(address=target),) if target else ()
        addresses, resolution, location = (), "DNS", "MESH_EXTERNAL"
    else:
        resolution = "NONE" if headless else "STATIC"
        location = "MESH_INTERNAL"
    problems = list(report.problems)
    if endpoints is not None and not external:
        ep_report = Report(
            endpoints_origin or Origin(), kind="Endpoints", namespace=namespace, name=name
        )
        names = {port.name for port in ports if port.name}
        labelling = _Labelling(selector, pods or {}, namespace)
        entries = _endpoints(Reader(ep_report), endpoints, names, labelling)
        problems.extend(ep_report.problems)

    meta = Meta(
        kind="ServiceEntry",
        api_version=SYNTHETIC_API_VERSION,
        name=synthetic_name(name),
        namespace=namespace,
        labels=labels,
        annotations=annotations,
        resource_version=resource_version,
        origin=origin,
    )
    spec_out = ServiceEntrySpec(
        hosts=(service_host(name, namespace, domain),),
        addresses=addresses,
        ports=ports,
        location=location,
        resolution=resolution,
        endpoints=entries,
        workload_selector=selector or None,
        export_to=export_to,
    )
    return Parsed(resource=Resource(meta=meta, spec=spec_out), problems=tuple(problems))


# --- the Service ------------------------------------------------------------------------------


def _mapping(
    r: Reader, data: Mapping[str, Any], key: str, path: str, *, required: bool = False
) -> Mapping[str, Any]:
    """``data[key]`` as a mapping (``{}`` when absent or wrong, with a problem)."""
    value = data.get(key)
    if value is None:
        if required:
            r.error(child_path(path, key), "required field is missing")
        return {}
    if not isinstance(value, Mapping):
        r.error(child_path(path, key), f"expected a mapping, got {describe(value)}")
        return {}
    return value


def _service_port(r: Reader, value: Any, path: str) -> ServicePort | None:
    if not isinstance(value, Mapping):
        r.error(path, f"expected a mapping, got {describe(value)}")
        return None
    number = r.integer(value, "port", path, low=1, high=PORT_MAX, required="required field")
    name = r.string(value, "name", path)
    protocol = r.string(value, "protocol", path) or "TCP"
    target = value.get("targetPort")
    target_port = 0
    if isinstance(target, int | float) and not isinstance(target, bool):
        target_port = r.integer(value, "targetPort", path, low=1, high=PORT_MAX) or 0
    elif target is not None and not isinstance(target, str):
        r.error(
            child_path(path, "targetPort"),
            f"expected a port number or a port name, got {describe(target)}",
        )
    # A named targetPort stays 0: its number is per pod, known from the Endpoints only.
    if number is None:
        return None
    return ServicePort(number=number, name=name, protocol=protocol, target_port=target_port)


def _check_ports(r: Reader, ports: tuple[ServicePort, ...]) -> None:
    """Unique numbers and names; a MetaProtocol port names its application protocol (§4.2)."""
    numbers: dict[int, str] = {}
    names: dict[str, str] = {}
    for i, port in enumerate(ports):
        item = r.item("spec.ports", i)
        other = numbers.setdefault(port.number, item)
        if other != item:
            r.error(child_path(item, "port"), f"port {port.number} is already defined by {other}")
        if port.name:
            other = names.setdefault(port.name, item)
            if other != item:
                r.error(child_path(item, "name"), f'port name "{port.name}" is also {other}')
        if protocol_of(port.name) is Protocol.METAPROTOCOL and not application_protocol_of(
            port.name
        ):
            r.error(
                child_path(item, "name"),
                f'port name "{port.name}" has no application protocol '
                "(name MetaProtocol ports tcp-metaprotocol-<protocol>[-<suffix>])",
            )


def _cluster_ips(r: Reader, spec: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    """(addresses, headless): ``clusterIPs`` (dual stack) else ``clusterIP``."""
    key = "clusterIPs" if spec.get("clusterIPs") is not None else "clusterIP"
    if key == "clusterIPs":
        values = r.strings(spec, key, "spec")
        paths = [r.item("spec.clusterIPs", i) for i in range(len(values))]
    else:
        one = r.string(spec, key, "spec")
        values, paths = ((one,), ["spec.clusterIP"]) if one else ((), [])
    if _HEADLESS in values:
        return (), True
    out: list[str] = []
    for value, path in zip(values, paths, strict=True):
        if _is_ip(value):
            out.append(value)
        else:
            r.error(path, f'"{value}" is not an IP address (or "None" for a headless Service)')
    return tuple(out), False


def _export_to(r: Reader, annotations: Mapping[str, str], namespace: str) -> tuple[str, ...]:
    """The ``networking.istio.io/exportTo`` annotation: ``.``, ``*``, ``~`` or namespaces."""
    text = annotations.get(EXPORT_TO_ANNOTATION)
    if text is None:
        return ()
    entries = tuple(e.strip() for e in text.split(",") if e.strip())
    # "~" (visible nowhere) is allowed on Services, unlike on Istio config objects.
    for _, message in export_to_errors(tuple(e for e in entries if e != "~"), namespace):
        r.error(_EXPORT_TO_PATH, message)
    return entries


# --- the Endpoints ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Labelling:
    """Labels of an address: its Pod's (by ``targetRef``), else the Service's selector."""

    selector: Mapping[str, str]
    pods: Mapping[PodKey, Mapping[str, str]]
    namespace: str

    def of(self, address: Any) -> Mapping[str, str]:
        ref = _pod_ref(address, self.namespace)
        found = self.pods.get(ref) if ref is not None else None
        return self.selector if found is None else found


def _endpoints(
    r: Reader, body: Any, names: set[str], labelling: _Labelling
) -> tuple[WorkloadEntry, ...]:
    """One endpoint per ready address of each subset; ports by the Service's port names."""
    if not isinstance(body, Mapping):
        r.error("", f"an Endpoints object must be a mapping, got {describe(body)}")
        return ()
    out: list[WorkloadEntry] = []
    for entries in r.items(body, "subsets", "", lambda v, p: _subset(r, v, p, names, labelling)):
        out.extend(entries)
    return tuple(out)


def _subset(
    r: Reader, value: Any, path: str, names: set[str], labelling: _Labelling
) -> tuple[WorkloadEntry, ...] | None:
    if not isinstance(value, Mapping):
        r.error(path, f"expected a mapping, got {describe(value)}")
        return None
    ports: dict[str, int] = {}
    for name, number in r.items(value, "ports", path, lambda v, p: _endpoint_port(r, v, p)):
        # Unnamed (single-port Service) or stale names: no mapping; the translation falls
        # back to the Service port's targetPort or number.
        if name in names:
            ports[name] = number
    addresses = r.items(value, "addresses", path, lambda v, p: _address(r, v, p, labelling))
    # notReadyAddresses: not serving; left out on purpose (not even read).
    return tuple(WorkloadEntry(address=ip, ports=ports, labels=labels) for ip, labels in addresses)


def _endpoint_port(r: Reader, value: Any, path: str) -> tuple[str, int] | None:
    if not isinstance(value, Mapping):
        r.error(path, f"expected a mapping, got {describe(value)}")
        return None
    number = r.integer(value, "port", path, low=1, high=PORT_MAX, required="required field")
    name = r.string(value, "name", path)
    return None if number is None else (name, number)


def _address(
    r: Reader, value: Any, path: str, labelling: _Labelling
) -> tuple[str, Mapping[str, str]] | None:
    if not isinstance(value, Mapping):
        r.error(path, f"expected a mapping, got {describe(value)}")
        return None
    ip = r.string(value, "ip", path, required="required field is missing")
    if ip and not _is_ip(ip):
        r.error(child_path(path, "ip"), f'"{ip}" is not an IP address')
        return None
    return (ip, labelling.of(value)) if ip else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
