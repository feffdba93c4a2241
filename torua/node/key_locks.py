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
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyLocks:
    """A key is held while it is in `_held`, with the futures of those waiting for it,
    first come first served: a key nobody holds is taken without a lock object or an
    await (an import takes ~1000 at once, nearly all free)."""

    def __init__(self) -> None:
        self._held: dict[Hashable, deque[asyncio.Future[None]]] = {}  # key -> its waiters, in order

    def __len__(self) -> int:
        return len(self._held)

    @asynccontextmanager
    async def hold(self, *keys: Hashable) -> AsyncIterator[None]:
        taken: list[Hashable] = []
        try:
            for key in _in_order(keys):
                waiters = self._held.get(key)
                if waiters is None:
                    self._held[key] = deque()
                else:
                    await self._wait(key, waiters)
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                self._release(key)

    async def _wait(self, key: Hashable, waiters: deque[asyncio.Future[None]]) -> None:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(mine)
        try:
            await mine
        except BaseException:
            if mine.done() and not mine.cancelled():
                self._release(key)  # handed over as this waiter was cancelled: hand it on
            elif mine in waiters:
                waiters.remove(mine)
            raise

    def _release(self, key: Hashable) -> None:
        """Hand `key` to its first waiter still waiting, or forget it."""
        waiters = self._held[key]
        while waiters:
            nxt = waiters.popleft()
            if not nxt.done():
                nxt.set_result(None)
                return
        del self._held[key]


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
