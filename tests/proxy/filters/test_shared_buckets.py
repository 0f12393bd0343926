"""Shared token buckets: the store file, the bucket arithmetic against the in-process
bucket, and real worker processes (spawned, as the proxy's workers are) taking from one
bucket at once, refilling it, restarting, and a store with no slot left."""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import multiprocessing
import os
import random
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from aeraki.errors import ConfigError
from aeraki.proxy.filters import shared_buckets
from aeraki.proxy.filters.local_ratelimit import BucketSpec, TokenBucket
from aeraki.proxy.filters.shared_buckets import (
    HEADER_SIZE,
    MAGIC,
    SLOT_SIZE,
    Bucket,
    SharedBucket,
    Store,
    attach_store,
    bucket_key,
    create_store,
    detach_store,
    remove_store,
)

#: How long a test waits for a spawned process (start-up included) before failing.
PROCESS_TIMEOUT = 60.0
HOUR = BucketSpec(max_tokens=500, tokens_per_fill=1, fill_interval=3600.0)
KEY = bucket_key("listener", b"config", 0)


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    """A store file, attached in this process for the test."""
    path = create_store(tmp_path, capacity=64)
    attach_store(path)
    try:
        yield path
    finally:
        detach_store()
        remove_store(path)


def the_store() -> Store:
    store = shared_buckets.attached()
    assert store is not None
    return store


def bucket(key: bytes, spec: BucketSpec, now: float | None = None) -> SharedBucket | Bucket:
    """``key``'s bucket in the attached store (built at ``now``, default the real clock)."""
    at = time.monotonic() if now is None else now
    return the_store().bucket(key, spec, at, partial(TokenBucket, spec), "the test")


def shared(key: bytes, spec: BucketSpec, now: float | None = None) -> SharedBucket:
    """``key``'s bucket, which must be in the store (not an in-process fallback)."""
    found = bucket(key, spec, now)
    assert isinstance(found, SharedBucket)
    return found


# -- worker processes -------------------------------------------------------------------------
def _child(
    work: Callable[..., Any], args: tuple[Any, ...], queue: multiprocessing.Queue[Any]
) -> None:
    """A spawned process: ``work(*args)``'s result, or the error, back to the test."""
    try:
        queue.put(("ok", work(*args)))
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails
        queue.put(("error", repr(exc)))


def run_in_processes(work: Callable[..., Any], *arg_lists: tuple[Any, ...]) -> list[Any]:
    """Run ``work(*args)`` for each of ``arg_lists`` in its own spawned process, at the same
    time; their results, in no particular order. ``work`` must be a module-level function."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Any] = context.Queue()
    processes = [context.Process(target=_child, args=(work, a, queue)) for a in arg_lists]
    for process in processes:
        process.start()
    try:
        outcomes = [queue.get(timeout=PROCESS_TIMEOUT) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=PROCESS_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
    assert [kind for kind, _ in outcomes] == ["ok"] * len(processes), outcomes
    assert all(p.exitcode == 0 for p in processes)
    return [value for _, value in outcomes]


def _hammer(path: str, spec: BucketSpec, start: Any, takes: int) -> int:
    """Attach, wait for the others, take ``takes`` times as fast as possible: tokens got."""
    attach_store(path)
    taking = bucket(KEY, spec)
    start.wait(PROCESS_TIMEOUT)
    return sum(taking.take(time.monotonic()) for _ in range(takes))


def _hammer_for(path: str, spec: BucketSpec, start: Any, seconds: float) -> tuple[int, float]:
    """Take for ``seconds`` after the others are ready: (tokens got, time of the last take)."""
    attach_store(path)
    taking = bucket(KEY, spec)
    start.wait(PROCESS_TIMEOUT)
    deadline = time.monotonic() + seconds
    got = 0
    now = last = time.monotonic()
    while now < deadline:
        got += taking.take(now)
        last = now
        now = time.monotonic()
    return got, last


def _take(path: str, spec: BucketSpec, takes: int) -> int:
    """A worker's life: attach, take ``takes`` times, exit."""
    attach_store(path)
    taking = bucket(KEY, spec)
    return sum(taking.take(time.monotonic()) for _ in range(takes))


# -- the file ---------------------------------------------------------------------------------
def test_store_file_has_a_header_and_zeroed_slots_in_dev_shm() -> None:
    path = create_store(capacity=3)
    try:
        if Path("/dev/shm").is_dir():
            assert path.parent == Path("/dev/shm")
        data = path.read_bytes()
        assert len(data) == HEADER_SIZE + 3 * SLOT_SIZE
        assert data[:20] == MAGIC + (1).to_bytes(4, "little") + (3).to_bytes(4, "little") + (
            SLOT_SIZE
        ).to_bytes(4, "little")
        assert data[20:] == bytes(len(data) - 20)
    finally:
        remove_store(path)
    assert not path.exists()
    remove_store(path)  # already gone: no error


def test_create_store_refuses_no_capacity_and_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 1 slot"):
        create_store(tmp_path, capacity=0)
    with pytest.raises(ConfigError) as info:
        create_store(tmp_path / "absent")
    assert info.value.path == str(tmp_path / "absent")


def _good(tmp_path: Path) -> bytes:
    path = create_store(tmp_path, capacity=2)
    data = path.read_bytes()
    remove_store(path)
    return data


@pytest.mark.parametrize(
    ("mangle", "text"),
    [
        (lambda data: b"", "no header"),
        (lambda data: b"NOTASTORE" + data[9:], "no header"),
        (lambda data: data[:8] + (2).to_bytes(4, "little") + data[12:], "version 2"),
        (lambda data: data[:16] + (32).to_bytes(4, "little") + data[20:], "slot size 32"),
        (lambda data: data[:-1], "says 2 slots"),
        (lambda data: data[:12] + (0).to_bytes(4, "little") + data[16:], "says 0 slots"),
    ],
)
def test_attach_refuses_a_file_that_is_not_a_store(
    tmp_path: Path, mangle: Callable[[bytes], bytes], text: str
) -> None:
    path = tmp_path / "bad.buckets"
    path.write_bytes(mangle(_good(tmp_path)))
    with pytest.raises(ConfigError, match=text) as info:
        attach_store(path)
    assert info.value.path == str(path)
    assert shared_buckets.attached() is None


def test_attach_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such rate limit bucket store") as info:
        attach_store(str(tmp_path / "gone"))
    assert info.value.path == str(tmp_path / "gone")


def test_attaching_a_file_again_reuses_its_mapping(store_path: Path) -> None:
    """One descriptor per file and process: closing a second one would drop the locks the
    process holds through the first."""
    first = the_store()
    attach_store(store_path)
    assert the_store() is first
    fds = len(os.listdir("/proc/self/fd"))
    attach_store(store_path)
    assert len(os.listdir("/proc/self/fd")) == fds


# -- keys and arithmetic ----------------------------------------------------------------------
def test_bucket_keys_depend_on_every_part_and_not_on_where_the_parts_split() -> None:
    keys = {
        bucket_key("l", b"c", 0),
        bucket_key("l", b"c", 1),
        bucket_key("l", b"c", shared_buckets.DEFAULT_INDEX),
        bucket_key("l", b"d", 0),
        bucket_key("m", b"c", 0),
        bucket_key("lc", b"", 0),
        bucket_key("", b"lc", 0),
    }
    assert len(keys) == 7
    assert all(len(k) == 16 and any(k) for k in keys)
    assert bucket_key("l", b"c", 0) == bucket_key("l", b"c", 0)


SPECS = [
    BucketSpec(max_tokens=3, tokens_per_fill=1, fill_interval=1.0),
    BucketSpec(max_tokens=5, tokens_per_fill=2, fill_interval=0.25),
    BucketSpec(max_tokens=1, tokens_per_fill=1, fill_interval=2.0**-10),
    BucketSpec(max_tokens=100, tokens_per_fill=7, fill_interval=0.1),
]


@pytest.mark.parametrize("spec", SPECS)
def test_shared_bucket_takes_exactly_as_the_in_process_bucket(
    store_path: Path, spec: BucketSpec
) -> None:
    rng = random.Random(repr(spec))
    start = 1000.0
    in_store = shared(bucket_key("l", repr(spec).encode(), 0), spec, start)
    local = TokenBucket(spec, start)
    now = start
    outcomes = []
    for _ in range(1000):
        for _ in range(rng.randint(1, 3 * spec.tokens_per_fill)):
            outcomes.append(in_store.take(now))
            assert outcomes[-1] == local.take(now), len(outcomes)
            assert in_store.state() == (local.tokens, local.next_fill)
        interval = spec.fill_interval
        now += rng.choice([0.0, interval / 3, interval, 2.5 * interval, 20 * interval])
    assert 0 < sum(outcomes) < len(outcomes)  # both full and empty buckets were seen


def test_one_key_is_one_bucket_and_keys_are_independent(store_path: Path) -> None:
    spec = BucketSpec(max_tokens=3, tokens_per_fill=1, fill_interval=3600.0)
    a1, a2 = bucket(bucket_key("a", b"", 0), spec), bucket(bucket_key("a", b"", 0), spec)
    b = bucket(bucket_key("b", b"", 0), spec)
    now = time.monotonic()
    assert [a1.take(now), a2.take(now), a1.take(now), a2.take(now)] == [True] * 3 + [False]
    assert [b.take(now) for _ in range(4)] == [True] * 3 + [False]


# -- a full store -----------------------------------------------------------------------------
def test_full_store_falls_back_to_an_in_process_bucket_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = create_store(tmp_path, capacity=2)
    attach_store(path)
    try:
        spec = BucketSpec(max_tokens=2, tokens_per_fill=1, fill_interval=3600.0)
        now = time.monotonic()
        for name in ("a", "b"):  # two slots, neither full: nothing to take over
            assert bucket(bucket_key(name, b"", 0), spec, now).take(now)
        with caplog.at_level(logging.ERROR, logger=shared_buckets.__name__):
            extra = [bucket(bucket_key(name, b"", 0), spec, now) for name in ("c", "d")]
        assert all(type(b) is TokenBucket for b in extra)
        assert [extra[0].take(now) for _ in range(3)] == [True, True, False]
        [record] = caplog.records
        assert str(path) in record.getMessage()
        assert "full (2 slots" in record.getMessage()
        assert "stays in its worker process" in record.getMessage()
    finally:
        detach_store()
        remove_store(path)


def test_a_full_bucket_gives_its_slot_up_and_its_owner_finds_another(tmp_path: Path) -> None:
    path = create_store(tmp_path, capacity=1)
    attach_store(path)
    try:
        spec = BucketSpec(max_tokens=2, tokens_per_fill=1, fill_interval=10.0)
        first = shared(bucket_key("first", b"", 0), spec, 0.0)
        assert first.take(0.0)
        # t=1: the only slot's bucket is not full (1 token until t=10): no slot.
        assert type(bucket(bucket_key("second", b"", 0), spec, 1.0)) is TokenBucket
        # t=10: it is full again, so a new key takes the slot over...
        third = shared(bucket_key("third", b"", 0), spec, 10.0)
        assert third.take(10.0)
        assert third.state() == (1, 20.0)
        # ...and its old owner, not finding its key there, starts over in its process
        # (the store has no slot: the new bucket is not full): full, as it was.
        assert [first.take(10.0) for _ in range(3)] == [True, True, False]
        assert first.state() is None
        assert third.state() == (1, 20.0)
        # At t=20 the slot's bucket is full again: a fourth key takes it over...
        fourth = shared(bucket_key("fourth", b"", 0), spec, 20.0)
        assert fourth.state() == (2, 30.0)
        # ...and loses it to third at once, as fourth is full (no take yet).
        assert third.take(20.0)
        assert (third.state(), fourth.state()) == ((1, 30.0), None)
        # fourth, which was full, is full in its process now (third is not full).
        assert [fourth.take(20.0) for _ in range(3)] == [True, True, False]
        assert (third.state(), fourth.state()) == ((1, 30.0), None)
    finally:
        detach_store()
        remove_store(path)


def test_a_lock_that_cannot_be_had_moves_the_bucket_into_the_process(
    store_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a failed request because of the store: ENOLCK (the kernel's lock table is full)
    on a take leaves that bucket in the process, logged."""
    spec = BucketSpec(max_tokens=2, tokens_per_fill=1, fill_interval=3600.0)
    in_store = shared(KEY, spec, 0.0)
    assert in_store.take(0.0)
    real = shared_buckets._lockf

    def no_locks(fd: int, cmd: int, length: int = 0, start: int = 0, whence: int = 0) -> Any:
        if cmd == shared_buckets._LOCK_EX:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        return real(fd, cmd, length, start, whence)

    monkeypatch.setattr(shared_buckets, "_lockf", no_locks)
    with caplog.at_level(logging.ERROR, logger=shared_buckets.__name__):
        assert [in_store.take(1.0) for _ in range(3)] == [True, True, False]  # anew, full
        # A bucket built meanwhile: in the process too.
        built = bucket(bucket_key("other", b"", 0), spec, 1.0)
    assert type(built) is TokenBucket
    assert [
        r.getMessage().startswith("local rate limit: cannot lock a bucket of the test")
        for r in caplog.records
    ] == [True, True]
    monkeypatch.undo()
    assert in_store.state() is None


# -- worker processes -------------------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [500, 20_000])
def test_three_processes_taking_at_once_get_exactly_max_tokens(
    store_path: Path, max_tokens: int
) -> None:
    """20 000 tokens keep the three busy together for long enough (~20 ms) that a take
    without the lock loses updates (seen: ~1 % more tokens than max)."""
    spec = dataclasses.replace(HOUR, max_tokens=max_tokens)
    start = multiprocessing.get_context("spawn").Barrier(3)
    takes = max_tokens * 2 // 3
    got = run_in_processes(_hammer, *[(str(store_path), spec, start, takes)] * 3)
    assert sum(got) == max_tokens
    # The bucket this process sees is empty too.
    assert not bucket(KEY, spec).take(time.monotonic())


def test_refills_are_shared_and_follow_the_one_monotonic_clock(store_path: Path) -> None:
    """Three processes take for 0.3 s from a bucket that fills 1 token a millisecond: they
    get one token per fill due by their last take (±1), by the parent's clock."""
    # Room for 20 s of fills (the processes' start-up) before the bucket would be full and
    # fills be lost: then every token made is one taken or left.
    spec = BucketSpec(max_tokens=20_000, tokens_per_fill=1, fill_interval=0.001)
    created = time.monotonic()
    mine = shared(KEY, spec, created)  # the parent creates the slot, the workers find it
    drained = sum(mine.take(created) for _ in range(spec.max_tokens + 1))
    assert drained == spec.max_tokens
    start = multiprocessing.get_context("spawn").Barrier(3)
    results = run_in_processes(_hammer_for, *[(str(store_path), spec, start, 0.3)] * 3)
    got = sum(n for n, _ in results)
    last = max(t for _, t in results)
    state = mine.state()
    assert state is not None
    left, next_fill = state
    fills = round((next_fill - created) / spec.fill_interval) - 1  # the fills applied
    due = math.floor((last - created) / spec.fill_interval)  # the fills due by the last take
    assert abs(fills - due) <= 1, (fills, due)
    assert got + left == fills * spec.tokens_per_fill  # no token lost or made
    assert fills > 300
    assert all(n > 0 for n, _ in results)


def test_a_restarted_worker_finds_the_tokens_its_predecessor_left(store_path: Path) -> None:
    spec = BucketSpec(max_tokens=10, tokens_per_fill=1, fill_interval=3600.0)
    before = time.monotonic()
    assert run_in_processes(_take, (str(store_path), spec, 4)) == [4]
    created = time.monotonic()
    assert run_in_processes(_take, (str(store_path), spec, 10)) == [6]  # not refilled
    state = shared(KEY, spec).state()
    assert state is not None
    tokens, next_fill = state
    assert tokens == 0
    assert before + spec.fill_interval <= next_fill <= created + spec.fill_interval
