"""Ctrl-C during a bench's asynchronous part (`torua.bench.procs.run_async`): it is
cancelled, its cleanup gets a bounded time, and the bench goes on to stop what it
started, even when a cleanup never ends (in CI, `torua bench` once went on for 240 s
after Ctrl-C: asyncio.run waited for a cancelled task's cleanup without end). Run in a
child process, so that a regression fails on the timeout instead of hanging the suite."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import asyncio, os, signal
from torua.bench import procs

procs.CLEANUP_S = 0.5
before = signal.getsignal(signal.SIGINT)
cleaned = []

async def stuck():
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
    try:
        await asyncio.sleep(3600)
    finally:
        cleaned.append("began")
        await asyncio.Event().wait()  # a cleanup that never ends

async def helper_left_behind():
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.Event().wait()

async def main():
    asyncio.ensure_future(helper_left_behind())
    await stuck()

try:
    procs.run_async(main())
except KeyboardInterrupt:
    print("interrupted", cleaned, signal.getsignal(signal.SIGINT) is before, flush=True)
print("finished", procs.run_async(asyncio.sleep(0, result=7)), flush=True)
"""


def test_ctrl_c_ends_a_bench_s_asynchronous_part_even_when_its_cleanup_never_ends() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "interrupted ['began'] True" in done.stdout, "cancelled, its cleanup begun, the previous handler back"
    assert "finished 7" in done.stdout, "the next asynchronous part runs as asyncio.run would"
