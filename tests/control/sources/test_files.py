"""FileSource: initial scan, per-resource diffs, broken YAML keeping the last good state."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aeraki.control.sources.api import ConfigSource, EventType, ResourceStore
from aeraki.control.sources.files import FileSource, parse_manifests
from tests.control.sources.helpers import Watch


def metarouter(name: str, subset: str, namespace: str | None = "meta") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"""apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata:
  name: {name}{ns}
spec:
  hosts: [thrift-sample-server.meta-thrift.svc.cluster.local]
  routes:
  - name: r
    route:
    - destination: {{host: thrift-sample-server.meta-thrift.svc.cluster.local, subset: {subset}}}
"""


SERVICE_ENTRY = """apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: se1, namespace: meta}
spec: {hosts: [a.b], ports: [{number: 9090, name: tcp-metaprotocol-thrift, protocol: TCP}]}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
async def problems() -> list[tuple[str, int | None, str]]:
    return []


def make_source(root: Path, problems: list[tuple[str, int | None, str]]) -> FileSource:
    return FileSource(
        root, interval=0.02, on_problem=lambda f, line, msg: problems.append((f, line, msg))
    )


async def test_initial_scan_then_synced(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", metarouter("r1", "v1") + "---\n" + SERVICE_ENTRY)
    write(tmp_path / "sub" / "b.yml", metarouter("r2", "v2", namespace=None))
    write(tmp_path / "notes.txt", metarouter("ignored", "v1"))
    write(tmp_path / ".swap.yaml", metarouter("hidden", "v1"))
    source = FileSource(tmp_path, interval=0.02)
    assert isinstance(source, ConfigSource)
    watch = Watch(source)
    events = await watch.take(4)
    assert [e.type for e in events] == [EventType.ADDED] * 3 + [EventType.SYNCED]
    keys = {e.key for e in events[:3]}
    assert keys == {
        ("MetaRouter", "meta", "r1"),
        ("ServiceEntry", "meta", "se1"),
        ("MetaRouter", "default", "r2"),
    }
    se = next(e for e in events if e.kind == "ServiceEntry")
    assert se.origin == f"{tmp_path / 'a.yaml'}:13"
    assert se.api_version == "networking.istio.io/v1beta1"
    await watch.close()


async def test_edit_one_document_emits_one_modified(
    tmp_path: Path, problems: list[tuple[str, int | None, str]]
) -> None:
    path = tmp_path / "routes.yaml"
    write(path, metarouter("r1", "v1") + "---\n" + metarouter("r2", "v1"))
    source = make_source(tmp_path, problems)
    watch = Watch(source)
    await watch.take(3)
    write(path, metarouter("r1", "v1") + "---\n" + metarouter("r2", "v2"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r2")
    assert event.obj["spec"]["routes"][0]["route"][0]["destination"]["subset"] == "v2"
    assert await watch.quiet() == []
    # A same-size rewrite within the mtime granularity is still seen (racy-clean rule).
    stat = path.stat()
    write(path, metarouter("r1", "v1") + "---\n" + metarouter("r2", "v3"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r2")
    await watch.close()
    assert problems == []


async def test_delete_file_deletes_its_resources(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", metarouter("r1", "v1"))
    write(tmp_path / "b.yaml", SERVICE_ENTRY)
    source = FileSource(tmp_path, interval=0.02)
    watch = Watch(source)
    await watch.take(3)
    (tmp_path / "b.yaml").unlink()
    (event,) = await watch.take(1)
    assert (event.type, event.kind, event.name) == (EventType.DELETED, "ServiceEntry", "se1")
    assert event.obj["spec"]["hosts"] == ["a.b"]
    write(tmp_path / "c.yaml", SERVICE_ENTRY)
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.ADDED, "se1")
    await watch.close()


async def test_broken_yaml_keeps_last_good_state_until_fixed(
    tmp_path: Path, problems: list[tuple[str, int | None, str]]
) -> None:
    path = tmp_path / "routes.yaml"
    write(path, metarouter("r1", "v1") + "---\n" + metarouter("r2", "v1"))
    store = ResourceStore()
    source = make_source(tmp_path, problems)
    task = asyncio.create_task(store.consume(source))
    async with asyncio.timeout(5):
        await store.wait_synced()
    version = store.version
    write(path, metarouter("r1", "v2") + "---\n" + "kind: MetaRouter\nmetadata: {name: [r2\n")
    async with asyncio.timeout(5):
        while not problems:  # noqa: ASYNC110 - polling a callback's list, bounded
            await asyncio.sleep(0.01)
    (file, line, message) = problems[0]
    assert file == str(path)
    assert line is not None
    assert line >= 13
    assert "invalid YAML" in message
    assert "last good" in message
    assert source.problems[str(path)] == [(line, message)]
    # Nothing changed, nothing deleted: r1 keeps v1 although the broken file edits it.
    assert store.version == version
    assert len(store) == 2
    subset = store.get("MetaRouter", "meta", "r1")
    assert subset is not None
    assert subset["spec"]["routes"][0]["route"][0]["destination"]["subset"] == "v1"
    write(path, metarouter("r1", "v2"))
    async with asyncio.timeout(5):
        while len(store) != 1:
            await store.wait_for_change(store.version)
    fixed = store.get("MetaRouter", "meta", "r1")
    assert fixed is not None
    assert fixed["spec"]["routes"][0]["route"][0]["destination"]["subset"] == "v2"
    assert str(path) not in source.problems
    await source.close()
    await asyncio.wait_for(task, 5)


async def test_broken_file_at_start_and_bad_documents(
    tmp_path: Path, problems: list[tuple[str, int | None, str]]
) -> None:
    write(tmp_path / "bad.yaml", "a: [1\n")
    write(
        tmp_path / "docs.yaml",
        "- just\n- a list\n---\nkind: MetaRouter\napiVersion: metaprotocol.aeraki.io/v1alpha1\n",
    )
    write(tmp_path / "dup.yaml", metarouter("r1", "v1"))
    write(tmp_path / "dup2.yaml", metarouter("r1", "v2"))
    source = make_source(tmp_path, problems)
    watch = Watch(source)
    events = await watch.take(2)
    assert [e.type for e in events] == [EventType.ADDED, EventType.SYNCED]
    assert events[0].origin.startswith(str(tmp_path / "dup.yaml"))
    by_file = {Path(f).name: (line, msg) for f, line, msg in problems}
    assert by_file["bad.yaml"][0] == 2
    assert "metadata.name" in by_file["docs.yaml"][1] or "mapping" in by_file["docs.yaml"][1]
    assert "duplicate MetaRouter meta/r1" in by_file["dup2.yaml"][1]
    assert len([p for p in problems if p[0].endswith("docs.yaml")]) == 2
    await watch.close()


def test_parse_manifests_keeps_timestamps_as_strings_and_expands_lists() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: s, namespace: n, creationTimestamp: 2024-01-01T00:00:00Z}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
"""
    result = parse_manifests(text)
    assert result.error is None
    assert result.problems == []
    (doc,) = result.docs
    assert doc.key == ("Service", "n", "s")
    assert doc.obj["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    everything = parse_manifests(text, kinds=None)
    assert [d.key for d in everything.docs] == [
        ("Service", "n", "s"),
        ("Deployment", "default", "d"),
    ]
