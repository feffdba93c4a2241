"""A shard store with the notes engine in a process of its own, for crash tests:
``python -m tests.support.note_store_child DIR MODE [CRASH_AT CRASH_KEY]``.

- ``batch``: reads writes from stdin, one JSON line each (``{"kind": "note" |
  "unnote" | "kv", "key", "text"}``) until EOF, then sends them all at once (so they
  group-commit) and prints ``ack <key> <seq>`` as each is acknowledged; with
  CRASH_AT, the notes engine SIGKILLs the process at that point of the apply of
  the batch holding CRASH_KEY.
- ``stream``: writes (notes, note deletes and kv puts over a few keys, eight at a
  time) until killed, printing ``ack <kind> <key> <text> <seq>`` for each.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.support.note_engine import NoteDelete, NoteEngine, NotePut, register
from torua.storage.operations import KvPut
from torua.storage.shard_store import ShardStore


def operation(kind: str, key: str, text: str) -> object:
    if kind == "note":
        return NotePut(key, text)
    if kind == "unnote":
        return NoteDelete(key)
    return KvPut(key, text.encode())


async def batch(store: ShardStore, writes: list[dict[str, str]]) -> None:
    async def one(write: dict[str, str]) -> None:
        seq = await store.apply(operation(write["kind"], write["key"], write["text"]))  # type: ignore[arg-type]
        print(f"ack {write['key']} {seq}", flush=True)

    await asyncio.gather(*(one(w) for w in writes))


async def stream(store: ShardStore) -> None:
    n = 0

    async def one(kind: str, key: str, text: str) -> None:
        seq = await store.apply(operation(kind, key, text))  # type: ignore[arg-type]
        print(f"ack {kind} {key} {text} {seq}", flush=True)

    while True:
        writes = []
        for _ in range(8):
            n += 1
            kind = ("note", "note", "kv", "unnote")[n % 4] if n % 7 else "unnote"
            writes.append(one(kind, f"k{n % 13}", f"t{n}"))
        await asyncio.gather(*writes)


async def main() -> None:
    directory, mode = Path(sys.argv[1]), sys.argv[2]
    crash_at, crash_key = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, "")
    register()
    store = ShardStore.open(directory, 1, create=True, engines=[NoteEngine.factory(crash_at, crash_key)])
    print("open", flush=True)
    if mode == "batch":
        await batch(store, [json.loads(line) for line in sys.stdin if line.strip()])
    else:
        await stream(store)
    await store.close()
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
