"""The MetaRouter extension from manifest to what each data plane receives: our proxy gets
Aeraki's MetaProtocol RouteConfiguration under RDS and compiles the very values written in
YAML; Aeraki's C++ proxy and stock Envoy get nothing of it (goldens: traffic-policy*.json)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from aeraki.control.model.metaprotocol import FaultAbort, MetaFault
from aeraki.control.translate import NodeInfo, translate
from aeraki.control.translate.catalog import Catalog
from aeraki.control.translate.native import native_outbound_config
from aeraki.control.translate.routes import RoutePolicy, plan_routes
from aeraki.control.xds.snapshot import META_ROUTE_TYPE, ROUTE_TYPE, Snapshot
from aeraki.proxy.bootstrap_routes import route_table_from_meta
from aeraki.proxy.config import RetryOn
from aeraki.proxy.xds_apply import route_table_from_resource
from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as meta_route_pb2
from tests.control.translate.helpers import load

BASE = ("translate/services.yaml", "metaprotocol/base/destinationrule.yaml")
DEMO = "org.apache.dubbo.samples.basic.api.demoservice"
ROUTES = f"{DEMO}_20880"


def test_our_proxy_compiles_the_values_written_in_the_metarouter() -> None:
    config = load(*BASE, "translate/traffic-policy.yaml")
    snapshot = Snapshot.from_messages(*translate(config, NodeInfo(id="n")).resources)
    served = snapshot.resources(ROUTE_TYPE)[ROUTES].packed
    assert served.type_url == META_ROUTE_TYPE  # Aeraki's own message, under the RDS type URL
    assert snapshot.resources(META_ROUTE_TYPE) == {}
    name, _ = route_table_from_resource(served)  # what the xDS client compiles: accepted
    assert name == ROUTES
    message = meta_route_pb2.RouteConfiguration()
    assert served.Unpack(message)
    writes, chaos, rest = route_table_from_meta(message, source="RDS").routes
    assert writes.timeout == 2.0
    assert writes.idempotent is False
    retry = writes.retry_policy
    assert retry is not None
    assert (retry.num_retries, retry.per_try_timeout) == (2, 0.5)
    assert retry.retry_on == RetryOn.CONNECT_FAILURE | RetryOn.OVERFLOW
    assert (retry.base_interval, retry.max_interval) == (0.01, 0.1)
    assert not retry.retry_non_idempotent
    fault = chaos.fault
    assert fault is not None
    assert fault.delay is not None
    assert fault.abort is not None
    assert fault.delay.fixed_delay == 1.5
    assert fault.delay.numerator / fault.delay.denominator == 0.125
    assert (fault.abort.error_type, fault.abort.message) == ("OVER_LIMIT", "chaos drill")
    assert fault.abort.numerator / fault.abort.denominator == 0.005
    assert chaos.request_mutation == (("drill", "on"),)
    assert [w.weight for w in chaos.weighted_clusters] == [90, 10]
    assert (rest.timeout, rest.retry_policy, rest.fault, rest.idempotent) == (
        None,
        None,
        None,
        None,
    )


def test_routes_without_the_extension_keep_the_http_carrier() -> None:
    config = load(*BASE, "metaprotocol/metarouters/metarouter-v1.yaml")
    snapshot = Snapshot.from_messages(*translate(config, NodeInfo(id="n")).resources)
    assert snapshot.resources(ROUTE_TYPE)[ROUTES].packed.type_url == ROUTE_TYPE


def test_native_envoy_filters_leave_the_extension_out_with_a_warning() -> None:
    """Envoy's dubbo_proxy/thrift_proxy routes have no timeout/retry/fault field."""
    config = load("translate/native.yaml")
    catalog = Catalog(config, "default")
    ref = catalog.ports[(DEMO, 20880)]
    plans = plan_routes(catalog, ref)
    policy = RoutePolicy(
        timeout=timedelta(seconds=1),
        fault=MetaFault(abort=FaultAbort(error_type="OVER_LIMIT")),
    )
    with_policy = tuple(dataclasses.replace(p, policy=policy) for p in plans)
    before = len(catalog.problems)
    plain = native_outbound_config(catalog, ref, plans)
    assert len(catalog.problems) == before
    extended = native_outbound_config(catalog, ref, with_policy)
    assert extended == plain  # the same DubboProxy, nothing added
    (warning,) = catalog.problems[before:]
    assert not warning.is_error
    assert "Envoy's dubbo proxy has no per-route timeout, retries or fault" in warning.message
