"""``ConfigSnapshot``: the valid resources of one load, by kind, and every problem found.

The translation (issue 3, item 4) reads only this: resources with an error are not here —
"a bad manifest is reported and skipped; the others stay in force" (issue 3, item 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aeraki.control.model.base import Problem, Resource
from aeraki.control.model.istio import DestinationRuleSpec, ServiceEntrySpec
from aeraki.control.model.metaprotocol import ApplicationProtocolSpec, MetaRouterSpec
from aeraki.control.model.virtualservice import VirtualServiceSpec

__all__ = ["ConfigSnapshot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSnapshot:
    """Valid resources in load order (files sorted, documents in file order)."""

    meta_routers: tuple[Resource[MetaRouterSpec], ...] = ()
    application_protocols: tuple[Resource[ApplicationProtocolSpec], ...] = ()
    service_entries: tuple[Resource[ServiceEntrySpec], ...] = ()
    destination_rules: tuple[Resource[DestinationRuleSpec], ...] = ()
    virtual_services: tuple[Resource[VirtualServiceSpec], ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)

    @property
    def has_errors(self) -> bool:
        return any(p.is_error for p in self.problems)

    def by_kind(self) -> dict[str, tuple[Resource[Any], ...]]:
        """Every kind's resources, keyed by Kubernetes kind name."""
        return {
            "MetaRouter": self.meta_routers,
            "ApplicationProtocol": self.application_protocols,
            "ServiceEntry": self.service_entries,
            "DestinationRule": self.destination_rules,
            "VirtualService": self.virtual_services,
        }

    def resources(self) -> tuple[Resource[Any], ...]:
        return tuple(res for group in self.by_kind().values() for res in group)
