"""Locks by key, made when first asked for and forgotten when nobody holds or waits
for them: how a primary orders the graph writes that must not interleave (one
vertex's writes, one edge's protocol; torua.node.graph).

Several keys are taken in one sorted order, so two holders of overlapping sets
never wait for each other in a circle.

>>> async def demo():
...     locks = KeyLocks()
...     async with locks.hold(("v", "b"), ("v", "a")):
...         return len(locks)
>>> asyncio.run(demo())
2
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}  # key -> (lock, [holders and waiters])

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, *keys: Hashable) -> AsyncIterator[None]:
        taken: list[Hashable] = []
        try:
            for key in _in_order(keys):
                entry = self._locks.get(key)
                if entry is None:
                    entry = self._locks[key] = (asyncio.Lock(), [0])
                lock, users = entry
                users[0] += 1
                try:
                    await lock.acquire()
                except BaseException:
                    self._forget(key)
                    raise
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                self._locks[key][0].release()
                self._forget(key)

    def _forget(self, key: Hashable) -> None:
        lock, users = self._locks[key]
        users[0] -= 1
        if users[0] == 0:
            del self._locks[key]


def _in_order(keys: tuple[Hashable, ...]) -> list[Hashable]:
    """The distinct keys in one order every holder uses: their own (tuples of text, the
    usual keys, compare directly), else by `repr` (keys that do not compare).

    >>> _in_order((("v", "b"), ("v", "a"), ("v", "b")))
    [('v', 'a'), ('v', 'b')]
    >>> _in_order((("v", 1), ("v", "a")))
    [('v', 'a'), ('v', 1)]
    """
    unique = set(keys)
    try:
        return sorted(unique)  # type: ignore[type-var]
    except TypeError:
        return sorted(unique, key=repr)
