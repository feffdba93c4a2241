"""torua.stopping: a stop never waits on a step past its bound, not even on one that
swallows its cancellation (as nats-py's drain and reconnect loop can)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from torua.stopping import StopRequest, Stopped, bounded, end_leftover_tasks, unless_stopped, within


async def _stubborn(cancels_swallowed: int, started: asyncio.Event | None = None) -> str:
    """Ignores its first `cancels_swallowed` cancellations and goes on waiting."""
    if started is not None:
        started.set()
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1
            if swallowed > cancels_swallowed:
                raise


def test_bounded_gives_up_on_a_step_that_swallows_its_cancellation():
    async def main():
        finished = await bounded(_stubborn(1), 0.05, "a stubborn step")
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return finished, [t.done() for t in left]

    # the step swallowed bounded's cancel and runs on; asyncio.run's own cancel ends it
    assert asyncio.run(main()) == (False, [False])


@pytest.mark.parametrize(
    "step,expected",
    [
        ("answers", (True, "ok")),
        ("fails", (True, "default")),
    ],
)
def test_bounded_and_within_on_steps_that_finish(step, expected):
    async def answers():
        return "ok"

    async def fails():
        raise ConnectionResetError("Connection lost")

    make = {"answers": answers, "fails": fails}[step]

    async def main():
        return await bounded(make(), 5, step), await within(make(), 5, "default")

    assert asyncio.run(main()) == expected


def test_within_gives_the_default_past_its_bound():
    async def main():
        return await within(_stubborn(0), 0.01, "default")

    assert asyncio.run(main()) == "default"


def test_unless_stopped_raises_once_the_stop_is_asked_for():
    async def main():
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.ensure_future(unless_stopped(_stubborn(0, started), stop))
        await started.wait()
        stop.set()
        with pytest.raises(Stopped):
            await task
        return await unless_stopped(asyncio.sleep(0, "done"), asyncio.Event())

    assert asyncio.run(main()) == "done"


def test_leftover_tasks_that_swallow_a_cancellation_are_cancelled_again():
    """What kept a stopped coordinator running with NATS gone: asyncio.run cancels a
    leftover task once and waits for it."""

    async def main():
        started = asyncio.Event()
        task = asyncio.ensure_future(_stubborn(3, started))
        await started.wait()
        left = await end_leftover_tasks(seconds=30)
        return left, task.cancelled()

    left, cancelled = asyncio.run(main())
    assert left == [] and cancelled


def test_a_stop_signal_sets_the_event_and_the_deadline_exits():
    exits: list[int] = []
    exited = threading.Event()

    def fake_exit(code: int) -> None:
        exits.append(code)
        exited.set()

    async def main():
        stop = StopRequest("test", grace=0.01, exit=fake_exit).install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 10)
            return stop.is_set()
        finally:
            stop.remove()

    assert asyncio.run(main())
    assert exited.wait(10) and exits == [1]


def test_a_stop_that_ends_in_time_is_not_cut_short():
    exits: list[int] = []
    stop = StopRequest("test", grace=3600, exit=exits.append)
    stop.arm()
    stop.arm(0.0)  # armed once: the first deadline holds
    stop.disarm()
    assert exits == []


def test_cancel_and_wait_cancels_again_a_task_that_swallowed_a_cancellation():
    """One cancellation can be lost (Python 3.11's asyncio.wait_for in nats-py): a
    single cancel and an await hung `torua graph` stopping its catalog watch."""
    from torua.stopping import cancel_and_wait

    async def main():
        started = asyncio.Event()
        task = asyncio.ensure_future(_stubborn(2, started))
        await started.wait()
        ended = await cancel_and_wait(task, 30, "a stubborn task")
        slow = asyncio.ensure_future(_stubborn(50))  # swallows more than 0.3 s of cancelling
        await asyncio.sleep(0)
        gave_up = await cancel_and_wait(slow, 0.3, "a very stubborn task")
        still = not slow.done()
        left = await end_leftover_tasks(seconds=30)
        return ended, task.cancelled(), gave_up, still, left

    assert asyncio.run(main()) == (True, True, False, True, [])


def test_the_graph_catalog_stops_even_when_its_watch_swallows_a_cancellation():
    from torua.graph.catalog_store import GraphCatalog

    async def main():
        catalog = GraphCatalog(None)  # type: ignore[arg-type]  # never connects: its watch is the stubborn task
        started = asyncio.Event()
        catalog._task = asyncio.ensure_future(_stubborn(1, started))
        await started.wait()
        await asyncio.wait_for(catalog.stop(), 10)
        return catalog._task.cancelled()

    assert asyncio.run(main()) is True
