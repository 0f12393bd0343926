"""Typed control-plane resources: ``Resource = Meta + Spec`` (style anchors §9 rule 9).

Kinds (reference §2–§3): MetaRouter and ApplicationProtocol (``metaprotocol.aeraki.io``),
ServiceEntry, DestinationRule and VirtualService (``networking.istio.io`` v1alpha3/v1beta1/v1).
Every dataclass is frozen, slotted and keyword-only; YAML camelCase fields map to snake_case.
"""

from aeraki.control.model.base import Meta, Origin, Problem, Report, Resource, Severity
from aeraki.control.model.common import Destination, MatchKind, StringMatch
from aeraki.control.model.config import ConfigSnapshot
from aeraki.control.model.istio import (
    ConsistentHash,
    DestinationRuleSpec,
    LoadBalancer,
    ServiceEntrySpec,
    ServicePort,
    Subset,
    TrafficPolicy,
    WorkloadEntry,
)
from aeraki.control.model.kinds import KINDS, Parsed, parse_resource
from aeraki.control.model.metaprotocol import (
    ApplicationProtocolSpec,
    GlobalRateLimit,
    KeyValue,
    LocalRateLimit,
    LocalRateLimitCondition,
    MetaRoute,
    MetaRouteDestination,
    MetaRouteMatch,
    MetaRouterSpec,
    RateLimitDescriptor,
    TokenBucket,
)
from aeraki.control.model.services import (
    BUILTIN_CODECS,
    Protocol,
    application_protocol_of,
    protocol_of,
)
from aeraki.control.model.virtualservice import (
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualServiceSpec,
)

__all__ = [
    "BUILTIN_CODECS",
    "KINDS",
    "ApplicationProtocolSpec",
    "ConfigSnapshot",
    "ConsistentHash",
    "Destination",
    "DestinationRuleSpec",
    "GlobalRateLimit",
    "HTTPMatchRequest",
    "HTTPRoute",
    "HTTPRouteDestination",
    "KeyValue",
    "LoadBalancer",
    "LocalRateLimit",
    "LocalRateLimitCondition",
    "MatchKind",
    "Meta",
    "MetaRoute",
    "MetaRouteDestination",
    "MetaRouteMatch",
    "MetaRouterSpec",
    "Origin",
    "Parsed",
    "Problem",
    "Protocol",
    "RateLimitDescriptor",
    "Report",
    "Resource",
    "ServiceEntrySpec",
    "ServicePort",
    "Severity",
    "StringMatch",
    "Subset",
    "TokenBucket",
    "TrafficPolicy",
    "VirtualServiceSpec",
    "WorkloadEntry",
    "application_protocol_of",
    "parse_resource",
    "protocol_of",
]
