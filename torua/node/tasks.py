"""A node's background tasks: each request answered as a task of its own, the
heartbeat and log-retention loops, replicas' followers. Tracked so that a stop can
wait for the ones in flight and cancel the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import Any


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()
        self.stopping = asyncio.Event()  # set once the node stops: loops end, no new work starts

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.track(task)
        return task

    def track(self, task: asyncio.Future[Any]) -> None:
        """Count a task started elsewhere as one of these (until it is done)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __iter__(self) -> Iterator[asyncio.Future[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
