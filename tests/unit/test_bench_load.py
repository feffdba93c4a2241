"""`torua.bench.load.measure_in_turns`: the ops take turns, each gets every request once."""

from __future__ import annotations

import asyncio

from torua.bench.load import measure_in_turns


async def test_ops_take_turns_and_each_gets_every_request_once() -> None:
    calls: list[tuple[str, int]] = []

    def op(name: str):
        async def run(i: int) -> None:
            calls.append((name, i))
            await asyncio.sleep(0)
            if name == "bad" and i % 5 == 0:
                raise RuntimeError(f"request {i} refused")
        return run

    results = await measure_in_turns({"a": op("a"), "b": op("b"), "bad": op("bad")}, requests=10, concurrency=2, warmup=3, rounds=4)
    warm, timed = calls[:9], calls[9:]
    assert sorted(name for name, _ in warm) == ["a"] * 3 + ["b"] * 3 + ["bad"] * 3
    for name in ("a", "b", "bad"):
        assert sorted(i for n, i in timed if n == name) == list(range(10))
    # turns: the names change in blocks a, b, bad, a, b, bad, ... (4 rounds of each)
    blocks = [name for k, (name, _) in enumerate(timed) if k == 0 or timed[k - 1][0] != name]
    assert blocks == ["a", "b", "bad"] * 4
    assert results["a"].requests == 10 and results["a"].errors == 0 and results["a"].first_error is None
    assert results["bad"].errors == 2 and results["bad"].first_error == "RuntimeError: request 0 refused"
    assert results["a"].p50_ms >= 0 and results["a"].concurrency == 2


async def test_more_rounds_than_requests_runs_each_request_once() -> None:
    seen: list[int] = []

    async def run(i: int) -> None:
        seen.append(i)

    results = await measure_in_turns({"only": run}, requests=2, concurrency=1, warmup=0, rounds=4)
    assert sorted(seen) == [0, 1] and results["only"].errors == 0
