"""A shard store with the graph rows engine in a process of its own, for crash tests:
``python -m tests.support.graph_store_child DIR SEED`` writes batches of random graph
operations (several at once, so they group-commit) until killed, printing
``ack <first seq> <last seq>`` as each batch is acknowledged."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from tests.support.graph_row_ops import random_ops
from torua.graph.rows import GraphRows
from torua.storage.shard_store import ShardStore


async def main() -> None:
    directory, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    store = ShardStore.open(directory, 1, create=True, engines=[GraphRows])
    print("open", flush=True)

    async def one(count: int) -> None:
        seqs = await store.apply_all(random_ops(rng, count))
        print(f"ack {seqs[0]} {seqs[-1]}", flush=True)

    while True:
        await asyncio.gather(*(one(rng.randrange(1, 40)) for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main())
