from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from torua.storage.operations import InvalidOperation, KvDelete, KvPut, Operation
from torua.storage.shard_store import (
    DB_FILENAME,
    LogTruncated,
    SeqGap,
    ShardClosed,
    ShardMissing,
    ShardStats,
    ShardStore,
)

BIG = 8 << 20  # 8 MiB


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ShardStore]:
    s = ShardStore.open(tmp_path / "shard-7", 7, create=True)
    try:
        yield s
    finally:
        await s.close()


def dump(s: ShardStore) -> dict[str, tuple[bytes, str]]:
    """Full kv contents via snapshot_chunk paging."""
    out: dict[str, tuple[bytes, str]] = {}
    after: str | None = None
    while True:
        rows, after = s.snapshot_chunk(after, max_bytes=64 << 10)
        for key, value, ctype in rows:
            assert key not in out
            out[key] = (value, ctype)
        if after is None:
            return out


def all_log(s: ShardStore, after: int = 0) -> list[tuple[int, Operation]]:
    out: list[tuple[int, Operation]] = []
    while True:
        page = s.read_log(after, max_ops=7)
        if not page:
            return out
        out.extend(page)
        after = page[-1][0]


def external(s: ShardStore) -> sqlite3.Connection:
    return sqlite3.connect(s.directory / DB_FILENAME, isolation_level=None)


# ---------------------------------------------------------------- basic kv


async def test_put_get_overwrite_delete_missing(store: ShardStore) -> None:
    assert store.get("a") is None
    assert store.last_seq() == 0
    assert await store.apply(KvPut("a", b"one", "text/plain")) == 1
    assert store.get("a") == (b"one", "text/plain")
    assert await store.apply(KvPut("a", b"two")) == 2
    assert store.get("a") == (b"two", "application/octet-stream")
    assert await store.apply(KvDelete("a")) == 3
    assert store.get("a") is None
    assert await store.apply(KvDelete("never-existed")) == 4  # logged even if a no-op
    assert store.get("never-existed") is None
    assert await store.apply(KvPut("empty", b"")) == 5
    assert store.get("empty") == (b"", "application/octet-stream")
    assert store.last_seq() == 5


async def test_unusual_keys_and_big_value(store: ShardStore) -> None:
    keys = ["path/to/resource", "数字", "key-with-spaces here", "%_literal", "", "emoji-🙂", "a\x00b"]
    for i, key in enumerate(keys):
        await store.apply(KvPut(key, f"v{i}".encode()))
    big = bytes(range(256)) * (BIG // 256)
    await store.apply(KvPut("big", big))
    for i, key in enumerate(keys):
        assert store.get(key) == (f"v{i}".encode(), "application/octet-stream")
    got = store.get("big")
    assert got is not None and got[0] == big


async def test_invalid_op_fails_alone(store: ShardStore) -> None:
    with pytest.raises(InvalidOperation):
        await store.apply(KvPut("k", "not bytes"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.apply("kv.put")  # type: ignore[arg-type]
    assert store.last_seq() == 0
    assert await store.apply(KvPut("k", b"v")) == 1


# ------------------------------------------------------------- open/close


async def test_reopen_keeps_data_seq_and_stats(tmp_path: Path) -> None:
    d = tmp_path / "s"
    s = ShardStore.open(d, 3, create=True)
    for i in range(20):
        await s.apply(KvPut(f"k{i:02}", b"x" * i))
    await s.apply(KvDelete("k05"))
    before = (dump(s), s.last_seq(), s.stats(), all_log(s))
    await s.close()

    s2 = ShardStore.open(d, 3)
    try:
        assert (dump(s2), s2.last_seq(), s2.stats(), all_log(s2)) == before
        assert s2.last_seq() == 21
        assert await s2.apply(KvPut("new", b"n")) == 22
    finally:
        await s2.close()


@pytest.mark.parametrize("durable", [True, False])
async def test_durable_and_non_durable_modes(tmp_path: Path, durable: bool) -> None:
    d = tmp_path / "s"
    s = ShardStore.open(d, 1, durable=durable, create=True)
    assert s.durable is durable
    await s.apply(KvPut("k", b"v"))
    await s.close()
    with sqlite3.connect(d / DB_FILENAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # reopen in the other mode
    s2 = ShardStore.open(d, 1, durable=not durable)
    try:
        assert s2.get("k") == (b"v", "application/octet-stream")
        assert await s2.apply(KvDelete("k")) == 2
    finally:
        await s2.close()


def test_open_missing_dir_without_create(tmp_path: Path) -> None:
    d = tmp_path / "nope"
    with pytest.raises(ShardMissing):
        ShardStore.open(d, 1)
    assert not d.exists()
    d.mkdir()  # directory exists, database does not
    with pytest.raises(ShardMissing):
        ShardStore.open(d, 1)
    assert not ShardStore.exists(d)
    assert not (d / DB_FILENAME).exists()


async def test_wrong_shard_id_raises(tmp_path: Path) -> None:
    d = tmp_path / "s"
    s = ShardStore.open(d, 1, create=True)
    await s.apply(KvPut("k", b"v"))
    await s.close()
    with pytest.raises(ValueError):
        ShardStore.open(d, 2)
    with pytest.raises(ValueError):
        ShardStore.open(d, 2, create=True)
    s = ShardStore.open(d, 1)  # still fine with the right id
    try:
        assert s.get("k") is not None
    finally:
        await s.close()


async def test_create_on_existing_opens_it(tmp_path: Path) -> None:
    d = tmp_path / "s"
    s = ShardStore.open(d, 1, create=True)
    await s.apply(KvPut("k", b"v"))
    await s.close()
    s = ShardStore.open(d, 1, create=True)
    try:
        assert s.get("k") == (b"v", "application/octet-stream")
        assert s.last_seq() == 1
    finally:
        await s.close()


async def test_close_is_idempotent_and_apply_after_close_raises(tmp_path: Path) -> None:
    s = ShardStore.open(tmp_path / "s", 1, create=True)
    await s.apply(KvPut("k", b"v"))
    await s.close()
    await s.close()
    assert s.closed
    with pytest.raises(ShardClosed):
        await s.apply(KvPut("k2", b"v"))
    with pytest.raises(ShardClosed):
        await s.apply_at(2, KvPut("k2", b"v"))
    with pytest.raises(ShardClosed):
        s.get("k")
    with pytest.raises(ShardClosed):
        s.read_log(0)
    s2 = ShardStore.open(tmp_path / "s", 1)
    try:
        assert s2.get("k2") is None and s2.last_seq() == 1
    finally:
        await s2.close()


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    s = ShardStore.open(tmp_path / "s", 1, create=True)
    writes = [asyncio.ensure_future(s.apply(KvPut(f"k{i}", b"v"))) for i in range(50)]
    closing = asyncio.ensure_future(s.close())
    assert await asyncio.gather(*writes) == list(range(1, 51))
    await closing
    s2 = ShardStore.open(tmp_path / "s", 1)
    try:
        assert s2.stats().keys == 50 and s2.last_seq() == 50
    finally:
        await s2.close()


async def test_a_database_whose_first_commit_never_came_is_no_copy_and_is_made_anew(tmp_path: Path) -> None:
    """A kill between the creation of shard.db and its first commit (tables and meta)
    leaves a file that holds nothing: it is no copy, so the node creates it anew
    (found when such a replica refused every assignment after its restart)."""
    d = tmp_path / "s3"
    d.mkdir()
    conn = sqlite3.connect(d / DB_FILENAME)
    conn.execute("PRAGMA journal_mode = WAL")  # what the writer does before its first transaction
    conn.close()
    assert (d / DB_FILENAME).is_file() and not ShardStore.exists(d)
    with pytest.raises(ShardMissing):
        ShardStore.open(d, 3)
    s = ShardStore.open(d, 3, create=True)
    try:
        await s.apply(KvPut("k", b"v"))
    finally:
        await s.close()
    assert ShardStore.exists(d)
    s = ShardStore.open(d, 3)
    try:
        assert s.last_seq() == 1
    finally:
        await s.close()


async def test_exists_and_destroy(tmp_path: Path) -> None:
    d = tmp_path / "shards" / "s9"
    assert not ShardStore.exists(d)
    s = ShardStore.open(d, 9, create=True)
    await s.apply(KvPut("k", b"v"))
    assert ShardStore.exists(d)
    await s.close()
    ShardStore.destroy(d)
    assert not d.exists() and not ShardStore.exists(d)
    assert list((tmp_path / "shards").iterdir()) == []
    ShardStore.destroy(d)  # absent: no-op
    with pytest.raises(ShardMissing):
        ShardStore.open(d, 9)
    s = ShardStore.open(d, 9, create=True)  # fresh and empty
    try:
        assert s.get("k") is None and s.last_seq() == 0
    finally:
        await s.close()


# ----------------------------------------------------------- group commit


async def test_group_commit_200_concurrent(store: ShardStore) -> None:
    ops = [KvPut(f"key-{i:03}", f"value-{i}".encode()) for i in range(200)]
    seqs = await asyncio.gather(*(store.apply(op) for op in ops))
    assert seqs == list(range(1, 201))  # distinct, consecutive, in call order
    assert store.last_seq() == 200
    for i in range(200):
        assert store.get(f"key-{i:03}") == (f"value-{i}".encode(), "application/octet-stream")
    assert all_log(store) == list(zip(range(1, 201), ops))
    assert store.stats().keys == 200


async def test_group_commit_single_transaction_when_queued(store: ShardStore) -> None:
    """Requests queued while the writer waits for the write lock are
    committed together in one transaction."""
    ext = external(store)
    ext.execute("BEGIN IMMEDIATE")  # hold the SQLite write lock
    commits_before = store.commits

    async def release() -> None:  # runs after every apply() has queued
        ext.execute("COMMIT")

    ops = [KvPut(f"k{i:03}", b"v") for i in range(200)]
    results = await asyncio.gather(*(store.apply(op) for op in ops), release())
    ext.close()
    assert results[:-1] == list(range(1, 201))
    assert store.commits == commits_before + 1
    assert store.stats().keys == 200


async def test_batch_failure_fails_every_caller_and_leaves_nothing(store: ShardStore) -> None:
    await store.apply(KvPut("before", b"1"))
    ext = external(store)
    ext.execute("BEGIN IMMEDIATE")  # writer waits for the lock, queue fills up
    ext.execute(
        "CREATE TRIGGER reject_boom BEFORE INSERT ON kv WHEN NEW.key = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom rejected'); END"
    )

    async def release() -> None:
        ext.execute("COMMIT")

    results = await asyncio.gather(
        store.apply(KvPut("a", b"a")),
        store.apply(KvDelete("before")),
        store.apply(KvPut("boom", b"x")),
        store.apply(KvPut("c", b"c")),
        release(),
        return_exceptions=True,
    )
    ext.close()
    errors = results[:4]
    assert all(isinstance(e, sqlite3.IntegrityError) for e in errors), errors
    assert "boom rejected" in str(errors[0])
    # nothing of the batch is visible, seq did not advance
    assert store.get("a") is None and store.get("c") is None
    assert store.get("before") == (b"1", "application/octet-stream")
    assert store.last_seq() == 1
    assert [seq for seq, _ in all_log(store)] == [1]
    assert store.stats() == ShardStats(shard_id=7, keys=1, bytes=1, last_seq=1)
    # the store keeps working
    assert await store.apply(KvPut("a", b"a")) == 2
    assert store.get("a") == (b"a", "application/octet-stream")


async def test_per_request_error_does_not_fail_batch(store: ShardStore) -> None:
    ext = external(store)
    ext.execute("BEGIN IMMEDIATE")

    async def release() -> None:
        ext.execute("COMMIT")

    results = await asyncio.gather(
        store.apply(KvPut("a", b"a")),
        store.apply_at(10, KvPut("gap", b"g")),
        store.apply(KvPut("b", b"b")),
        release(),
        return_exceptions=True,
    )
    ext.close()
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], SeqGap)
    assert store.get("gap") is None
    assert store.stats().keys == 2


# -------------------------------------------------------------------- log


async def test_log_contains_typed_ops_in_order(store: ShardStore) -> None:
    ops: list[Operation] = [
        KvPut("a", b"1"),
        KvPut("b", b"2", "text/plain"),
        KvDelete("a"),
        KvPut("数字", b"3"),
    ]
    for op in ops:
        await store.apply(op)
    log = store.read_log(0)
    assert log == list(zip(range(1, 5), ops))
    assert type(log[2][1]) is KvDelete
    assert store.read_log(2) == list(zip(range(3, 5), ops[2:]))
    assert store.read_log(4) == []
    assert store.read_log(100) == []


async def test_read_log_paging(store: ShardStore) -> None:
    for i in range(10):
        await store.apply(KvPut(f"k{i}", b"x" * 1000))
    assert [s for s, _ in store.read_log(0, max_ops=3)] == [1, 2, 3]
    assert [s for s, _ in store.read_log(3, max_ops=3)] == [4, 5, 6]
    assert [s for s, _ in store.read_log(9, max_ops=3)] == [10]
    # each encoded op is a little over 1000 bytes
    assert [s for s, _ in store.read_log(0, max_bytes=2500)] == [1, 2]
    # at least one op even if it alone exceeds max_bytes
    assert [s for s, _ in store.read_log(4, max_bytes=10)] == [5]
    assert store.read_log(0, max_ops=0) == []
    assert [s for s, _ in all_log(store)] == list(range(1, 11))


async def test_truncate_log_and_log_truncated(tmp_path: Path) -> None:
    d = tmp_path / "s"
    s = ShardStore.open(d, 1, create=True)
    for i in range(10):
        await s.apply(KvPut(f"k{i}", b"v"))
    await s.truncate_log(5)
    assert s.base_seq() == 5 and s.last_seq() == 10
    with pytest.raises(LogTruncated):
        s.read_log(4)
    with pytest.raises(LogTruncated):
        s.read_log(0)
    assert [seq for seq, _ in s.read_log(5)] == [6, 7, 8, 9, 10]
    await s.truncate_log(3)  # never lowers base_seq
    assert s.base_seq() == 5
    with pytest.raises(LogTruncated):
        s.read_log(4)
    assert s.stats().keys == 10  # data untouched
    await s.close()

    s = ShardStore.open(d, 1)
    try:
        assert s.base_seq() == 5 and s.last_seq() == 10
        with pytest.raises(LogTruncated):
            s.read_log(4)
        await s.truncate_log(1000)  # clamped to last_seq
        assert s.base_seq() == 10 and s.last_seq() == 10
        assert s.read_log(10) == []
        assert await s.apply(KvPut("next", b"v")) == 11
        assert [seq for seq, _ in s.read_log(10)] == [11]
    finally:
        await s.close()


async def test_set_base_seq(tmp_path: Path) -> None:
    d = tmp_path / "s"
    s = ShardStore.open(d, 1, create=True)
    await s.apply(KvPut("a", b"1"))
    await s.install_rows([("x", b"xx", "text/plain"), ("y", b"yyy", "application/octet-stream")])
    assert s.last_seq() == 1  # install_rows is not logged
    await s.set_base_seq(40)
    assert s.last_seq() == 40 and s.base_seq() == 40
    assert s.read_log(40) == []
    with pytest.raises(LogTruncated):
        s.read_log(39)
    assert s.get("x") == (b"xx", "text/plain")
    assert await s.apply(KvPut("b", b"2")) == 41
    await s.close()
    s = ShardStore.open(d, 1)
    try:
        assert s.last_seq() == 41 and s.base_seq() == 40
        assert s.stats() == ShardStats(shard_id=1, keys=4, bytes=1 + 2 + 3 + 1, last_seq=41)
    finally:
        await s.close()


async def test_apply_at(store: ShardStore) -> None:
    await store.apply_at(1, KvPut("a", b"1"))
    await store.apply_at(2, KvPut("b", b"2"))
    assert store.last_seq() == 2
    # idempotent: already-applied seqs are ignored
    await store.apply_at(1, KvDelete("a"))
    await store.apply_at(2, KvDelete("b"))
    assert store.get("a") == (b"1", "application/octet-stream")
    assert store.get("b") == (b"2", "application/octet-stream")
    before = (dump(store), store.stats(), store.read_log(0))
    with pytest.raises(SeqGap):
        await store.apply_at(4, KvPut("c", b"3"))
    assert isinstance(SeqGap("x"), ValueError)
    assert (dump(store), store.stats(), store.read_log(0)) == before
    assert store.last_seq() == 2
    await store.apply_at(3, KvPut("c", b"3"))
    assert store.last_seq() == 3 and store.get("c") is not None
    assert await store.apply(KvDelete("c")) == 4


# --------------------------------------------------------------- snapshot


async def test_snapshot_chunk_paging_covers_all_rows_once(store: ShardStore) -> None:
    big = b"B" * BIG
    rows = {
        "path/to/resource": (b"r", "text/plain"),
        "数字": (b"digits", "text/plain; charset=utf-8"),
        "key-with-spaces here": (b"s" * 3000, "application/octet-stream"),
        "%_literal": (b"%", "application/octet-stream"),
        "big": (big, "application/x-big"),
        "": (b"empty key", "application/octet-stream"),
    }
    for i in range(50):
        rows[f"k{i:02}"] = (bytes([i]) * (i * 37), "application/octet-stream")
    for key, (value, ctype) in rows.items():
        await store.apply(KvPut(key, value, ctype))

    seen: list[str] = []
    got: dict[str, tuple[bytes, str]] = {}
    after: str | None = None
    chunks = 0
    while True:
        chunk, after = store.snapshot_chunk(after, max_bytes=1000)
        chunks += 1
        assert chunk, "non-final chunks are never empty"
        if any(k == "big" for k, _, _ in chunk):
            assert len(chunk) == 1  # an oversized row comes alone
        for key, value, ctype in chunk:
            seen.append(key)
            got[key] = (value, ctype)
        if after is None:
            break
        assert after == chunk[-1][0]
    assert seen == sorted(rows)  # key order, each exactly once
    assert got == rows
    assert chunks > 3

    # one chunk with a large budget holds everything
    everything, nxt = store.snapshot_chunk(None, max_bytes=1 << 30)
    assert nxt is None and [r[0] for r in everything] == sorted(rows)


async def test_snapshot_chunk_empty_store(store: ShardStore) -> None:
    assert store.snapshot_chunk(None) == ([], None)
    await store.apply(KvPut("a", b"1"))
    assert store.snapshot_chunk("a") == ([], None)
    assert store.snapshot_chunk(None) == ([("a", b"1", "application/octet-stream")], None)


async def test_move_simulation(tmp_path: Path) -> None:
    src = ShardStore.open(tmp_path / "src", 5, create=True)
    for i in range(60):
        await src.apply(KvPut(f"key/{i:03}", f"v{i}".encode() * (i + 1), "text/plain"))
    await src.apply(KvPut("数字", b"n"))
    await src.apply(KvDelete("key/010"))
    await src.truncate_log(20)  # the source log need not start at 0

    base = src.last_seq()  # taken before the first chunk
    dst = ShardStore.open(tmp_path / "dst", 5, create=True, durable=False)
    after: str | None = None
    round_ = 0
    while True:
        rows, after = src.snapshot_chunk(after, max_bytes=500)
        await dst.install_rows(rows)
        # concurrent writes on the source between chunks: new keys before and
        # after the copy cursor, overwrites, deletes of copied and uncopied keys
        await src.apply(KvPut(f"key/{round_ % 60:03}", b"overwritten"))
        await src.apply(KvPut(f"aaa-new-{round_}", b"early"))
        await src.apply(KvPut(f"zzz-new-{round_}", b"late"))
        await src.apply(KvDelete(f"key/{(round_ * 7 + 3) % 60:03}"))
        await src.apply(KvDelete(f"aaa-new-{round_ - 1}"))
        round_ += 1
        if after is None:
            break
    assert round_ > 3
    await dst.set_base_seq(base)
    assert dst.last_seq() == base

    cursor = base
    while True:
        page = src.read_log(cursor, max_ops=16)
        if not page:
            break
        for seq, op in page:
            await dst.apply_at(seq, op)
        cursor = page[-1][0]

    assert dump(dst) == dump(src)
    assert dst.last_seq() == src.last_seq()
    assert dst.stats() == ShardStats(
        shard_id=5, keys=src.stats().keys, bytes=src.stats().bytes, last_seq=src.last_seq()
    )
    # replaying again is a no-op
    for seq, op in src.read_log(base, max_ops=5):
        await dst.apply_at(seq, op)
    assert dump(dst) == dump(src)
    await src.close()
    await dst.close()
    ShardStore.destroy(tmp_path / "src")
    assert not ShardStore.exists(tmp_path / "src")


# ------------------------------------------------------------ list / stats


async def test_list_keys(store: ShardStore) -> None:
    keys = [
        "%_literal", "%x", "_x", "a%b", "abc", "abd", "ab", "b", "user/1", "user/2",
        "user/10", "user0", "数字", "数", "\U0010ffff", "\U0010ffffz",
    ]
    for k in keys:
        await store.apply(KvPut(k, b"v"))
    assert store.list_keys() == sorted(keys)
    assert store.list_keys("%") == ["%_literal", "%x"]
    assert store.list_keys("%_") == ["%_literal"]
    assert store.list_keys("_") == ["_x"]
    assert store.list_keys("ab") == ["ab", "abc", "abd"]
    assert store.list_keys("user/") == ["user/1", "user/10", "user/2"]
    assert store.list_keys("user/", after="user/1") == ["user/10", "user/2"]
    assert store.list_keys("user/", limit=2) == ["user/1", "user/10"]
    assert store.list_keys("user/", after="user/2") == []
    assert store.list_keys(after="user0") == ["数", "数字", "\U0010ffff", "\U0010ffffz"]
    assert store.list_keys("数") == ["数", "数字"]
    assert store.list_keys("\U0010ffff") == ["\U0010ffff", "\U0010ffffz"]
    assert store.list_keys("zzz") == []
    assert store.list_keys(limit=0) == []
    # paging through everything with after/limit
    paged: list[str] = []
    cursor: str | None = None
    while page := store.list_keys(after=cursor, limit=3):
        paged.extend(page)
        cursor = page[-1]
    assert paged == sorted(keys)


async def test_stats_counts(store: ShardStore) -> None:
    assert store.stats() == ShardStats(shard_id=7, keys=0, bytes=0, last_seq=0)
    await store.apply(KvPut("a", b"12345"))
    await store.apply(KvPut("b", b"123"))
    assert store.stats() == ShardStats(shard_id=7, keys=2, bytes=8, last_seq=2)
    await store.apply(KvPut("a", b"1"))  # overwrite shrinks
    assert store.stats() == ShardStats(shard_id=7, keys=2, bytes=4, last_seq=3)
    await store.apply(KvDelete("b"))
    await store.apply(KvDelete("b"))  # deleting a missing key changes nothing
    assert store.stats() == ShardStats(shard_id=7, keys=1, bytes=1, last_seq=5)
    await store.install_rows([("a", b"xyz", "t"), ("c", b"", "t")])
    assert store.stats() == ShardStats(shard_id=7, keys=2, bytes=3, last_seq=5)
    await asyncio.gather(*(store.apply(KvPut(f"g{i}", b"x" * i)) for i in range(100)))
    st = store.stats()
    contents = dump(store)
    assert st.keys == len(contents) == 102
    assert st.bytes == sum(len(v) for v, _ in contents.values())
    assert st.last_seq == store.last_seq() == 105


async def test_apply_many_at_is_all_or_nothing(store: ShardStore) -> None:
    await store.apply_many_at([(1, KvPut("a", b"1")), (2, KvPut("b", b"2"))])
    assert store.last_seq() == 2
    before = (dump(store), store.stats(), store.read_log(0))
    # 2 is already there (skipped), 5 leaves a gap after 3: nothing of the run is applied
    with pytest.raises(SeqGap):
        await store.apply_many_at([(2, KvDelete("b")), (3, KvPut("c", b"3")), (5, KvPut("d", b"4"))])
    assert (dump(store), store.stats(), store.read_log(0)) == before
    await store.apply_many_at([(2, KvDelete("b")), (3, KvPut("c", b"3"))])
    assert store.last_seq() == 3
    assert store.get("b") == (b"2", "application/octet-stream") and store.get("c") is not None


# ------------------------------------------- operations of a newer release


def newer_put(key: str, value: bytes, **added: object) -> bytes:
    """A kv.put as a newer release logs it: with fields this release does not know."""
    return msgpack.packb({"t": "kv.put", "key": key, "value": value, "content_type": "text/plain", **added}, use_bin_type=True)


def log_on_disk(directory: Path, seq: int, blob: bytes) -> None:
    """Append `blob` to a closed store's log as another release would have written it
    (only the log: the tests here read nothing else of that store)."""
    with sqlite3.connect(directory / DB_FILENAME) as conn:
        conn.execute("INSERT INTO oplog(seq, op) VALUES (?, ?)", (seq, blob))


async def test_a_log_written_by_a_newer_release_is_read_and_caught_up_from(tmp_path: Path) -> None:
    """A node rolled back to this release finds ops with fields it does not know in its own
    log; it still reads them, and a replica catches up from it (the decoded path)."""
    newer = ShardStore.open(tmp_path / "newer", 3, create=True)
    await newer.apply(KvPut("a", b"1"))
    await newer.close()
    log_on_disk(tmp_path / "newer", 2, newer_put("b", b"2", ttl=60))
    source = ShardStore.open(tmp_path / "newer", 3)
    replica = ShardStore.open(tmp_path / "replica", 3, create=True)
    try:
        assert source.read_log(1) == [(2, KvPut("b", b"2", "text/plain"))]
        await replica.apply_many_at(source.read_log(0))
        assert replica.last_seq() == 2 and replica.get("b") == (b"2", "text/plain")
    finally:
        await source.close()
        await replica.close()


async def test_a_replica_applies_a_newer_releases_ops_and_logs_them_as_they_came(tmp_path: Path) -> None:
    """The replication path (`read_log_encoded` on the primary, `apply_encoded_at` on the
    replica): an older replica applies what it knows of the op and keeps its bytes, so a
    newer node that later copies from the older one still gets the added field."""
    blob = newer_put("b", b"2", ttl=60, meta={"by": "n1"})
    primary = ShardStore.open(tmp_path / "primary", 3, create=True)  # of the newer release
    older = ShardStore.open(tmp_path / "older", 3, create=True)
    later = ShardStore.open(tmp_path / "later", 3, create=True)
    try:
        await primary.apply(KvPut("a", b"1"))
        await primary.apply_encoded_at([(2, blob)])
        await primary.apply(KvDelete("a"))
        await older.apply_encoded_at(primary.read_log_encoded(0))
        assert dump(older) == dump(primary) == {"b": (b"2", "text/plain")}
        assert older.read_log_encoded(0) == primary.read_log_encoded(0)
        assert older.read_log_encoded(1)[0] == (2, blob)
        await later.apply_encoded_at(older.read_log_encoded(0))
        assert msgpack.unpackb(later.read_log_encoded(1)[0][1])["ttl"] == 60
    finally:
        for s in (primary, older, later):
            await s.close()


async def test_an_unknown_operation_type_is_refused_and_nothing_of_the_run_applied(store: ShardStore) -> None:
    await store.apply(KvPut("a", b"1"))
    before = (dump(store), store.stats(), store.read_log_encoded(0))
    unknown = msgpack.packb({"t": "kv.expire", "key": "a", "at": 5}, use_bin_type=True)
    with pytest.raises(InvalidOperation, match="unknown operation type"):
        await store.apply_encoded_at([(2, newer_put("b", b"2")), (3, unknown)])
    with pytest.raises(InvalidOperation):  # a known field of the wrong type
        await store.apply_encoded_at([(2, newer_put("b", "not bytes"))])  # type: ignore[arg-type]
    assert (dump(store), store.stats(), store.read_log_encoded(0)) == before
