"""The edge incarnations a primary was told to detach, remembered for a while.

src's shard (A) sends `edge.detach` of incarnation t only once it has logged t gone
for good (and every older one with it). An attach of t can still reach dst's shard
(B) after that detach: sent before it and overtaken, by the detach of src's delete
(which takes no edge lock on A), or behind another vertex's lock on B for longer
than A waited. Held anew, its in-half would look like the one the detach removed,
and a confirm or an `edge.check` answer about that one, late too, would confirm it:
a half whose out-half is gone, which nothing removes. So B remembers, per edge, the
newest incarnation it was told to detach, and attaches none up to it again
(`torua.graph.edges.on_attach` answers `absent`).

Kept in memory for the `LIMIT` edges detached last: late messages are late by
seconds. A primary after a failover starts with nothing remembered; the detaches it
takes from then on count (docs/design/graph.md, section 4).

>>> detached = Detached(limit=2)
>>> detached.record(0, "u", [(("a", "t", "b"), 5), (("a", "t", "b"), 3), (("c", "t", "b"), 7)])
>>> detached.token(0, "u", ("a", "t", "b")), detached.token(1, "u", ("a", "t", "b"))
(5, 0)
>>> detached.record(0, "u", [(("d", "t", "b"), 9)])  # the oldest is forgotten
>>> detached.token(0, "u", ("a", "t", "b")), len(detached)
(0, 2)
"""

from __future__ import annotations

from collections.abc import Iterable

EdgeKey = tuple[str, str, str]
LIMIT = 50_000  # edges remembered (~18 MB with GraphRAG's ids, measured)


class Detached:
    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._tokens: dict[tuple[int, str, EdgeKey], int] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._tokens)

    def record(self, shard: int, uid: str, detaches: Iterable[tuple[EdgeKey, int]]) -> None:
        """`shard` was told to detach these (edge key, incarnation)."""
        for key, token in detaches:
            held = (shard, uid, key)
            self._tokens[held] = max(self._tokens.pop(held, 0), token)
        while len(self._tokens) > self._limit:
            del self._tokens[next(iter(self._tokens))]

    def token(self, shard: int, uid: str, key: EdgeKey) -> int:
        """The newest incarnation of edge `key` `shard` was told to detach (0: none remembered)."""
        return self._tokens.get((shard, uid, key), 0)
