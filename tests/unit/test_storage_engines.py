"""The storage engine seam (torua.storage.engine, writer, kv_engine) with a real follower
engine: the notes engine of tests/support/note_engine.py (its own SQLite file, its own
applied seq), which the writer applies after the SQLite commit, as it will the graph."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from tests.support import note_engine
from tests.support.note_engine import FORMAT as NOTES
from tests.support.note_engine import (
    NoteDelete,
    NoteEngine,
    NotePut,
    applied_on_disk,
    open_notes,
)
from tests.support.processes import wait_until
from torua.storage.engine import Chunk, EngineOutOfStep, UnknownChunkFormat
from torua.storage.kv_engine import ROWS_FORMAT, encode_rows
from torua.storage.operations import KvDelete, KvPut, Operation
from torua.storage.shard_store import DB_FILENAME, ShardStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def notes_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    for table, key, value in note_engine.registrations():
        monkeypatch.setitem(table, key, value)


def open_store(directory: Path, create: bool = True, **engine: object) -> ShardStore:
    return ShardStore.open(directory, 1, create=create, engines=[NoteEngine.factory(**engine)])  # type: ignore[arg-type]


def notes_of(store: ShardStore) -> NoteEngine:
    engine = store.engine("notes")
    assert isinstance(engine, NoteEngine)
    return engine


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ShardStore]:
    s = open_store(tmp_path / "s")
    try:
        yield s
    finally:
        await s.close()


def expected_from_log(store: ShardStore) -> tuple[dict[str, str], dict[str, bytes]]:
    """The notes and keys the whole log (from seq 0) makes, applied in order."""
    notes: dict[str, str] = {}
    kv: dict[str, bytes] = {}
    after = 0
    while page := store.read_log(after):
        for _, op in page:
            if isinstance(op, NotePut):
                notes[op.key] = op.text
            elif isinstance(op, NoteDelete):
                notes.pop(op.key, None)
            elif isinstance(op, KvPut):
                kv[op.key] = op.value
            elif isinstance(op, KvDelete):
                kv.pop(op.key, None)
        after = page[-1][0]
    return notes, kv


def kv_rows(store: ShardStore) -> dict[str, bytes]:
    rows, _ = store.snapshot_chunk(None, 1 << 30)
    return {key: value for key, value, _ in rows}


def hold_write_lock(store: ShardStore) -> sqlite3.Connection:
    """Another connection takes shard.db's write lock: writes queue up meanwhile and then
    commit as one batch."""
    conn = sqlite3.connect(store.directory / DB_FILENAME, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


# ------------------------------------------------------------ routing and order


async def test_each_operation_goes_to_the_engine_of_its_type(store: ShardStore) -> None:
    assert await store.apply(KvPut("a", b"1")) == 1
    assert await store.apply(NotePut("a", "note")) == 2
    assert store.get("a") == (b"1", "application/octet-stream")
    assert notes_of(store).notes() == {"a": "note"}
    assert store.stats().keys == 1 and notes_of(store).stats() == {"notes": 1}
    assert store.read_log(0) == [(1, KvPut("a", b"1")), (2, NotePut("a", "note"))]


async def test_follower_applies_in_seq_order_after_the_commit_and_before_the_answer(store: ShardStore) -> None:
    engine = notes_of(store)
    seen_at_answer: dict[str, str | None] = {}

    async def note(i: int) -> int:
        seq = await store.apply(NotePut(f"n{i % 7}", f"v{i}"))
        seen_at_answer[f"v{i}"] = engine.notes().get(f"n{i % 7}")
        return seq

    lock = hold_write_lock(store)

    async def release() -> None:  # after every write has queued: one group commit
        lock.execute("COMMIT")
        lock.close()

    results = await asyncio.gather(*(note(i) if i % 3 else store.apply(KvPut(f"k{i}", b"x")) for i in range(60)), release())
    assert results[:-1] == list(range(1, 61))
    # acknowledged only once applied: each write saw its own note (or a later one on the same key)
    assert all(seen is not None and int(seen[1:]) >= int(text[1:]) for text, seen in seen_at_answer.items())
    applied = [seq for seqs, _ in engine.applies for seq in seqs]
    assert applied == sorted(applied) == [seq for seq, op in store.read_log(0) if isinstance(op, NotePut)]
    throughs = [through for _, through in engine.applies]
    assert throughs == sorted(throughs) and throughs[-1] == 60
    assert len(engine.applies) == 1  # one group commit, one follower transaction
    assert engine.notes() == expected_from_log(store)[0]
    assert store.applied_seq() == store.last_seq() == 60


async def test_apply_all_logs_a_batch_of_several_engines_in_one_transaction_or_none(store: ShardStore) -> None:
    commits = store.commits
    assert await store.apply_all([KvPut("a", b"1"), NotePut("n", "x"), KvDelete("a")]) == [1, 2, 3]
    assert store.commits == commits + 1
    assert store.get("a") is None and notes_of(store).notes() == {"n": "x"}
    with pytest.raises(TypeError):
        await store.apply_all([NotePut("m", "y"), object()])  # type: ignore[list-item]
    assert store.last_seq() == 3 and notes_of(store).notes() == {"n": "x"}
    assert await store.apply_all([]) == []


def test_engines_of_one_store_have_distinct_names_and_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two engines named 'notes'"):
        ShardStore.open(tmp_path / "a", 1, create=True, engines=[NoteEngine.factory(), NoteEngine.factory()])

    class Imposter(NoteEngine):
        name = "imposter"
        formats = (ROWS_FORMAT,)

    with pytest.raises(ValueError, match="snapshot format 'kv.rows.v1' of engine 'imposter' is already 'kv''s"):
        ShardStore.open(tmp_path / "b", 1, create=True, engines=[Imposter])


async def test_an_unregistered_or_unopened_engine_is_refused(tmp_path: Path) -> None:
    kv_only = ShardStore.open(tmp_path / "kv", 1, create=True)
    try:
        with pytest.raises(TypeError, match="no 'notes' engine"):
            await kv_only.apply(NotePut("a", "x"))
        with pytest.raises(TypeError):
            await kv_only.apply(object())  # type: ignore[arg-type]
        assert kv_only.last_seq() == 0
    finally:
        await kv_only.close()


# ------------------------------------------------------------ a follower that fails


async def test_a_write_the_follower_did_not_apply_is_not_acknowledged_and_stays_pending(store: ShardStore) -> None:
    engine = notes_of(store)
    await store.apply(NotePut("a", "1"))
    engine.refuse = {"bad"}
    lock = hold_write_lock(store)

    async def release() -> None:
        lock.execute("COMMIT")
        lock.close()

    kv_seq, failed, _ = await asyncio.gather(store.apply(KvPut("k", b"v")), store.apply(NotePut("bad", "2")), release(), return_exceptions=True)
    assert kv_seq == 2  # a write of another engine in the same batch is answered
    assert isinstance(failed, OSError)
    # the failed write is in the log (as after a timeout: its outcome is unknown) but not applied
    assert store.read_log(2) == [(3, NotePut("bad", "2"))]
    assert engine.notes() == {"a": "1"}
    assert store.last_seq() == 3 and store.applied_seq() == 2
    with pytest.raises(OSError):  # every batch retries it first
        await store.apply(NotePut("c", "3"))
    assert store.applied_seq() == 2
    engine.refuse = set()
    assert await store.apply(KvPut("k2", b"v")) == 5  # any batch retries what is pending
    assert store.applied_seq() == 5
    assert engine.notes() == {"a": "1", "bad": "2", "c": "3"}
    assert await store.apply(NotePut("d", "4")) == 6
    assert engine.notes() == {"a": "1", "bad": "2", "c": "3", "d": "4"}
    assert store.applied_seq() == 6


async def test_the_log_is_not_trimmed_past_an_op_the_follower_has_not_applied(store: ShardStore) -> None:
    engine = notes_of(store)
    await store.apply(NotePut("a", "1"))
    engine.refuse = {"bad"}
    with pytest.raises(OSError):
        await store.apply(NotePut("bad", "2"))
    for i in range(10):
        await store.apply(KvPut(f"k{i}", b"v"))
    await store.truncate_log(12)
    assert store.base_seq() == 1  # seq 2 is still to be applied
    assert [seq for seq, _ in store.read_log(1)] == list(range(2, 13))
    engine.refuse = set()
    await store.apply(NotePut("c", "3"))
    await store.truncate_log(12)
    assert store.base_seq() == 12
    assert engine.notes() == {"a": "1", "bad": "2", "c": "3"}


async def test_trimming_moves_the_followers_applied_seq_past_other_engines_ops_first(store: ShardStore) -> None:
    await store.apply(NotePut("a", "1"))
    for i in range(20):
        await store.apply(KvPut(f"k{i}", b"v"))
    assert applied_on_disk(store.directory) == 1
    await store.truncate_log(15)
    assert store.base_seq() == 15
    assert applied_on_disk(store.directory) == 15  # so a reopen finds it within the log


async def test_a_store_whose_follower_holds_nothing_trims_freely_and_creates_no_files(store: ShardStore) -> None:
    for i in range(10):
        await store.apply(KvPut(f"k{i}", b"v"))
    await store.truncate_log(8)
    assert store.base_seq() == 8
    assert applied_on_disk(store.directory) is None
    assert store.held_formats() == (ROWS_FORMAT,)
    await store.apply(NotePut("a", "1"))
    assert store.held_formats() == (ROWS_FORMAT, NOTES)


# ------------------------------------------------------------ reopening


async def test_reopen_replays_the_ops_the_follower_missed(tmp_path: Path) -> None:
    s = open_store(tmp_path / "s")
    await s.apply(NotePut("a", "1"))
    notes_of(s).refuse = {"b", "c"}
    for op in (NotePut("b", "2"), KvPut("k", b"v"), NoteDelete("a"), NotePut("c", "3")):
        try:
            await s.apply(op)
        except OSError:
            pass
    await s.close()  # still refused at close: pending on disk only in the log
    assert open_notes(tmp_path / "s") == {"a": "1"} and applied_on_disk(tmp_path / "s") == 1
    s = open_store(tmp_path / "s", create=False)
    try:
        assert notes_of(s).notes() == {"b": "2", "c": "3"}
        assert s.applied_seq() == s.last_seq() == 5
        assert applied_on_disk(tmp_path / "s") == 5
    finally:
        await s.close()


async def test_a_clean_close_moves_the_follower_to_the_end_of_the_log(tmp_path: Path) -> None:
    s = open_store(tmp_path / "s")
    await s.apply(NotePut("a", "1"))
    for i in range(5):
        await s.apply(KvPut(f"k{i}", b"v"))
    assert applied_on_disk(tmp_path / "s") == 1
    await s.close()
    assert applied_on_disk(tmp_path / "s") == 6


async def test_lost_follower_files_are_rebuilt_from_a_whole_log_and_refused_after_a_trim(tmp_path: Path) -> None:
    d = tmp_path / "s"
    s = open_store(d)
    for i in range(5):
        await s.apply(KvPut(f"k{i}", b"v"))
    await s.apply(NotePut("a", "1"))
    await s.apply(NotePut("b", "2"))
    await s.truncate_log(3)  # only kv ops go: the notes are all still in the log
    await s.close()
    (d / note_engine.FILENAME).unlink()
    s = open_store(d, create=False)  # its data starts after seq 5, which the log still has
    try:
        assert notes_of(s).notes() == {"a": "1", "b": "2"}
        await s.truncate_log(7)
    finally:
        await s.close()
    (d / note_engine.FILENAME).unlink()
    with pytest.raises(EngineOutOfStep, match="notes engine has applied up to seq 5, but the log holds seqs 8 to 7"):
        open_store(d, create=False)
    with pytest.raises(EngineOutOfStep, match="engines \\['notes'\\] that were not opened"):
        ShardStore.open(d, 1)


# ------------------------------------------------------------ snapshots


async def copy_store(src: ShardStore, dst: ShardStore, max_bytes: int, between: list[Operation]) -> int:
    """A move: snapshot chunks (writes go on at the source between them), base seq, log."""
    base = src.applied_seq()
    cursor: bytes | None = None
    formats: list[str] = []
    for op in between:
        chunks, cursor = src.snapshot_chunks(cursor, max_bytes)
        formats += [c.format for c in chunks]
        await dst.install_chunks(chunks)
        await src.apply(op)
        if cursor is None:
            break
    while cursor is not None:
        chunks, cursor = src.snapshot_chunks(cursor, max_bytes)
        formats += [c.format for c in chunks]
        await dst.install_chunks(chunks)
    await dst.set_base_seq(base)
    await dst.apply_encoded_at(src.read_log_encoded(base, max_ops=10**6))
    assert formats == sorted(formats, key=[ROWS_FORMAT, NOTES].index)  # one engine after the other
    return len(formats)


async def test_snapshot_chunks_of_several_formats_move_a_copy(tmp_path: Path) -> None:
    src, dst = open_store(tmp_path / "src"), open_store(tmp_path / "dst")
    try:
        for i in range(40):
            await src.apply(KvPut(f"k{i:02}", bytes([i]) * (i * 10)))
            await src.apply(NotePut(f"n{i:02}", "x" * i))
        await src.apply(NoteDelete("n03"))
        await src.truncate_log(30)
        between: list[Operation] = []
        for i in range(40):  # overwrites and deletes before and behind the cursors
            between += [NotePut(f"n{(i * 7) % 40:02}", f"new{i}"), NoteDelete(f"n{(i * 11) % 40:02}"), KvPut(f"k{(i * 3) % 40:02}", b"new"), KvDelete(f"k{(i * 5) % 40:02}")]
        chunks = await copy_store(src, dst, 200, between)
        assert chunks > 6
        assert notes_of(dst).notes() == notes_of(src).notes()
        assert kv_rows(dst) == kv_rows(src)
        assert dst.stats() == src.stats() and dst.last_seq() == src.last_seq()
        assert applied_on_disk(dst.directory) == dst.last_seq()
    finally:
        await src.close()
        await dst.close()
    reopened = open_store(tmp_path / "dst", create=False)
    try:
        assert notes_of(reopened).notes() == open_notes(tmp_path / "src")
    finally:
        await reopened.close()


async def test_a_snapshot_of_an_empty_store_and_of_a_kv_only_store(store: ShardStore) -> None:
    assert store.snapshot_chunks(None) == ([], None)
    await store.apply(KvPut("a", b"1"))
    chunks, cursor = store.snapshot_chunks(None)
    assert chunks == [Chunk(ROWS_FORMAT, encode_rows([("a", b"1", "application/octet-stream")]))]
    assert store.snapshot_chunks(cursor) == ([], None)  # the notes engine holds nothing
    with pytest.raises(ValueError, match="not a snapshot cursor"):
        store.snapshot_chunks(b"garbage")
    with pytest.raises(ValueError, match="not a snapshot cursor"):
        store.snapshot_chunks(msgpack.packb(["graph", None]))


async def test_a_chunk_of_an_unknown_format_is_refused_and_nothing_of_the_call_installed(tmp_path: Path) -> None:
    kv_only = ShardStore.open(tmp_path / "kv", 1, create=True)
    try:
        good = Chunk(ROWS_FORMAT, encode_rows([("a", b"1", "t")]))
        with pytest.raises(UnknownChunkFormat, match="'notes.rows.v1' is not one this node installs \\(kv.rows.v1\\)"):
            await kv_only.install_chunks([good, Chunk(NOTES, msgpack.packb([["n", "x"]]))])
        assert kv_only.get("a") is None
        with pytest.raises(ValueError, match="kv.rows.v1 chunk"):
            await kv_only.install_chunks([Chunk(ROWS_FORMAT, b"\xc1")])
        await kv_only.install_chunks([good])
        assert kv_only.get("a") == (b"1", "t") and kv_only.stats().keys == 1 and kv_only.last_seq() == 0
    finally:
        await kv_only.close()


# ------------------------------------------------------------ crashes (SIGKILL)


def run_child(directory: Path, mode: str, *args: str, stdin: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.note_store_child", str(directory), mode, *args],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


async def check_recovered(directory: Path) -> ShardStore:
    """Reopened after a crash: the follower holds exactly the log's notes, and its
    applied seq is the log's end."""
    store = open_store(directory, create=False)
    notes, kv = expected_from_log(store)
    assert notes_of(store).notes() == notes
    assert kv_rows(store) == kv
    assert store.applied_seq() == store.last_seq()
    return store


@pytest.mark.parametrize("point", note_engine.CRASH_POINTS)
async def test_a_kill_between_the_commit_and_the_followers_apply_is_replayed_on_open(tmp_path: Path, children: list, point: str) -> None:
    d = tmp_path / "s"
    writes = [{"kind": ("note", "kv", "unnote")[i % 3], "key": f"k{i % 5}", "text": f"t{i}"} for i in range(30)]
    writes.append({"kind": "note", "key": "boom", "text": "last"})
    proc = run_child(d, "batch", point, "boom")
    children.append(proc)
    out, err = proc.communicate("\n".join(json.dumps(w) for w in writes), timeout=60)
    assert proc.returncode == -9, err
    acked = {line.split()[1] for line in out.splitlines() if line.startswith("ack ")}
    assert "boom" not in acked  # the kill came before its answer
    store = await check_recovered(d)
    try:
        notes, _ = expected_from_log(store)
        assert notes["boom"] == "last"  # committed to the log before the kill: never lost
        assert store.last_seq() == len(writes)
        assert applied_on_disk(d) == len(writes)
        await store.apply(NotePut("after", "x"))
        assert notes_of(store).notes()["after"] == "x"
    finally:
        await store.close()


async def test_kills_at_any_moment_of_a_stream_of_writes(tmp_path: Path, children: list) -> None:
    d = tmp_path / "s"
    acked: list[tuple[str, str, str, int]] = []
    for round_ in range(3):
        proc = run_child(d, "stream")
        children.append(proc)
        proc.stdin.close()  # type: ignore[union-attr]
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        wait_until(lambda: sum(line.startswith("ack") for line in lines) >= 40 + 37 * round_, 30, "writes acknowledged")
        proc.kill()
        proc.wait(10)
        reader.join(10)
        for line in lines:
            if line.startswith("ack "):
                kind, key, text, seq = line.split()[1:]
                acked.append((kind, key, text, int(seq)))
        store = await check_recovered(d)
        try:
            logged = {seq: op for seq, op in store.read_log(0, max_ops=10**6)}
            for kind, key, text, seq in acked:  # every acknowledged write is in the log, as it was written
                op = logged[seq]
                assert (type(op).__name__, op.key) == ({"note": "NotePut", "unnote": "NoteDelete", "kv": "KvPut"}[kind], key)
                assert getattr(op, "text", text) == text
        finally:
            await store.close()
