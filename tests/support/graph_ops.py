"""Random graph operations over a small id space, for the graph index's tests (the
same seed gives the same ops)."""

from __future__ import annotations

import json
import random

from torua.storage.operations import EdgeDelete, EdgePut, GraphDrop, GraphEnsure, Operation, OutboxDone, VertexDelete, VertexPut

WORDS = ["fox", "dog", "quick", "lazy", "river", "stone", "graph", "shard", "vector", "night", "über", "naïve"]
DIM = 4


def ensure(uid: str = "g1", dim: int = DIM, text: bool = True) -> GraphEnsure:
    return GraphEnsure(uid, f"name-{uid}", dim, "cosine", ["title", "body"] if text else [])


def random_ops(rng: random.Random, count: int, uids: tuple[str, ...] = ("g1",), dim: int = DIM, drops: bool = False) -> list[Operation]:
    """`count` ops after an ensure of each graph: vertex puts (ids with '/' and
    Unicode, some with embeddings of the wrong length), deletes, edge halves in every
    state, edge deletes, outbox acknowledgements, and (with `drops`) a graph dropped
    and created again."""
    ids = ["a", "b/1", "ç", "d", "e e", "f", "g", "h"]
    ops: list[Operation] = [ensure(uid, dim) for uid in uids]
    for _ in range(count):
        uid = rng.choice(uids)
        roll = rng.random()
        vid, other = rng.choice(ids), rng.choice(ids)
        if roll < 0.3:
            props = {"title": " ".join(rng.sample(WORDS, 2)), "n": rng.randint(0, 9)}
            if rng.random() < 0.3:
                props["body"] = rng.choice(WORDS)
            embedding = None
            if dim and rng.random() < 0.7:
                embedding = [rng.uniform(-1, 1) for _ in range(dim if rng.random() < 0.95 else dim + 1)]
            ops.append(VertexPut(uid, vid, rng.choice(["Person", "Place", ""]), json.dumps(props, sort_keys=True), embedding))
        elif roll < 0.38:
            ops.append(VertexDelete(uid, vid))
        elif roll < 0.75:
            halves = rng.choice(["out", "in", "both", "both"])
            state = rng.choice(["pending", "committed", "committed", "removing"])
            ops.append(EdgePut(uid, vid, rng.choice(["knows", "likes"]), other, halves, json.dumps({"w": rng.randint(0, 3)}), float(rng.randint(1, 5)), state))
        elif roll < 0.92:
            ops.append(EdgeDelete(uid, vid, rng.choice(["knows", "likes"]), other, rng.choice(["out", "in", "both"])))
        elif roll < 0.96:
            ops.append(OutboxDone(uid, "detach", vid, "knows", other))
        elif drops and roll < 0.98:
            ops.append(GraphDrop(uid))
            ops.append(ensure(uid, dim))
        else:
            ops.append(ensure(uid, dim))  # again: changes nothing
    return ops
