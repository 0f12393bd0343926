"""``aeraki validate``: load manifests, check each resource and the set, report every problem.

Per-resource rules (Aeraki's webhook, §13.9) run in :mod:`aeraki.control.model.rules`; this
module adds the checks that need several resources — duplicates, dangling subsets, hosts with no
ServiceEntry, MetaProtocol ports without a codec (§4.2) — and assembles the
:class:`~aeraki.control.model.ConfigSnapshot`. A resource with an error is left out of the
snapshot and the others stay in force (issue 3, item 2). Duplicates keep the first definition in
load order (files sorted, documents in order) and report the later ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from aeraki.control.manifests import RawDocument, load_documents
from aeraki.control.model import (
    BUILTIN_CODECS,
    ConfigSnapshot,
    Destination,
    DestinationRuleSpec,
    Parsed,
    Problem,
    Report,
    Resource,
    application_protocol_of,
    parse_resource,
)
from aeraki.control.model.base import child_path, index_path

__all__ = [
    "build_snapshot",
    "check_config",
    "format_problems",
    "load_config",
    "main_validate",
]

_CLUSTER_DOMAIN = "svc.cluster.local"  # Aeraki hard-codes it for DR host expansion (§3.4)


def load_config(paths: Sequence[str | os.PathLike[str]]) -> ConfigSnapshot:
    """Load files/directories of manifests into a snapshot of the valid resources.

    Args:
        paths: YAML files (any name) and directories (``*.yaml``/``*.yml``, recursive, sorted).

    Returns:
        The valid resources by kind and every problem (errors and warnings), in file order.
    """
    docs, problems = load_documents(paths)
    return build_snapshot(docs, problems)


def build_snapshot(docs: Iterable[RawDocument], problems: Iterable[Problem] = ()) -> ConfigSnapshot:
    """Parse raw documents (from any source) and check them as one configuration."""
    return check_config([parse_resource(d.body, d.origin) for d in docs], problems)


def check_config(parsed: Sequence[Parsed], problems: Iterable[Problem] = ()) -> ConfigSnapshot:
    """Cross-resource checks over already parsed resources, then the snapshot of valid ones."""
    found: list[Problem] = list(problems)
    for item in parsed:
        found.extend(item.problems)
    checker = _Checker([p.resource for p in parsed if p.is_valid and p.resource is not None])
    checker.run()
    found.extend(checker.problems)
    kinds: dict[str, list[Resource[Any]]] = {}
    for res in checker.valid:
        kinds.setdefault(res.meta.kind, []).append(res)
    return ConfigSnapshot(
        meta_routers=tuple(kinds.get("MetaRouter", ())),
        application_protocols=tuple(kinds.get("ApplicationProtocol", ())),
        service_entries=tuple(kinds.get("ServiceEntry", ())),
        destination_rules=tuple(kinds.get("DestinationRule", ())),
        virtual_services=tuple(kinds.get("VirtualService", ())),
        problems=_in_file_order(found),
    )


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem: ``file:line: error|warning: Kind namespace/name: path: message``."""
    return "\n".join(p.format() for p in problems)


def main_validate(paths: list[str]) -> int:
    """``aeraki validate PATH…``: print errors, then warnings; 1 if any error, else 0."""
    snapshot = load_config(paths)
    errors, warnings = snapshot.errors, snapshot.warnings
    if errors:
        print(f"Errors ({len(errors)}):")
        print(format_problems(errors))
    if warnings:
        if errors:
            print()
        print(f"Warnings ({len(warnings)}):")
        print(format_problems(warnings))
    count = len(snapshot.resources())
    print(
        f"{count} valid resource{'s' * (count != 1)}, {len(errors)} error"
        f"{'s' * (len(errors) != 1)}, {len(warnings)} warning{'s' * (len(warnings) != 1)}"
    )
    return 1 if errors else 0


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name expansion: ``svc`` in ``ns`` → ``svc.ns.svc.cluster.local`` (§3.4)."""
    return host if "." in host or host == "*" else f"{host}.{namespace}.{_CLUSTER_DOMAIN}"


def _in_file_order(problems: list[Problem]) -> tuple[Problem, ...]:
    rank: dict[str, int] = {}
    for p in problems:
        rank.setdefault(p.file, len(rank))
    return tuple(sorted(problems, key=lambda p: (rank[p.file], p.line or 0)))


class _Checker:
    """Cross-resource checks; an error removes the resource from ``valid``."""

    def __init__(self, resources: list[Resource[Any]]) -> None:
        self.valid = resources
        self.problems: list[Problem] = []

    def _report(self, res: Resource[Any]) -> Report:
        m = res.meta
        return Report(m.origin, kind=m.kind, namespace=m.namespace, name=m.name)

    def _flush(self, report: Report) -> bool:
        """Keep the report's problems; ``True`` if the resource is still valid."""
        self.problems.extend(report.problems)
        return not report.has_errors

    def _of(self, kind: str) -> list[Resource[Any]]:
        return [r for r in self.valid if r.meta.kind == kind]

    def run(self) -> None:
        self._duplicates()
        codecs = self._codecs()
        self.valid = [
            r for r in self.valid if r.meta.kind != "ServiceEntry" or self._ports(r, codecs)
        ]
        rules = self._destination_rules()
        hosts = {r.spec.hosts[0] for r in self._of("ServiceEntry") if r.spec.hosts}
        owners: dict[str, Resource[Any]] = {}
        keep: list[Resource[Any]] = []
        for res in self.valid:
            if res.meta.kind == "MetaRouter":
                if not self._meta_router(res, rules, hosts, owners):
                    continue
            elif res.meta.kind == "VirtualService" and not self._virtual_service(res, rules):
                continue
            keep.append(res)
        self.valid = keep

    def _duplicates(self) -> None:
        first: dict[tuple[str, str, str], Resource[Any]] = {}
        keep: list[Resource[Any]] = []
        for res in self.valid:
            other = first.setdefault(res.meta.key, res)
            if other is res:
                keep.append(res)
                continue
            report = self._report(res)
            report.error(
                "metadata.name",
                f"duplicate {res.meta.kind} {_ident(res)}: first defined at "
                f"{other.meta.origin.format()}; this definition is ignored",
            )
            self._flush(report)
        self.valid = keep

    def _codecs(self) -> dict[str, str]:
        """protocol → codec: built-ins, then ApplicationProtocols in load order (§2.2)."""
        codecs = dict(BUILTIN_CODECS)
        owner: dict[str, Resource[Any]] = {}
        for res in self._of("ApplicationProtocol"):
            protocol, codec = res.spec.protocol, res.spec.codec
            previous = owner.get(protocol)
            if previous is not None and previous.spec.codec != codec:
                report = self._report(res)
                report.warning(
                    "spec.protocol",
                    f'protocol "{protocol}" is also mapped to codec "{previous.spec.codec}" by '
                    f"ApplicationProtocol {previous.meta.name} ({previous.meta.origin.format()}); "
                    "this one wins",
                )
                self._flush(report)
            owner[protocol] = res
            codecs[protocol] = codec
        return codecs

    def _ports(self, res: Resource[Any], codecs: dict[str, str]) -> bool:
        """Every MetaProtocol port's application protocol has a codec (§4.2)."""
        report = self._report(res)
        for i, port in enumerate(res.spec.ports):
            app = application_protocol_of(port.name)
            if app is None or app in codecs:
                continue
            near = next((p for p in codecs if p.lower() == app.lower()), None)
            hint = (
                f'application protocols are case-sensitive: did you mean "{near}"?'
                if near
                else "define an ApplicationProtocol for it"
            )
            path = child_path(index_path("spec.ports", i), "name")
            report.error(path, f"can't find codec for protocol: {app} ({hint})")
        return self._flush(report)

    def _destination_rules(self) -> dict[str, Resource[DestinationRuleSpec]]:
        """FQDN host → the DR used for it: the first in load order (§3.4 "first DR")."""
        rules: dict[str, Resource[DestinationRuleSpec]] = {}
        for res in self._of("DestinationRule"):
            host = fqdn(res.spec.host, res.meta.namespace)
            other = rules.setdefault(host, res)
            if other is not res:
                report = self._report(res)
                report.warning(
                    "spec.host",
                    f"DestinationRule {_ident(other)} ({other.meta.origin.format()}) is already "
                    f'used for host "{host}"; this one is ignored',
                )
                self._flush(report)
        return rules

    def _meta_router(
        self,
        res: Resource[Any],
        rules: dict[str, Resource[DestinationRuleSpec]],
        hosts: set[str],
        owners: dict[str, Resource[Any]],
    ) -> bool:
        report = self._report(res)
        host = res.spec.hosts[0]
        if host not in hosts:
            report.warning(
                "spec.hosts[0]",
                f'no ServiceEntry has "{host}" as hosts[0], so this MetaRouter routes nothing '
                "(hosts match by exact string, §2.1; Kubernetes Services are not checked here)",
            )
        other = owners.setdefault(host, res)
        if other is not res:
            report.warning(
                "spec.hosts[0]",
                f"MetaRouter {_ident(other)} ({other.meta.origin.format()}) already routes "
                f'"{host}"; this one is ignored',
            )
        for i, route in enumerate(res.spec.routes):
            path = index_path("spec.routes", i)
            for j, dest in enumerate(route.route):
                where = child_path(index_path(child_path(path, "route"), j), "destination")
                _check_subset(report, dest.destination, res.meta.namespace, rules, where)
            if route.mirror is not None:
                mirror_path = child_path(path, "mirror")
                _check_subset(report, route.mirror, res.meta.namespace, rules, mirror_path)
        return self._flush(report)

    def _virtual_service(
        self, res: Resource[Any], rules: dict[str, Resource[DestinationRuleSpec]]
    ) -> bool:
        report = self._report(res)
        for i, route in enumerate(res.spec.http):
            for j, dest in enumerate(route.route):
                where = f"spec.http[{i}].route[{j}].destination"
                _check_subset(report, dest.destination, res.meta.namespace, rules, where)
        return self._flush(report)


def _ident(res: Resource[Any]) -> str:
    return f"{res.meta.namespace}/{res.meta.name}" if res.meta.namespace else res.meta.name


def _check_subset(
    report: Report,
    dest: Destination,
    namespace: str,
    rules: dict[str, Resource[DestinationRuleSpec]],
    path: str,
) -> None:
    """A named subset must exist in the DestinationRule of its host ("dangling subset")."""
    if not dest.subset:
        return
    rule = rules.get(fqdn(dest.host, namespace))
    where = child_path(path, "subset")
    if rule is None:
        report.error(
            where,
            f'subset "{dest.subset}" is not defined: no DestinationRule for host "{dest.host}"',
        )
        return
    names = [s.name for s in rule.spec.subsets]
    if dest.subset not in names:
        report.error(
            where,
            f'subset "{dest.subset}" is not defined in DestinationRule {_ident(rule)} '
            f"(subsets: {', '.join(names) or 'none'})",
        )
