"""How many malloc arenas a node process keeps (glibc's `M_ARENA_MAX`).

glibc gives each thread that allocates an arena of its own, up to eight per core
(then threads share them), and memory freed in an arena stays with it. A node runs a
writer thread and an index catch-up thread per shard copy, query threads and
Kuzu's own, and Kuzu touches tens of MiB whenever it opens a database: after
`torua bench --rag`'s ingest the three nodes held 1,936 and 2,083 MiB with glibc's
default, 1,571 and 1,617 MiB with two arenas, at the same speed (two runs each,
taking turns). A node process limits its arenas to `--malloc-arenas` (default 2;
0 leaves glibc's default) before it starts any thread; an operator's own
`MALLOC_ARENA_MAX`, which glibc read as the process started, is left as it is.
Elsewhere than on glibc nothing is changed.

>>> limit_arenas(0)
False
>>> limit_arenas(2, {"MALLOC_ARENA_MAX": "4"})
False
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

__all__ = ["M_ARENA_MAX", "arenas_in_use", "limit_arenas"]

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
_limited_to = 0  # the limit this process set (0: none)


def arenas_in_use() -> str:
    """What the process's malloc arenas are, for its log.

    >>> arenas_in_use() in ("malloc arenas: glibc's default or MALLOC_ARENA_MAX", "malloc arenas: at most 2")
    True
    """
    return f"malloc arenas: at most {_limited_to}" if _limited_to else "malloc arenas: glibc's default or MALLOC_ARENA_MAX"


def limit_arenas(arenas: int, environ: Mapping[str, str] | None = None) -> bool:
    """At most `arenas` malloc arenas for this process from now on (threads that have
    an arena keep it); whether the limit was set: not for 0, not when
    `MALLOC_ARENA_MAX` is in the environment, not without glibc's `mallopt`."""
    environ = os.environ if environ is None else environ
    if arenas <= 0 or "MALLOC_ARENA_MAX" in environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_ARENA_MAX, int(arenas)) != 1:
        return False
    global _limited_to
    _limited_to = int(arenas)
    return True
