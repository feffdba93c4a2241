"""What a copy's snapshot may be sent as, to whom: pure.

A node of a release before snapshot chunk formats asks with no `formats` and reads
key-value rows only; a newer one names every format it installs. A source refuses
to send a snapshot holding data the requester could not install (the graph, say,
to a node without the graph engine), rather than send a copy that lacks it.

>>> unreadable(("kv.rows.v1", "graph.vertices.v1"), [])
['graph.vertices.v1']
>>> unreadable(("kv.rows.v1",), ["kv.rows.v1", "graph.vertices.v1"])
[]
"""

from __future__ import annotations

from collections.abc import Sequence

from torua.storage.kv_engine import ROWS_FORMAT

# What a requester that names no formats (an older release) reads: key-value rows.
LEGACY_FORMATS = (ROWS_FORMAT,)


def unreadable(held: Sequence[str], asked: Sequence[str]) -> list[str]:
    """The formats among `held` (those a snapshot of the copy may hold) that a requester
    asking for `asked` cannot install."""
    readable = asked or LEGACY_FORMATS
    return [f for f in held if f not in readable]
