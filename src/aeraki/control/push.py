"""From raw stored objects to the configuration the translator reads, keeping last good versions.

Issue 3, item 2: "a bad manifest is reported and skipped; the last good config of the other
resources stays in force". :class:`ConfigBuilder` goes one step further, per resource: when a
MetaRouter that used to be valid is edited into something invalid (a typo in a field, a subset
that does not exist), the proxies keep routing by its *last good version* instead of losing the
routes altogether — withdrawing a MetaRouter would silently send traffic to the default route,
which is exactly the outage a typo should not cause. The problem stays reported (log, counter,
status) until the resource is fixed; a resource that never was valid is simply left out.

Parsing is cached per stored object, so a push after editing one file re-parses one resource;
the cross-resource checks (:func:`~aeraki.control.validation.check_config`) run over the whole
set each time because a DestinationRule edit can invalidate a MetaRouter elsewhere.

Kubernetes Services (issue 3, item 3): every stored Service, with the Endpoints of the same
namespace and name, becomes Istio's synthetic ServiceEntry ``synthetic-<name>`` for host
``<name>.<namespace>.svc.cluster.local`` (:mod:`aeraki.control.model.kubernetes`, reference
§3.1). It goes through the same checks and last-good logic as the other resources, keyed by the
Service (``("Service", ns, name)`` in ``fallbacks`` and notes): an Endpoints edit re-converts it,
a malformed Service or Endpoints keeps its last good version, deleting the Service withdraws it,
and Endpoints without a Service are ignored. Stored Pods give the endpoints their labels (joined
by the addresses' ``targetRef``), so a label change of a Pod re-converts exactly the Services
whose Endpoints name it. Synthetic ServiceEntries come after every real resource in load order.

A real ServiceEntry wins over the synthetic one: when a stored ServiceEntry lists the Service's
host among its ``hosts`` (short names expanded with its namespace), or is itself named
``synthetic-<name>`` in the Service's namespace, the Service is not converted and a warning says
which ServiceEntry replaces it. This holds while that ServiceEntry is stored, even if it has
errors (its last good version, or nothing, is then in force): what a user wrote for a host is
never silently swapped for the Service's defaults (e.g. endpoints labelled by hand, where the
Pods' own labels are not what the DestinationRule subsets select).

The control plane's metrics are declared here, once (style anchors §9 rule 11).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aeraki.control.model import KINDS, ConfigSnapshot, Origin, Parsed, Problem, parse_resource
from aeraki.control.model.base import Severity
from aeraki.control.model.kubernetes import (
    DEFAULT_DOMAIN,
    PodKey,
    pod_labels,
    pod_refs,
    service_entry_from_service,
    service_host,
    synthetic_name,
)
from aeraki.control.sources.api import JsonDict, ResourceKey
from aeraki.control.validation import check_config, fqdn
from aeraki.metrics import Histogram, MetricSpec

__all__ = [
    "CONTROL_HISTOGRAMS",
    "CONTROL_METRICS",
    "PUSH_LATENCY_BUCKETS",
    "BuildResult",
    "ConfigBuilder",
    "ControlMetrics",
    "MetricSpec",
    "parse_origin",
]


CONTROL_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("pushes_total", "counter", "Debounced pushes run (config rebuilt, nodes updated)."),
    MetricSpec("push_nodes_total", "counter", "Node snapshots changed by pushes and connects."),
    MetricSpec("push_duration_seconds", "gauge", "Duration of the last push."),
    MetricSpec("push_duration_seconds_max", "gauge", "Longest push since start."),
    MetricSpec("config_events_total", "counter", "Source events that changed the store."),
    MetricSpec("config_resources", "gauge", "Resources in force (valid or kept last good)."),
    MetricSpec("config_problems", "gauge", "Current problems: config, sources, translation."),
    MetricSpec("config_errors_total", "counter", "Resource errors reported (each new one once)."),
    MetricSpec("config_fallbacks", "gauge", "Invalid resources replaced by their last good one."),
    MetricSpec("source_problems_total", "counter", "Manifest files that failed to parse/read."),
    MetricSpec("translation_problems_total", "counter", "Problems reported by translation."),
    MetricSpec("snapshots_rejected_total", "counter", "Snapshots refused (inconsistent/bad)."),
    MetricSpec("proxies_connected", "gauge", "ADS streams open with a known node."),
)

#: Push latency bucket bounds (seconds): from an incremental edit (ms) to a rebuild at scale.
PUSH_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: The control plane's histograms (attributes of :class:`ControlMetrics`, like the above).
CONTROL_HISTOGRAMS: tuple[MetricSpec, ...] = (
    MetricSpec("push_latency_seconds", "histogram", "Duration of each push."),
)


@dataclass(slots=True)
class ControlMetrics:
    """Current values of :data:`CONTROL_METRICS` (plain slots: read by status and tests)."""

    pushes_total: int = 0
    push_nodes_total: int = 0
    push_duration_seconds: float = 0.0
    push_duration_seconds_max: float = 0.0
    config_events_total: int = 0
    config_resources: int = 0
    config_problems: int = 0
    config_errors_total: int = 0
    config_fallbacks: int = 0
    source_problems_total: int = 0
    translation_problems_total: int = 0
    snapshots_rejected_total: int = 0
    proxies_connected: int = 0
    push_latency_seconds: Histogram = dataclasses.field(
        default_factory=lambda: Histogram(PUSH_LATENCY_BUCKETS)
    )

    def record_push(self, duration: float) -> None:
        """Account one push that took ``duration`` seconds."""
        self.pushes_total += 1
        self.push_duration_seconds = duration
        self.push_duration_seconds_max = max(self.push_duration_seconds_max, duration)
        self.push_latency_seconds.observe(duration)

    def snapshot(self) -> dict[str, float]:
        """``{name: value}`` in declaration order (for /stats-like output)."""
        return {spec.name: getattr(self, spec.name) for spec in CONTROL_METRICS}


def parse_origin(origin: str) -> Origin:
    """A source's ``origin`` string (``path:line`` for files, anything else verbatim)."""
    path, sep, line = origin.rpartition(":")
    if sep and path and line.isdigit():
        return Origin(file=path, line=int(line))
    return Origin(file=origin)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    """One rebuild: the configuration to translate and every problem to show.

    ``config.problems`` describe the manifests *as they are now* (the invalid version, not the
    kept one) plus one warning per resource kept at its last good version (``fallbacks``).
    """

    config: ConfigSnapshot
    fallbacks: tuple[ResourceKey, ...] = ()


_SERVICE = "Service"
_ENDPOINTS = "Endpoints"
_POD = "Pod"
_SERVICE_ENTRY = "ServiceEntry"

_Source = tuple[JsonDict | None, ...]  # the stored object(s) a parse was made from


@dataclass(slots=True)
class _Entry:
    source: _Source
    parsed: Parsed

    def made_from(self, source: _Source) -> bool:
        return len(source) == len(self.source) and all(
            a is b or a == b for a, b in zip(source, self.source, strict=True)
        )


class ConfigBuilder:
    """Parse and check stored objects into a :class:`ConfigSnapshot`, per-resource last good.

    ``cluster_domain`` is the DNS domain of Kubernetes Service hosts.
    """

    def __init__(self, *, cluster_domain: str = DEFAULT_DOMAIN) -> None:
        self.cluster_domain = cluster_domain
        self._parsed: dict[ResourceKey, _Entry] = {}
        self._last_good: dict[ResourceKey, Parsed] = {}
        self._pods: dict[PodKey, JsonDict] = {}  # of the build in progress

    def build(self, items: Iterable[tuple[ResourceKey, JsonDict, str]]) -> BuildResult:
        """Rebuild from ``(key, object, origin)`` of every stored resource (sorted by key).

        Services (with their Endpoints) become synthetic ServiceEntries; other kinds the model
        does not read are skipped.
        """
        current: dict[ResourceKey, Parsed] = {}
        services: list[tuple[ResourceKey, JsonDict, str]] = []
        endpoints: dict[tuple[str, str], tuple[JsonDict, str]] = {}
        self._pods = {}
        for key, obj, origin in items:
            if key[0] == _SERVICE:
                services.append((key, obj, origin))
                continue
            if key[0] == _ENDPOINTS:
                endpoints[key[1:]] = (obj, origin)
                continue
            if key[0] == _POD:
                self._pods[(key[1], key[2])] = obj
                continue
            if key[0] not in KINDS:
                continue
            entry = self._parsed.get(key)
            if entry is None or not entry.made_from((obj,)):
                entry = _Entry((obj,), parse_resource(obj, parse_origin(origin)))
                self._parsed[key] = entry
            current[key] = entry.parsed
        shadowed = self._shadowed(services, current)
        notes: list[Problem] = list(shadowed.values())
        for key, obj, origin in services:
            if key not in shadowed:
                current[key] = self._synthetic(key, obj, origin, endpoints.get(key[1:]))
        for gone in set(self._parsed) - set(current):  # deleted: withdrawn, not an error
            del self._parsed[gone]
            self._last_good.pop(gone, None)

        first = check_config(list(current.values()))
        valid = {id(res) for res in first.resources()}
        fallbacks: dict[ResourceKey, Parsed] = {}
        for key, parsed in current.items():
            if parsed.resource is not None and id(parsed.resource) in valid:
                continue
            good = self._last_good.get(key)
            if good is not None and good is not parsed:
                fallbacks[key] = good
        chosen = {key: fallbacks.get(key, parsed) for key, parsed in current.items()}
        final = check_config(list(chosen.values())) if fallbacks else first
        in_force = {id(res) for res in final.resources()}
        kept_fallbacks: list[ResourceKey] = []
        for key, parsed in chosen.items():
            kept = parsed.resource is not None and id(parsed.resource) in in_force
            if kept:
                self._last_good[key] = parsed
            if key in fallbacks:
                notes.append(_fallback_note(key, parsed, kept))
                if kept:
                    kept_fallbacks.append(key)
        problems = (*first.problems, *notes)
        return BuildResult(
            config=dataclasses.replace(final, problems=problems), fallbacks=tuple(kept_fallbacks)
        )

    def _synthetic(
        self,
        key: ResourceKey,
        service: JsonDict,
        origin: str,
        endpoints: tuple[JsonDict, str] | None,
    ) -> Parsed:
        """The Service's synthetic ServiceEntry, re-converted only when it, its Endpoints or
        one of the Pods they name changed."""
        ep_obj, ep_origin = endpoints if endpoints is not None else (None, "")
        refs = pod_refs(ep_obj, key[1]) if ep_obj is not None else ()
        pods = tuple(self._pods.get(ref) for ref in refs)
        source: _Source = (service, ep_obj, *pods)
        entry = self._parsed.get(key)
        if entry is None or not entry.made_from(source):
            labels = {ref: pod_labels(pod) for ref, pod in zip(refs, pods, strict=True)}
            parsed = service_entry_from_service(
                service,
                ep_obj,
                namespace=key[1],
                service_origin=parse_origin(origin),
                endpoints_origin=parse_origin(ep_origin),
                domain=self.cluster_domain,
                pods={ref: found for ref, found in labels.items() if found is not None},
            )
            entry = _Entry(source, parsed)
            self._parsed[key] = entry
        return entry.parsed

    def _shadowed(
        self, services: list[tuple[ResourceKey, JsonDict, str]], current: dict[ResourceKey, Parsed]
    ) -> dict[ResourceKey, Problem]:
        """Services a stored ServiceEntry replaces, each with the warning that says so."""
        claims: dict[str, Parsed] = {}  # host or "ns/name" -> the ServiceEntry claiming it
        for key, parsed in current.items():
            if key[0] != _SERVICE_ENTRY:
                continue
            claims.setdefault(f"{key[1]}/{key[2]}", parsed)
            for version in (parsed, self._last_good.get(key)):
                if version is not None and version.resource is not None:
                    meta, spec = version.resource.meta, version.resource.spec
                    for host in spec.hosts:
                        claims.setdefault(fqdn(host, meta.namespace), parsed)
        out: dict[ResourceKey, Problem] = {}
        for key, _obj, origin in services:
            _, namespace, name = key
            host = service_host(name, namespace, self.cluster_domain)
            claim = claims.get(host) or claims.get(f"{namespace}/{synthetic_name(name)}")
            if claim is None:
                continue
            where = parse_origin(origin)
            owner = _owner(claim)
            out[key] = Problem(
                severity=Severity.WARNING,
                message=(
                    f"not converted to a synthetic ServiceEntry: ServiceEntry {owner} is used for "
                    f'host "{host}" instead (a real ServiceEntry wins over a Kubernetes Service)'
                ),
                file=where.file,
                line=where.line,
                kind=_SERVICE,
                namespace=namespace,
                name=name,
            )
        return out


def _owner(parsed: Parsed) -> str:
    """``ns/name (origin)`` of a parsed ServiceEntry, for messages."""
    if parsed.resource is not None:
        meta = parsed.resource.meta
        return f"{meta.namespace}/{meta.name} ({meta.origin.format()})"
    for problem in parsed.problems:
        return f"{problem.namespace}/{problem.name} ({problem.file or '<input>'})"
    return "?"


def _fallback_note(key: ResourceKey, good: Parsed, kept: bool) -> Problem:
    kind, namespace, name = key
    assert good.resource is not None
    origin: Any = good.resource.meta.origin
    if kept:
        message = (
            f"the last good version (loaded from {origin.format()}) stays in force "
            "until the errors above are fixed"
        )
    else:
        message = "its last good version is no longer valid either; the resource is withdrawn"
    return Problem(
        severity=Severity.WARNING,
        message=message,
        file=origin.file,
        line=origin.line,
        kind=kind,
        namespace=namespace,
        name=name,
    )
