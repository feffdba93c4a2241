"""The in-halves a primary's repair is asking their src's shard about (`edge.check`),
and which of them an attach wrote while the answer was on its way.

An answer tells how src's shard held the edge when it read it. Meanwhile dst's
shard may have removed the in-half it asked about (src's delete sends a detach that
can overtake the answer) and then taken an attach of that same incarnation, sent
before the delete (a put asking dst's shard to hold a committed edge again). The
in-half held now looks like the one asked about, but "committed" was said of the
edge that went: confirming it would keep a half whose out-half is gone, and nothing
removes a confirmed half. So every attach marks the halves being asked about that
it writes, and the answer settles only the unmarked ones; the next round asks about
the others again (`torua.graph.edges.after_check`).

What it holds lives in memory only: a round that outlives its primary's term cannot
write its answers anyway.

>>> questions = EdgeQuestions()
>>> with questions.asking([(0, "u", ("a", "knows", "b")), (0, "u", ("c", "knows", "b"))]):
...     questions.attached(0, "u", [("a", "knows", "b"), ("x", "knows", "b")])
...     questions.attached_since(0, "u", ("a", "knows", "b")), questions.attached_since(0, "u", ("c", "knows", "b"))
(True, False)
>>> len(questions)
0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

EdgeKey = tuple[str, str, str]
Asked = tuple[int, str, EdgeKey]  # (shard, graph uid, edge key)


class EdgeQuestions:
    def __init__(self) -> None:
        self._asking: dict[Asked, int] = {}  # -> rounds asking about it now
        self._attached: set[Asked] = set()  # of those, written by an attach since

    def __len__(self) -> int:
        return len(self._asking)

    @contextmanager
    def asking(self, halves: Iterable[Asked]) -> Iterator[None]:
        """While the answers about `halves` are on their way (and being acted on)."""
        mine = list(dict.fromkeys(halves))
        for half in mine:
            self._asking[half] = self._asking.get(half, 0) + 1
        try:
            yield
        finally:
            for half in mine:
                left = self._asking[half] - 1
                if left:
                    self._asking[half] = left
                else:
                    del self._asking[half]
                    self._attached.discard(half)

    def attached(self, shard: int, uid: str, keys: Iterable[EdgeKey]) -> None:
        """An attach on `shard` wrote the in-halves of `keys`."""
        for key in keys:
            if (shard, uid, key) in self._asking:
                self._attached.add((shard, uid, key))

    def attached_since(self, shard: int, uid: str, key: EdgeKey) -> bool:
        """Did an attach write this in-half since the question about it was sent?"""
        return (shard, uid, key) in self._attached
