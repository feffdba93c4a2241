"""Closed-loop load: `requests` requests from `concurrency` asyncio workers, each
timed with perf_counter; throughput over the wall time of the whole batch."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from torua.stopping import cancel_and_wait

Op = Callable[[int], Awaitable[object]]  # one request; the argument is the request's index


@dataclass
class Result:
    name: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    first_error: str | None = None


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def drive(op: Op, requests: int, concurrency: int, start: int = 0, deadline: float = 300.0):
    """Run requests start..start+requests-1; return (latencies in s, errors, first error, seconds)."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    next_index = start
    end = start + requests

    async def worker() -> None:
        nonlocal next_index, errors, first_error
        while next_index < end:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                await op(i)
            except Exception as exc:  # counted and reported, never hidden
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, requests)))]
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:  # again while it runs on: a worker inside nats-py can lose one cancellation
        await cancel_and_wait(task, 5.0, "a measurement worker")
    seconds = time.perf_counter() - t0
    if pending:
        errors = requests - len(latencies)
        first_error = first_error or f"measurement did not finish within {deadline:g}s"
    return latencies, errors, first_error, seconds


async def measure(name: str, op: Op, requests: int, concurrency: int, warmup: int) -> Result:
    if warmup:
        await drive(op, warmup, concurrency, start=requests)
    latencies, errors, first_error, seconds = await drive(op, requests, concurrency)
    return _result(name, concurrency, requests, latencies, errors, first_error, seconds)


async def measure_in_turns(ops: dict[str, Op], requests: int, concurrency: int, warmup: int, rounds: int = 4) -> dict[str, Result]:
    """`measure` of each of `ops`, taking turns: each round runs a share of every op's
    `requests` in order, so that what drifts during the run (a machine that gets
    busier, indexes settling) weighs on every op alike and a ratio between two of
    them is not an artefact of which ran first. Op i of a round is request i of its
    share, counted from where the round starts (requests differ between rounds)."""
    for op in ops.values():
        if warmup:
            await drive(op, warmup, concurrency, start=requests)
    runs: dict[str, tuple[list[float], int, str | None, float]] = {name: ([], 0, None, 0.0) for name in ops}
    rounds = max(1, min(rounds, requests))
    for r in range(rounds):
        start, end = requests * r // rounds, requests * (r + 1) // rounds
        for name, op in ops.items():
            latencies, errors, first_error, seconds = await drive(op, end - start, concurrency, start=start)
            held = runs[name]
            runs[name] = (held[0] + latencies, held[1] + errors, held[2] or first_error, held[3] + seconds)
    return {name: _result(name, concurrency, requests, *runs[name]) for name in ops}


def _result(name: str, concurrency: int, requests: int, latencies: list[float], errors: int, first_error: str | None, seconds: float) -> Result:
    ordered = sorted(latencies)
    ms = 1000.0
    return Result(
        name=name,
        concurrency=concurrency,
        requests=requests,
        errors=errors,
        seconds=round(seconds, 4),
        throughput=round(len(ordered) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(percentile(ordered, 0.50) * ms, 3),
        p99_ms=round(percentile(ordered, 0.99) * ms, 3),
        mean_ms=round(sum(ordered) / len(ordered) * ms, 3) if ordered else 0.0,
        max_ms=round(ordered[-1] * ms, 3) if ordered else 0.0,
        first_error=first_error,
    )
