"""The answers a node gave to recent writes, by the request's id: a retry of a write
the node already did (the gateway's attempt timed out while the write went on) is
answered as the first attempt was, so `created` says what that write did, not that
the retry found the vertex there.

Bounded: the oldest answers are forgotten first. A retry that reaches another node
(after a failover) is not recognised; it answers from the rows it finds.

>>> answers = Answered(limit=2)
>>> answers.put((0, "r1"), "first"); answers.put((0, "r2"), "second")
>>> answers.get((0, "r1"))
'first'
>>> answers.put((0, "r3"), "third")  # r2 is now the oldest used: forgotten
>>> answers.get((0, "r2")) is None, answers.get((0, "r1")), len(answers)
(True, 'first', 2)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

A = TypeVar("A")

LIMIT = 4096  # per node: many seconds of a busy node's writes, a few MB at most


class Answered(Generic[A]):
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._answers: OrderedDict[Hashable, A] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: Hashable) -> A | None:
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
        return answer

    def put(self, key: Hashable, answer: A) -> None:
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > self.limit:
            self._answers.popitem(last=False)
