"""Sans-I/O protocol state (no gRPC): edge cases that are awkward to script over a stream."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from aeraki.control.xds import CLUSTER_TYPE, ENDPOINT_TYPE, Snapshot
from aeraki.control.xds.streams import DeltaStream, Outcome, SotwStream, changed_names
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


# --- SotW EDS/RDS: only what the client lacks ----------------------------------------------


def _eds(*clusters: tuple[str, int]) -> Snapshot:
    return Snapshot.from_messages(
        *(eds_cluster(name) for name, _ in clusters),
        *(load_assignment(name, port) for name, port in clusters),
    )


def _ack(stream: SotwStream, resp: discovery_pb2.DiscoveryResponse, names: list[str]) -> None:
    req = discovery_pb2.DiscoveryRequest(
        type_url=resp.type_url,
        version_info=resp.version_info,
        response_nonce=resp.nonce,
        resource_names=names,
    )
    assert stream.on_request(req) is Outcome.ACK


def _names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for packed in resp.resources:
        cla = endpoint_pb2.ClusterLoadAssignment()
        packed.Unpack(cla)
        out.append(cla.cluster_name)
    return out


def test_sotw_eds_sends_only_changed_and_newly_subscribed_resources() -> None:
    v1 = _eds(("c1", 1), ("c2", 2), ("c3", 3))
    stream = SotwStream(1, "peer")
    stream.on_request(
        discovery_pb2.DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=["c1", "c2"])
    )
    [first] = stream.responses(v1)
    assert _names(first) == ["c1", "c2"]  # a new subscription gets everything it names
    _ack(stream, first, ["c1", "c2"])
    # c2 and c3 change; only c2 is both changed and subscribed.
    v2 = _eds(("c1", 1), ("c2", 20), ("c3", 30))
    [second] = stream.responses(v2)
    assert _names(second) == ["c2"]
    assert second.version_info == v2.version(ENDPOINT_TYPE)
    _ack(stream, second, ["c1", "c2"])
    # Only an unsubscribed name changes: an empty response carries the new version (a no-op
    # for the client, and its ACK keeps the status view's versions in step).
    v3 = _eds(("c1", 1), ("c2", 20), ("c3", 31))
    [third] = stream.responses(v3)
    assert (_names(third), third.version_info) == ([], v3.version(ENDPOINT_TYPE))
    # Subscribing to c3 (unchanged since) sends c3 alone; the ACK carries the new names.
    _ack(stream, third, ["c1", "c2", "c3"])
    [fourth] = stream.responses(v3)
    assert _names(fourth) == ["c3"]
    # Dropping c1 then asking for it again resends it although it never changed.
    _ack(stream, fourth, ["c2", "c3"])
    [fifth] = stream.responses(v3)
    assert _names(fifth) == []
    _ack(stream, fifth, ["c1", "c2", "c3"])
    [sixth] = stream.responses(v3)
    assert _names(sixth) == ["c1"]


def test_sotw_resubscription_and_new_streams_get_the_whole_state() -> None:
    v1 = _eds(("c1", 1), ("c2", 2))
    stream = SotwStream(1, "peer")
    stream.on_request(
        discovery_pb2.DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=["c1", "c2"])
    )
    [first] = stream.responses(v1)
    _ack(stream, first, ["c1"])
    assert [_names(r) for r in stream.responses(v1)] == [[]]  # c2 dropped: nothing owed
    stream_last = stream.status().types[ENDPOINT_TYPE]
    assert stream_last.subscribed == ("c1",)
    # A request without a nonce (a client that lost its state) is answered in full.
    stream.on_request(
        discovery_pb2.DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=["c1", "c2"])
    )
    [again] = stream.responses(v1)
    assert _names(again) == ["c1", "c2"]
    # CDS stays state of the world: one changed cluster, every cluster sent.
    cds = SotwStream(2, "peer")
    cds.on_request(discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE))
    [full] = cds.responses(v1)
    _ack(cds, full, [])
    [after] = cds.responses(_eds(("c1", 1), ("c2", 2), ("c3", 3)))
    assert len(after.resources) == 3


def test_changed_names_is_computed_once_per_pair_of_tables() -> None:
    old = _eds(("c1", 1), ("c2", 2)).resources(ENDPOINT_TYPE)
    new = _eds(("c1", 1), ("c2", 3), ("c4", 4)).resources(ENDPOINT_TYPE)
    first = changed_names(old, new)
    assert first == {"c2", "c4"}
    assert changed_names(old, new) is first
    assert changed_names(new, new) == frozenset()
