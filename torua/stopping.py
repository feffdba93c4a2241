"""How a Torua process stops, whatever state NATS is in.

SIGINT or SIGTERM asks for a clean stop (hand-offs, drains, closes) and, at the
same moment, starts a deadline: a process still running `grace` seconds later
logs that it is giving up and exits with code 1. Each step of a stop is bounded
as well (`bounded`), and never waits for a cancelled step to wind down, because
nats-py swallows cancellation in places and a flush toward a paused server
waits for ever; the deadline is for whatever is left.

The handlers are installed before a process first connects, and the first
connection is raced against the stop (`unless_stopped`), so a process retrying
an absent NATS stops at once too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any, Awaitable, Callable, TypeVar

log = logging.getLogger("torua.stopping")

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Seconds a process may take to stop beyond its own waits (hand-off, in-flight requests).
STOP_MARGIN = 15.0


class Stopped(Exception):
    """A stop was asked for before the awaited step finished."""


class StopRequest:
    """The stop of one process: an event the process waits on, set by SIGINT, SIGTERM
    or `set()`, and the deadline that runs from then on.

    `grace` is how long the whole stop may take before the process exits anyway."""

    def __init__(self, role: str, grace: float, exit: Callable[[int], Any] = os._exit) -> None:
        self.role = role
        self.grace = grace
        self.event = asyncio.Event()
        self._exit = exit
        self._deadline: threading.Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> "StopRequest":
        """Take SIGINT and SIGTERM for this process (the running loop's handlers)."""
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def remove(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for sig in STOP_SIGNALS:
                self._loop.remove_signal_handler(sig)
        self._loop = None

    def _on_signal(self, sig: int) -> None:
        if not self.event.is_set():
            log.info("%s received: stopping (at most %gs)", signal.Signals(sig).name, self.grace)
        self.set()

    def set(self) -> None:
        """Ask for the stop, and start its deadline (once)."""
        self.event.set()
        self.arm()

    def is_set(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()

    def arm(self, grace: float | None = None) -> None:
        """Exit the process `grace` seconds from now unless it has ended by then."""
        if self._deadline is not None:
            return
        seconds = self.grace if grace is None else grace
        self._deadline = threading.Timer(seconds, self._give_up, args=(seconds,))
        self._deadline.daemon = True  # never keeps a finished process alive
        self._deadline.start()

    def disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _give_up(self, seconds: float) -> None:
        log.error("%s still stopping after %gs: exiting now", self.role, seconds)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:
                pass
        sys.stderr.flush()
        self._exit(1)


async def unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T:
    """`aw`'s result, or `Stopped` as soon as `stop` is set (`aw` is then cancelled and
    left to wind down on its own)."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    task.add_done_callback(_consume)
    raise Stopped()


async def bounded(aw: Awaitable[Any], seconds: float, what: str) -> bool:
    """Run `aw` for at most `seconds`; True if it finished (its errors are logged, not
    raised). Past the bound it is cancelled and not waited for."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        log.warning("%s did not finish within %gs; going on without it", what, seconds)
        task.cancel()
        task.add_done_callback(_consume)
        return False
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.warning("%s failed: %s", what, exc or type(exc).__name__)
    return True


async def within(aw: Awaitable[T], seconds: float, default: T) -> T:
    """`aw`'s result, or `default` if it fails or takes longer than `seconds` (it is then
    cancelled and not waited for)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        return default
    if task.cancelled() or task.exception() is not None:
        return default
    return task.result()


async def cancel_and_wait(task: asyncio.Task[Any], seconds: float, what: str) -> bool:
    """Cancel `task` and wait for it to end, cancelling it again while it runs on, at
    most `seconds`; True if it ended. Again, because one cancellation can be lost:
    in Python 3.11 `asyncio.wait_for` (inside nats-py's requests) returns its
    result when the result and the cancellation come at once, and the task goes
    on (a `torua graph` command stopping its catalog watch hung so)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not task.done():
        if loop.time() >= deadline:
            log.warning("%s did not end within %gs of being cancelled; going on without it", what, seconds)
            task.add_done_callback(_consume)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, max(0.0, deadline - loop.time())))
    if not task.cancelled() and task.exception() is not None:
        log.debug("%s ended with %r", what, task.exception())
    return True


async def end_leftover_tasks(seconds: float = 3.0) -> list[asyncio.Task[Any]]:
    """Cancel every other task, again and again, until all have ended or `seconds`
    pass; the tasks still running then.

    Once is not enough: nats-py's reconnect loop retries inside `asyncio.wait_for`,
    which in Python 3.11 raises the attempt's own error instead of `CancelledError`
    when both happen at once (a refused connection fails at once), and the loop
    goes on retrying. asyncio's own shutdown cancels once and then waits for ever:
    that is how a stopped process with NATS gone kept running for minutes."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + seconds
    while True:
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left or loop.time() >= deadline:
            return left
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.1)


def _consume(task: asyncio.Future) -> None:
    """Read a left-behind task's outcome, so asyncio does not report it as lost."""
    if not task.cancelled():
        task.exception()
