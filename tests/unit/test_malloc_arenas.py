"""`torua.malloc_arenas`: a node process limits glibc's malloc arenas, counted by glibc
itself (`malloc_stats`) in a child process whose threads all allocate at once."""

from __future__ import annotations

import platform
import re
import subprocess
import sys

import pytest

from torua.config import ConfigError, NodeConfig
from torua.malloc_arenas import limit_arenas

GLIBC = platform.libc_ver()[0] == "glibc"

CHILD = """
import ctypes, sys, threading
from torua.malloc_arenas import limit_arenas
print(limit_arenas(int(sys.argv[1]), {}), flush=True)
barrier = threading.Barrier(9)
held = []
def work():
    held.append([bytearray(40_000) for _ in range(20)])  # from an arena (below the mmap threshold)
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
barrier.wait()
ctypes.CDLL(None).malloc_stats()  # to stderr: one "Arena n:" per arena
[t.join() for t in threads]
"""


def arenas_of_a_child(limit: int) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(limit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), len(re.findall(r"^Arena \d+:", done.stderr, re.M))


@pytest.mark.parametrize("limit", [1, 2])
def test_a_limited_process_keeps_at_most_that_many_arenas_where_glibcs_default_grows_one_per_thread(limit: int) -> None:
    applied, arenas = arenas_of_a_child(limit)
    unlimited_applied, unlimited = arenas_of_a_child(0)
    assert unlimited_applied == "False"
    if GLIBC:
        assert applied == "True" and arenas <= limit < unlimited, (arenas, unlimited)
    else:  # nothing to limit elsewhere, and nothing said
        assert applied == "False"


def test_an_operators_malloc_arena_max_and_zero_leave_glibc_as_it_is() -> None:
    assert limit_arenas(0, {}) is False
    assert limit_arenas(2, {"MALLOC_ARENA_MAX": "8"}) is False


@pytest.mark.parametrize("arenas, ok", [(0, True), (2, True), (64, True), (-1, False), (65, False)])
def test_the_node_setting_is_checked(arenas: int, ok: bool) -> None:
    config = NodeConfig(id="n1", malloc_arenas=arenas)
    if ok:
        config.validate()
    else:
        with pytest.raises(ConfigError, match="malloc_arenas must be from 0 to 64"):
            config.validate()
