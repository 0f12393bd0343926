"""Golden-file tests: the §15 e2e manifests and the other cases, translated for one node.

Each scenario is also run through our proxy's xDS converters (:func:`assert_accepted`), so a
golden can only hold resources the proxy ACKs (native Envoy output excepted: our proxy does not
run Envoy's dubbo_proxy/thrift_proxy; real Envoy checks it, see test_native).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from aeraki.control.model import ConfigSnapshot
from aeraki.control.translate import NodeInfo, TranslateOptions, translate
from aeraki.control.translate.api import ROUTER_FILTER
from tests.control.translate.helpers import assert_accepted, check_golden, load, load_unvalidated

BASE = ("translate/services.yaml", "metaprotocol/base/destinationrule.yaml")
MR = "metaprotocol/metarouters/"


@dataclass(frozen=True, slots=True)
class Scenario:
    files: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    options: TranslateOptions = field(default_factory=TranslateOptions)
    validated: bool = True
    proxy_accepts: bool = True

    def config(self) -> ConfigSnapshot:
        return load(*self.files) if self.validated else load_unvalidated(*self.files)


SCENARIOS: dict[str, Scenario] = {
    # §15.1: no MetaRouter -> default routes for both services.
    "default-route": Scenario(BASE),
    "metarouter-v1": Scenario((*BASE, MR + "metarouter-v1.yaml"), {"NAMESPACE": "metaprotocol"}),
    "metarouter-v2": Scenario((*BASE, MR + "metarouter-v2.yaml")),
    "traffic-splitting": Scenario((*BASE, MR + "metarouter-traffic-splitting.yaml")),
    "attribute-exact": Scenario((*BASE, MR + "metarouter-attribute-exact.yaml")),
    "attribute-prefix": Scenario((*BASE, MR + "metarouter-attribute-prefix.yaml")),
    "attribute-regex": Scenario((*BASE, MR + "metarouter-attribute-regex.yaml")),
    "header-mutation": Scenario((*BASE, MR + "metarouter-header-mutation.yaml")),
    "traffic-mirroring": Scenario((*BASE, MR + "traffic-mirroring.yaml")),
    "consistent-hash": Scenario(
        (
            "translate/services.yaml",
            "metaprotocol/consistent-hash-lb/destinationrule.yaml",
            "metaprotocol/consistent-hash-lb/metarouter-sample.yaml",
        )
    ),
    "lb-policies": Scenario(("translate/services.yaml", "translate/lb-policies.yaml")),
    # connectionPool / outlierDetection -> circuit breakers and outlier detection.
    "resilience": Scenario(("translate/services.yaml", "translate/resilience.yaml")),
    # Rate limits for a data plane without the filters: warnings, router only.
    "rate-limits-unsupported": Scenario(
        (*BASE, "translate/rate-limit-server.yaml"),
        options=TranslateOptions(supported_filters=frozenset({ROUTER_FILTER})),
    ),
    # ... and by default (our proxy has both): §6.4/§6.5 configs before the router.
    "rate-limits": Scenario((*BASE, "translate/rate-limit-server.yaml")),
    # Server sidecar of the demo service, v1 instance: inbound listener + local app cluster;
    # rate limits on the server side as Aeraki does.
    "inbound": Scenario(
        (*BASE, "translate/rate-limit-server.yaml"),
        {
            "LABELS": {"app": "dubbo-sample-provider", "version": "v1"},
            "INSTANCE_IPS": "127.0.0.11",
            "SERVICES": [],
        },
        options=TranslateOptions(rate_limit_side="inbound"),
    ),
    # Scoping: the same config seen from two namespaces.
    "scoping-team": Scenario(
        (*BASE, "translate/scoping.yaml"),
        {"NAMESPACE": "team", "SERVICES": "hello.team.svc.cluster.local"},
    ),
    "scoping-default": Scenario((*BASE, "translate/scoping.yaml")),
    "bad-inputs": Scenario(
        (*BASE, "translate/bad-inputs.yaml"),
        validated=False,
    ),
    # The MetaRouter extension: Aeraki's own RouteConfiguration (extension fields set) for
    # our proxy; the HTTP carrier without them (and a warning) for Aeraki's C++ proxy.
    "traffic-policy": Scenario((*BASE, "translate/traffic-policy.yaml")),
    "traffic-policy-mpp": Scenario(
        (*BASE, "translate/traffic-policy.yaml"),
        {"AERAKI_DATA_PLANE": "meta-protocol-proxy"},
        proxy_accepts=False,
    ),
    # tcp-dubbo / tcp-thrift ports: MetaProtocol form for our proxy, routed by VirtualService.
    "native-ports-python": Scenario(("translate/native.yaml",)),
    "native-ports-envoy": Scenario(
        ("translate/native.yaml",),
        {
            "AERAKI_DATA_PLANE": "envoy",
            "LABELS": {"app": "dubbo-sample-provider"},
            "INSTANCE_IPS": ["127.0.0.61"],
        },
        proxy_accepts=False,
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name: str) -> None:
    scenario = SCENARIOS[name]
    node = NodeInfo(id=f"test~{name}", metadata=scenario.metadata)
    translation = translate(scenario.config(), node, scenario.options)
    check_golden(name, translation)
    if scenario.proxy_accepts:
        assert_accepted(translation)
