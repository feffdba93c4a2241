"""How often Python's cyclic garbage collector runs in a Torua process.

Python collects its youngest generation each time 700 more container objects (lists,
dicts, dataclass instances) have been made than freed. A node decoding an import
batch (thousands of edges, each a few objects) passes that many times per request,
and every tenth pass walks the older generation too: in `torua bench --graph` at a
fifth of its size, the nodes ran ~4,000 collections each, 12% of their CPU, and
freed 7,000 to 10,000 objects in all (cycles; Torua's messages and rows are freed
by reference counting as they go). Each role process (`torua node`, `gateway`,
`coordinator`, `worker`) and the benchmark's anchors (so that a ratio compares like
with like) run the youngest generation's collection after `GC_THRESHOLD` instead;
the older generations keep Python's factors. Cyclic garbage waits longer (the
youngest generation holds up to that many objects) and is collected.
`TORUA_GC_THRESHOLD` sets another value (700: Python's own).

>>> import gc
>>> before = gc.get_threshold()
>>> settle_gc({"TORUA_GC_THRESHOLD": "20000"})
20000
>>> gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:]
(20000, True)
>>> settle_gc({"TORUA_GC_THRESHOLD": "lots"})
Traceback (most recent call last):
ValueError: TORUA_GC_THRESHOLD must be a positive integer (Python's own is 700), not 'lots'
>>> gc.get_threshold()[0]
20000
>>> gc.set_threshold(*before)
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

__all__ = ["GC_THRESHOLD", "settle_gc"]

GC_THRESHOLD = 50_000


def settle_gc(environ: Mapping[str, str] | None = None) -> int:
    """Set the youngest generation's threshold (`GC_THRESHOLD`, or `TORUA_GC_THRESHOLD`);
    the threshold set. `ValueError`, changing nothing, for a value that is not a
    positive integer."""
    environ = os.environ if environ is None else environ
    given = environ.get("TORUA_GC_THRESHOLD", "").strip()
    if given and not (given.isdigit() and int(given) > 0):
        raise ValueError(f"TORUA_GC_THRESHOLD must be a positive integer (Python's own is 700), not {given!r}")
    threshold = int(given) if given else GC_THRESHOLD
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
    return threshold
