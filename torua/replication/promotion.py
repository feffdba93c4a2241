"""Which node is a shard's primary after its current one is lost.

The current primary stays while its node is healthy. Otherwise the in-sync
replica with the highest last seq on a healthy node takes over (ties: lowest node
id), because every in-sync replica holds every acknowledged write and the highest
one keeps the most of the rest. With none, the answer is None: the shard stays
unavailable rather than being opened empty, or from a copy that may miss writes.

Only "healthy" counts: unhealthy, unknown and nodes missing from `health` are never
chosen. (Draining is a separate flag on a healthy node, not a health value.) A
replica with no reported last seq is still eligible, ranked below every report.
The coordinator records the winner's last seq as ``promoted_at_seq``.

>>> choose_primary("n1", ["n1", "n2", "n3"], {"n1": "unhealthy", "n2": "healthy", "n3": "healthy"}, {"n2": 40, "n3": 42})
'n3'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torua.protocol.vocabulary import NodeHealth


def choose_primary(primary: str | None, in_sync: Sequence[str], health: Mapping[str, str], last_seqs: Mapping[str, int]) -> str | None:
    if primary is not None and health.get(primary) == NodeHealth.HEALTHY:
        return primary
    candidates = [n for n in in_sync if n != primary and health.get(n) == NodeHealth.HEALTHY]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (-last_seqs.get(n, -1), n))
