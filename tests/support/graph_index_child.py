"""A shard store with the graph index in a process of its own, for crash tests:
``python -m tests.support.graph_index_child DIR MODE SEED``.

It writes random graph batches (`tests.support.graph_ops`, two graphs, drops and
creations included) until it is killed, handing each batch to the index as the
writer will, and prints ``ack <seq> <index applied_seq>`` after each.

- ``direct``: every batch is small enough to be applied at once (the ack says the
  index committed it; when the index is behind, after a graph's tables changed or
  before its first file, a search waits for it first);
- ``lazy``: batches of more than 6 ops leave the index behind; its catch-up (by log
  replay or rebuild) runs as the shard idles and a search every few batches waits
  for it, so a kill may land in either.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from tests.support.graph_index_shard import open_shard, write
from tests.support.graph_ops import random_ops
from tests.support.graph_rows_model import register


async def main(directory: Path, mode: str, seed: int) -> None:
    register()
    store, index = open_shard(directory, lazy_ops=1000 if mode == "direct" else 6, busy_ops=10**6 if mode == "direct" else 24, idle_s=0.05)
    rng = random.Random(seed)
    ops = random_ops(rng, 5000, uids=("g1", "g2"), drops=True)
    i = batches = 0
    while True:
        n = rng.randint(1, 12 if mode == "direct" else 40)
        if i + n > len(ops):  # more, made as needed (making a million up front took seconds)
            ops += random_ops(rng, 5000, uids=("g1", "g2"), drops=True)
        seqs = await write(store, index, ops[i : i + n])
        i += n
        batches += 1
        if (mode == "lazy" and batches % 5 == 0) or (mode == "direct" and index.stats()["behind"]):
            # direct: the file made (the catch-up builds a shard's first one) or its tables
            # changed, so that the next batches are applied at once again
            await index.vector_search("g1", [1.0, 0.0, 0.0, 0.0], 3, timeout=60)
        print(f"ack {seqs[-1]} {index.stats()['applied_seq']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
