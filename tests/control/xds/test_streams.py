"""Sans-I/O protocol state (no gRPC): edge cases that are awkward to script over a stream."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from aeraki.control.xds import CLUSTER_TYPE, ENDPOINT_TYPE, Snapshot
from aeraki.control.xds.streams import DeltaStream, Outcome, SotwStream
from tests.control.xds.resources import eds_cluster, load_assignment

SNAP = Snapshot.from_messages(eds_cluster("c1"), load_assignment("c1", 1))


def test_sotw_explicit_type_without_names_is_not_answered() -> None:
    stream = SotwStream(1, "peer")
    assert stream.on_request(discovery_pb2.DiscoveryRequest(type_url=ENDPOINT_TYPE)) is (
        Outcome.REQUEST
    )
    assert stream.responses(SNAP) == []


def test_sotw_star_is_a_wildcard_and_a_nack_keeps_the_sent_version() -> None:
    stream = SotwStream(1, "peer")
    stream.on_request(discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE, resource_names=["*"]))
    [resp] = stream.responses(SNAP)
    assert len(resp.resources) == 1
    nack = discovery_pb2.DiscoveryRequest(
        type_url=CLUSTER_TYPE,
        response_nonce=resp.nonce,
        error_detail=status_pb2.Status(message="no"),
    )
    assert stream.on_request(nack) is Outcome.NACK
    assert stream.responses(SNAP) == []
    status = stream.type_status(CLUSTER_TYPE)
    assert status is not None
    assert (status.last_nack_version, status.acked_version) == (resp.version_info, "")


def test_delta_stale_ack_still_applies_subscriptions() -> None:
    stream = DeltaStream(1, "peer")
    req = discovery_pb2.DeltaDiscoveryRequest
    stream.on_request(req(type_url=ENDPOINT_TYPE, resource_names_subscribe=["c1"]))
    [first] = stream.responses(SNAP)
    assert stream.on_request(req(type_url=ENDPOINT_TYPE, response_nonce="old")) is Outcome.STALE
    assert stream.responses(SNAP) == []  # the real ACK is still awaited
    assert stream.on_request(req(type_url=ENDPOINT_TYPE, response_nonce=first.nonce)) is (
        Outcome.ACK
    )
    stream.on_request(req(type_url=ENDPOINT_TYPE, resource_names_unsubscribe=["c1"]))
    assert stream.responses(SNAP) == []  # unsubscribing needs no answer


def test_delta_wildcard_can_be_dropped() -> None:
    stream = DeltaStream(1, "peer")
    req = discovery_pb2.DeltaDiscoveryRequest
    stream.on_request(req(type_url=CLUSTER_TYPE))
    [first] = stream.responses(SNAP)
    stream.on_request(
        req(type_url=CLUSTER_TYPE, response_nonce=first.nonce, resource_names_unsubscribe=["*"])
    )
    status = stream.type_status(CLUSTER_TYPE)
    assert status is not None
    assert not status.wildcard
    assert stream.status().types[CLUSTER_TYPE].acks == 1
