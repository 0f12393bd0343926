"""KubernetesSource against the fake API server: list, watch, bookmarks, resume, 410, paging."""

from __future__ import annotations

from typing import Any

import pytest

from aeraki.control.sources.api import DEFAULT_KINDS, EventType, ResourceEvent, WatchedKind
from aeraki.control.sources.kubeclient import ClusterConfig, KubeClient
from aeraki.control.sources.kubernetes import Backoff, KubernetesSource
from tests.control.sources.fake_apiserver import FakeApiServer
from tests.control.sources.helpers import Watch, poll_until

MR = DEFAULT_KINDS[0]
FAST = Backoff(initial=0.01, maximum=0.05)


def metarouter(name: str, subset: str = "v1", namespace: str = "meta") -> dict[str, Any]:
    return {
        "apiVersion": "metaprotocol.aeraki.io/v1alpha1",
        "kind": "MetaRouter",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": ["h"], "routes": [{"route": [{"destination": {"subset": subset}}]}]},
    }


def service(name: str, port_name: str = "tcp-metaprotocol-dubbo") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "meta"},
        "spec": {"ports": [{"name": port_name, "port": 20880}], "clusterIP": "10.0.0.7"},
    }


def summary(events: list[ResourceEvent]) -> list[tuple[str, str, str]]:
    return [(e.type.value, e.kind, e.name) for e in events]


def source(
    kube: KubeClient, kinds: tuple[WatchedKind, ...] = DEFAULT_KINDS, **kw: Any
) -> KubernetesSource:
    return KubernetesSource(kube, kinds=kinds, backoff=FAST, **kw)


def watch_requests(apiserver: FakeApiServer, plural: str) -> list[dict[str, str]]:
    return [q for m, p, q in apiserver.requests if p.endswith(plural) and q.get("watch") == "true"]


async def synced(
    apiserver: FakeApiServer, src: KubernetesSource, initial: int
) -> tuple[Watch, list[ResourceEvent]]:
    watch = Watch(src)
    events = await watch.take(initial + 1)
    assert events[-1].type is EventType.SYNCED
    await poll_until(lambda: apiserver.watch_count == len(src.resource_versions))
    return watch, events[:-1]


async def test_list_then_watch(apiserver: FakeApiServer, kube: KubeClient) -> None:
    apiserver.create(metarouter("r1"))
    apiserver.create(service("dubbo"))
    src = source(kube)
    watch, initial = await synced(apiserver, src, 2)
    assert sorted(summary(initial)) == [
        ("ADDED", "MetaRouter", "r1"),
        ("ADDED", "Service", "dubbo"),
    ]
    svc = next(e for e in initial if e.kind == "Service")
    # The core API omits kind/apiVersion on list items; the source fills them in.
    assert (svc.obj["kind"], svc.api_version, svc.namespace) == ("Service", "v1", "meta")
    assert svc.origin == f"k8s:services@{svc.obj['metadata']['resourceVersion']}"
    # Every watch starts from the list's version, with bookmarks requested.
    (first,) = watch_requests(apiserver, "metarouters")
    assert first["allowWatchBookmarks"] == "true"
    assert int(first["resourceVersion"]) >= 102
    assert apiserver.auth_headers[0] == "Bearer t0ken"

    apiserver.create(metarouter("r2"))
    apiserver.update(metarouter("r1", subset="v2"))
    apiserver.delete("metaprotocol.aeraki.io/v1alpha1", "MetaRouter", "meta", "r2")
    events = await watch.take(3)
    assert summary(events) == [
        ("ADDED", "MetaRouter", "r2"),
        ("MODIFIED", "MetaRouter", "r1"),
        ("DELETED", "MetaRouter", "r2"),
    ]
    assert events[1].obj["spec"]["routes"][0]["route"][0]["destination"]["subset"] == "v2"
    assert events[1].obj["metadata"]["generation"] == 2
    assert src.resource_versions["MetaRouter"] == str(apiserver.resource_version)
    await watch.close()


async def test_bookmarks_advance_resource_version(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    src = source(kube, kinds=(MR,))
    watch, _ = await synced(apiserver, src, 0)
    before = src.resource_versions["MetaRouter"]
    for i in range(3):  # other kinds move the global version; MetaRouter's watch sees nothing
        apiserver.create(service(f"s{i}"))
    apiserver.send_bookmarks()
    await poll_until(lambda: src.resource_versions["MetaRouter"] == str(apiserver.resource_version))
    assert int(before or 0) < apiserver.resource_version
    assert await watch.quiet() == []  # a bookmark is not an event for consumers
    apiserver.drop_watches()  # the resumed watch starts from the bookmark's version
    await poll_until(lambda: len(watch_requests(apiserver, "metarouters")) == 2)
    assert watch_requests(apiserver, "metarouters")[1]["resourceVersion"] == str(
        apiserver.resource_version
    )
    await watch.close()


async def test_dropped_watch_resumes_without_duplicates(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    for i in range(3):
        apiserver.create(metarouter(f"r{i}"))
    src = source(kube, kinds=(MR,))
    watch, _ = await synced(apiserver, src, 3)
    apiserver.update(metarouter("r0", subset="v2"))
    (event,) = await watch.take(1)
    seen = event.obj["metadata"]["resourceVersion"]
    apiserver.drop_watches()
    apiserver.create(metarouter("r9"))  # happens while the source is disconnected
    (event,) = await watch.take(1)
    assert summary([event]) == [("ADDED", "MetaRouter", "r9")]
    assert watch_requests(apiserver, "metarouters")[-1]["resourceVersion"] == seen
    assert await watch.quiet() == []
    assert src.relists == 0
    await watch.close()


@pytest.mark.parametrize("gone_as", ["event", "status"])
async def test_gone_relists_and_emits_only_the_diff(
    apiserver: FakeApiServer, kube: KubeClient, gone_as: str
) -> None:
    apiserver.gone_as = gone_as
    for name in ("keep", "edit", "drop"):
        apiserver.create(metarouter(name))
    src = source(kube, kinds=(MR,))
    watch, _ = await synced(apiserver, src, 3)
    apiserver.drop_watches()
    # While disconnected: three changes, then history is compacted past the source's version.
    apiserver.update(metarouter("edit", subset="v2"))
    apiserver.delete("metaprotocol.aeraki.io/v1alpha1", "MetaRouter", "meta", "drop")
    apiserver.create(metarouter("new"))
    apiserver.compact()
    events = await watch.take(3)
    assert sorted(summary(events)) == [
        ("ADDED", "MetaRouter", "new"),
        ("DELETED", "MetaRouter", "drop"),
        ("MODIFIED", "MetaRouter", "edit"),
    ]
    assert await watch.quiet() == []  # nothing for "keep"
    assert src.relists == 1
    apiserver.create(metarouter("after"))
    (event,) = await watch.take(1)
    assert summary([event]) == [("ADDED", "MetaRouter", "after")]
    await watch.close()


async def test_pagination_and_expired_continue(apiserver: FakeApiServer, kube: KubeClient) -> None:
    for i in range(7):
        apiserver.create(metarouter(f"r{i}"))
    expired: list[str] = []

    def expire_once(method: str, path: str, query: dict[str, str]) -> None:
        if query.get("continue") and not expired:
            expired.append(query["continue"])
            apiserver.create(metarouter("late"))
            apiserver.compact()  # the snapshot behind the token is gone: 410

    apiserver.before_request = expire_once
    src = source(kube, kinds=(MR,), page_size=3)
    watch, initial = await synced(apiserver, src, 8)
    assert sorted(e.name for e in initial) == ["late"] + [f"r{i}" for i in range(7)]
    lists = [q for m, p, q in apiserver.requests if q.get("limit") == "3"]
    # page 1, page 2 (410), then a full restart: 3 pages.
    assert len(lists) == 5
    assert "continue" not in lists[2]
    assert [e.type for e in initial] == [EventType.ADDED] * 8  # page 1 was not emitted twice
    await watch.close()


async def test_errors_back_off_and_missing_kinds_still_sync(kube: KubeClient) -> None:
    server = FakeApiServer()
    server.register(MR.group, MR.version, MR.kind, MR.plural)  # no Istio CRDs installed
    await server.start()
    client = KubeClient(ClusterConfig(server=server.url), request_timeout=5.0)
    server.create(metarouter("r1"))
    server.fail_next(500, count=2, path_contains="metarouters")
    src = source(client)
    watch = Watch(src)
    events = await watch.take(2)
    assert summary(events) == [("ADDED", "MetaRouter", "r1"), ("SYNCED", "", "")]
    failed_lists = [q for m, p, q in server.requests if p.endswith("metarouters")][:3]
    assert len(failed_lists) == 3  # two 500s, then the list that worked
    server.fail_next(500, count=1, path_contains="metarouters")
    server.drop_watches()
    server.update(metarouter("r1", subset="v3"))
    (event,) = await watch.take(1)
    assert summary([event]) == [("MODIFIED", "MetaRouter", "r1")]
    await watch.close()
    await client.close()
    await server.stop()


def pod(name: str, version: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "meta",
            "labels": {"app": "dubbo", "version": version},
            "annotations": {"big": "x" * 1000},
        },
        "spec": {"containers": [{"name": "app", "image": "dubbo:1"}], "nodeName": "node-1"},
        "status": {"phase": phase, "podIP": "10.1.0.7"},
    }


async def test_pods_are_trimmed_to_their_labels_and_status_updates_emit_nothing(
    apiserver: FakeApiServer, kube: KubeClient
) -> None:
    pods = next(k for k in DEFAULT_KINDS if k.kind == "Pod")
    apiserver.create(pod("p1", "v1", phase="Pending"))
    src = source(kube, kinds=(pods,))
    watch, (added,) = await synced(apiserver, src, 1)
    assert (added.type, added.name) == (EventType.ADDED, "p1")
    assert added.obj == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p1",
            "namespace": "meta",
            "labels": {"app": "dubbo", "version": "v1"},
            "resourceVersion": added.obj["metadata"]["resourceVersion"],
        },
    }
    apiserver.update(pod("p1", "v1", phase="Running"))  # status only: nothing kept changed
    assert await watch.quiet() == []
    apiserver.update(pod("p1", "v2"))
    (relabelled,) = await watch.take(1)
    assert (relabelled.type, relabelled.obj["metadata"]["labels"]["version"]) == (
        EventType.MODIFIED,
        "v2",
    )
    # A relist after 410 compares what is kept too: a status-only change is not replayed.
    apiserver.drop_watches()
    apiserver.update(pod("p1", "v2", phase="Succeeded"))  # while disconnected
    apiserver.compact()
    await poll_until(lambda: src.relists == 1)
    assert await watch.quiet() == []
    apiserver.delete("v1", "Pod", "meta", "p1")
    (deleted,) = await watch.take(1)
    assert (deleted.type, "spec" in deleted.obj) == (EventType.DELETED, False)
    await watch.close()
