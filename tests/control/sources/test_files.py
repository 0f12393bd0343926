"""FileSource: initial scan, per-resource diffs, broken YAML keeping the last good state."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from pathlib import Path

import pytest

from aeraki.control.sources.api import ConfigSource, EventType, ResourceStore
from aeraki.control.sources.files import FileSource, parse_manifests
from aeraki.control.sources.inotify import IN_CLOSE_WRITE, IN_Q_OVERFLOW, parse_events
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


@pytest.fixture(params=["inotify", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every behaviour holds with inotify and with the polling fallback."""
    return str(request.param)


def make_source(
    root: Path, problems: list[tuple[str, int | None, str]] | None = None, mode: str = "inotify"
) -> FileSource:
    """inotify mode never rescans on its own here: what it sees, it saw through events."""
    sink = [] if problems is None else problems
    return FileSource(
        root,
        interval=0.02,
        rescan_interval=3600.0,
        use_inotify=mode == "inotify",
        on_problem=lambda f, line, msg: sink.append((f, line, msg)),
    )


async def test_initial_scan_then_synced(tmp_path: Path, mode: str) -> None:
    write(tmp_path / "a.yaml", metarouter("r1", "v1") + "---\n" + SERVICE_ENTRY)
    write(tmp_path / "sub" / "b.yml", metarouter("r2", "v2", namespace=None))
    write(tmp_path / "notes.txt", metarouter("ignored", "v1"))
    write(tmp_path / ".swap.yaml", metarouter("hidden", "v1"))
    source = make_source(tmp_path, mode=mode)
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
    tmp_path: Path, problems: list[tuple[str, int | None, str]], mode: str
) -> None:
    path = tmp_path / "routes.yaml"
    write(path, metarouter("r1", "v1") + "---\n" + metarouter("r2", "v1"))
    source = make_source(tmp_path, problems, mode)
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


async def test_delete_file_deletes_its_resources(tmp_path: Path, mode: str) -> None:
    write(tmp_path / "a.yaml", metarouter("r1", "v1"))
    write(tmp_path / "b.yaml", SERVICE_ENTRY)
    source = make_source(tmp_path, mode=mode)
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
    tmp_path: Path, problems: list[tuple[str, int | None, str]], mode: str
) -> None:
    path = tmp_path / "routes.yaml"
    write(path, metarouter("r1", "v1") + "---\n" + metarouter("r2", "v1"))
    store = ResourceStore()
    source = make_source(tmp_path, problems, mode)
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


# --- inotify: what only events (or the fallback) can show ------------------------------------


def replace_atomically(path: Path, text: str) -> None:
    """What editors and config tools do: write a temporary file, rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def test_inotify_sees_a_rename_into_place_without_polling(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, metarouter("r1", "v1"))
    source = make_source(tmp_path)  # polling and safety rescans an hour apart
    watch = Watch(source)
    await watch.take(2)
    assert source.mode == "inotify"
    replace_atomically(path, metarouter("r1", "v2"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r1")
    assert event.obj["spec"]["routes"][0]["route"][0]["destination"]["subset"] == "v2"
    # A swap file next to it (hidden) and a non-YAML file change nothing.
    write(tmp_path / ".routes.yaml.swp", "garbage: [")
    write(tmp_path / "notes.txt", metarouter("r9", "v1"))
    assert await watch.quiet() == []
    # Seen through the event: one re-read of that file, no scan beyond the initial one.
    assert (source.stats.full_scans, source.stats.path_scans) == (1, 1)
    await watch.close()


async def test_inotify_follows_new_and_removed_subdirectories(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    watch = Watch(source)
    (synced,) = await watch.take(1)
    assert synced.type is EventType.SYNCED
    # A directory created with a file already in it (mkdir -p + write, or a moved-in tree).
    staged = tmp_path.parent / f"{tmp_path.name}-staged"
    write(staged / "deep" / "a.yaml", metarouter("r1", "v1"))
    os.rename(staged, tmp_path / "team")
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.ADDED, "r1")
    # The new directory is watched: an edit inside it is an event too.
    write(tmp_path / "team" / "deep" / "b.yaml", SERVICE_ENTRY)
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.ADDED, "se1")
    write(tmp_path / "team" / "deep" / "a.yaml", metarouter("r1", "v2"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r1")
    shutil.rmtree(tmp_path / "team")
    events = await watch.take(2)
    assert {(e.type, e.name) for e in events} == {
        (EventType.DELETED, "r1"),
        (EventType.DELETED, "se1"),
    }
    await watch.close()


async def test_inotify_sees_a_configmap_volume_update(tmp_path: Path) -> None:
    """Kubernetes' atomic writer: ``x.yaml -> ..data/x.yaml``, ``..data -> ..v1`` swapped by
    renaming a new symlink over it. Only the ``..data`` rename happens in the watched tree."""
    (tmp_path / "..v1").mkdir()
    write(tmp_path / "..v1" / "routes.yaml", metarouter("r1", "v1"))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/routes.yaml", tmp_path / "routes.yaml")
    source = make_source(tmp_path)
    watch = Watch(source)
    events = await watch.take(2)
    assert [(e.type, e.name) for e in events] == [(EventType.ADDED, "r1"), (EventType.SYNCED, "")]
    (tmp_path / "..v2").mkdir()
    write(tmp_path / "..v2" / "routes.yaml", metarouter("r1", "v2"))
    os.symlink("..v2", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    shutil.rmtree(tmp_path / "..v1")
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r1")
    assert event.obj["spec"]["routes"][0]["route"][0]["destination"]["subset"] == "v2"
    await watch.close()


def max_queued_events() -> int:
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        return int(f.read())


async def test_inotify_queue_overflow_triggers_a_full_rescan(tmp_path: Path) -> None:
    """More records than the kernel queues (``max_queued_events``) before the loop reads any:
    the kernel drops the rest — including the manifest's — and says IN_Q_OVERFLOW."""
    limit = max_queued_events()
    source = make_source(tmp_path)
    watch = Watch(source)
    await watch.take(1)
    junk = tmp_path / "junk.txt"
    for i in range(limit // 2 + 10):  # no await: the loop reads nothing meanwhile
        junk.write_text(str(i))  # IN_MODIFY is not watched; IN_CLOSE_WRITE (+ IN_ATTRIB)
        os.utime(junk, ns=(i, i))  # distinct records, so the kernel cannot merge them
    write(tmp_path / "late.yaml", metarouter("late", "v1"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.ADDED, "late")
    assert source.stats.overflows == 1
    await watch.close()


async def test_safety_rescan_sees_what_inotify_cannot(tmp_path: Path) -> None:
    """A symlink to a file outside the tree: its target's edits raise no event in the tree."""
    outside = tmp_path / "outside"
    tree = tmp_path / "tree"
    write(outside / "routes.yaml", metarouter("r1", "v1"))
    tree.mkdir()
    os.symlink(outside / "routes.yaml", tree / "routes.yaml")
    source = FileSource(tree, interval=3600.0, rescan_interval=0.05)
    watch = Watch(source)
    await watch.take(2)
    assert source.mode == "inotify"
    write(outside / "routes.yaml", metarouter("r1", "v2"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r1")
    await watch.close()


async def test_missing_root_falls_back_to_polling(tmp_path: Path) -> None:
    root = tmp_path / "later"
    source = FileSource(root, interval=0.02)
    watch = Watch(source)
    (synced,) = await watch.take(1)
    assert synced.type is EventType.SYNCED
    assert source.mode == "polling"
    write(root / "a.yaml", metarouter("r1", "v1"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.ADDED, "r1")
    await watch.close()


async def test_single_file_root_is_watched_through_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, metarouter("r1", "v1"))
    write(tmp_path / "other.yaml", metarouter("r2", "v1"))
    source = make_source(path)
    watch = Watch(source)
    events = await watch.take(2)
    assert [(e.type, e.name) for e in events] == [(EventType.ADDED, "r1"), (EventType.SYNCED, "")]
    write(tmp_path / "other.yaml", metarouter("r2", "v2"))  # not the watched file
    assert await watch.quiet() == []
    replace_atomically(path, metarouter("r1", "v2"))
    (event,) = await watch.take(1)
    assert (event.type, event.name) == (EventType.MODIFIED, "r1")
    await watch.close()


def test_parse_events_reads_padded_records() -> None:
    header = struct.Struct("iIII")
    name = b"routes.yaml".ljust(16, b"\0")
    data = header.pack(3, IN_CLOSE_WRITE, 0, len(name)) + name
    data += header.pack(-1, IN_Q_OVERFLOW, 0, 0)
    first, second = parse_events(data)
    assert (first.wd, first.mask, first.name) == (3, IN_CLOSE_WRITE, "routes.yaml")
    assert (second.wd, second.mask, second.name) == (-1, IN_Q_OVERFLOW, "")
