"""ResourceStore: keys, change counting, awaiting changes and SYNCED."""

from __future__ import annotations

import asyncio

from aeraki.control.sources.api import EventType, ResourceEvent, ResourceStore, split_api_version


def event(type_: EventType, name: str, subset: str = "v1") -> ResourceEvent:
    obj = {"kind": "MetaRouter", "metadata": {"name": name}, "spec": {"subset": subset}}
    api = "metaprotocol.aeraki.io/v1alpha1"
    return ResourceEvent(type_, "MetaRouter", api, "ns", name, obj, f"f.yaml:{len(name)}")


async def test_store_counts_only_real_changes_and_wakes_waiters() -> None:
    store = ResourceStore()
    waiter = asyncio.create_task(store.wait_for_change(0))
    assert store.apply(event(EventType.ADDED, "a"))
    assert await asyncio.wait_for(waiter, 1) == 1
    assert not store.apply(event(EventType.MODIFIED, "a"))  # identical: no new version
    assert not store.apply(event(EventType.DELETED, "zz"))  # unknown: nothing to delete
    assert store.apply(event(EventType.MODIFIED, "a", subset="v2"))
    assert store.apply(event(EventType.ADDED, "b"))
    assert store.version == 3
    assert [key for key, _ in store.items("MetaRouter")] == [
        ("MetaRouter", "ns", "a"),
        ("MetaRouter", "ns", "b"),
    ]
    assert store.get("MetaRouter", "ns", "a") == {
        "kind": "MetaRouter",
        "metadata": {"name": "a"},
        "spec": {"subset": "v2"},
    }
    assert store.origin("MetaRouter", "ns", "b") == "f.yaml:1"
    assert store.apply(event(EventType.DELETED, "a"))
    assert len(store) == 1
    assert store.get("MetaRouter", "ns", "a") is None


async def test_synced_is_awaitable_once() -> None:
    store = ResourceStore()
    waiter = asyncio.create_task(store.wait_synced())
    await asyncio.sleep(0)
    assert not waiter.done()
    assert store.apply(ResourceEvent.synced("test"))
    await asyncio.wait_for(waiter, 1)
    assert store.synced
    assert not store.apply(ResourceEvent.synced("test"))  # a second SYNCED changes nothing


def test_store_applies_without_a_loop() -> None:
    store = ResourceStore()
    assert store.apply(event(EventType.ADDED, "a"))


def test_split_api_version() -> None:
    assert split_api_version("networking.istio.io/v1") == ("networking.istio.io", "v1")
    assert split_api_version("v1") == ("", "v1")
