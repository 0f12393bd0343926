"""Snapshot: content-hash versions, naming, and the consistency check."""

from __future__ import annotations

import pytest

from aeraki.control.xds import (
    CLUSTER_TYPE,
    EMPTY_VERSION,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    InconsistentSnapshotError,
    Snapshot,
    SnapshotCache,
)
from aeraki.errors import ConfigError
from tests.control.xds.resources import (
    eds_cluster,
    http_listener,
    load_assignment,
    meta_listener,
    route_config,
    tcp_listener,
)


def good() -> Snapshot:
    return Snapshot.from_messages(
        eds_cluster("c1"),
        load_assignment("c1", 9001),
        tcp_listener("l1", 10001, "c1"),
        meta_listener("m1", 10002, "svc_20880"),
        route_config("svc_20880", "c1"),
    )


def test_from_messages_groups_by_type_and_names_resources() -> None:
    snap = good()
    assert snap.type_urls() == (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
    assert list(snap.resources(LISTENER_TYPE)) == ["l1", "m1"]
    assert list(snap.resources(ENDPOINT_TYPE)) == ["c1"]  # ClusterLoadAssignment.cluster_name
    assert snap.consistent()


def test_versions_are_content_hashes() -> None:
    a, b = good(), good()
    assert a is not b
    assert a == b
    assert a.versions == b.versions
    changed = Snapshot.from_messages(
        eds_cluster("c1"),
        load_assignment("c1", 9002),  # only the endpoint differs
        tcp_listener("l1", 10001, "c1"),
        meta_listener("m1", 10002, "svc_20880"),
        route_config("svc_20880", "c1"),
    )
    assert changed.version(ENDPOINT_TYPE) != a.version(ENDPOINT_TYPE)
    for other in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert changed.version(other) == a.version(other)
    assert a.version("type.googleapis.com/absent") == EMPTY_VERSION
    assert Snapshot({LISTENER_TYPE: []}).version(LISTENER_TYPE) == EMPTY_VERSION


def test_order_of_input_does_not_change_versions() -> None:
    one = Snapshot({LISTENER_TYPE: [tcp_listener("a", 1, "c"), tcp_listener("b", 2, "c")]})
    two = Snapshot({LISTENER_TYPE: [tcp_listener("b", 2, "c"), tcp_listener("a", 1, "c")]})
    assert one.version(LISTENER_TYPE) == two.version(LISTENER_TYPE)


def test_mutating_a_message_after_the_snapshot_does_not_change_what_is_served() -> None:
    listener = tcp_listener("l1", 10001, "c1")
    snap = Snapshot({LISTENER_TYPE: [listener]})
    before = snap.resources(LISTENER_TYPE)["l1"].packed.value
    listener.address.socket_address.port_value = 1
    assert snap.resources(LISTENER_TYPE)["l1"].packed.value == before


def test_explicit_names_wrong_types_and_duplicates() -> None:
    snap = Snapshot({LISTENER_TYPE: {"custom": tcp_listener("l1", 1, "c")}})
    assert list(snap.resources(LISTENER_TYPE)) == ["custom"]
    with pytest.raises(ConfigError, match=r"message is a .*Cluster"):
        Snapshot({LISTENER_TYPE: [eds_cluster("c1")]})
    with pytest.raises(ConfigError, match="duplicate resource name"):
        Snapshot({CLUSTER_TYPE: [eds_cluster("c1"), eds_cluster("c1")]})
    with pytest.raises(ConfigError, match="resource name is empty"):
        Snapshot({CLUSTER_TYPE: [eds_cluster("")]})


def test_dangling_eds_reference_is_named() -> None:
    snap = Snapshot.from_messages(eds_cluster("c1", service_name="svc-eds"))
    with pytest.raises(InconsistentSnapshotError) as info:
        snap.check_consistent()
    assert info.value.path == "clusters[c1].eds_cluster_config.service_name"
    assert "'svc-eds'" in str(info.value)


def test_dangling_meta_protocol_rds_reference_is_named() -> None:
    snap = Snapshot.from_messages(meta_listener("m1", 1, "missing_20880"))
    problems = snap.consistency_problems()
    assert problems == [
        (
            "listeners[m1].default_filter_chain.filters[0].typed_config.rds.route_config_name",
            "route configuration 'missing_20880' is not in the snapshot",
        )
    ]


def test_dangling_http_rds_reference_and_every_problem_reported() -> None:
    snap = Snapshot.from_messages(
        http_listener("h1", 1, "r-missing"), eds_cluster("a"), eds_cluster("b")
    )
    with pytest.raises(InconsistentSnapshotError) as info:
        snap.check_consistent()
    assert len(info.value.problems) == 3
    assert "(and 2 more problems)" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_cache_refuses_inconsistent_snapshot_and_keeps_the_last_good() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("n1", good())
    with pytest.raises(ConfigError, match="missing_20880"):
        cache.set_snapshot("n1", Snapshot.from_messages(meta_listener("m1", 1, "missing_20880")))
    assert cache.get_snapshot("n1") == good()


def test_cache_set_identical_snapshot_reports_no_change_and_wakes_nobody() -> None:
    cache = SnapshotCache()
    woken: list[str] = []
    cancel = cache.watch("n1", woken.append)
    assert cache.set_snapshot("n1", good()) is True
    assert cache.set_snapshot("n1", good()) is False
    assert woken == ["n1"]
    assert cache.watched_keys() == ["n1"]
    cancel()
    cancel()
    assert cache.watched_keys() == []
    cache.clear_snapshot("n1")
    assert cache.get_snapshot("n1") is None
