"""When a node is healthy: a pure function of its last heartbeat and the clock.

>>> node_health(last_seen=100.0, now=103.5, interval=1.0, threshold=3)
'unhealthy'
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from torua.protocol.vocabulary import NodeHealth


def missed_heartbeats(last_seen: float | None, now: float, interval: float) -> int:
    """Whole heartbeat intervals gone by since the last one arrived."""
    if last_seen is None:
        return 0
    return max(0, math.floor((now - last_seen) / interval))


def node_health(last_seen: float | None, now: float, interval: float, threshold: int) -> NodeHealth:
    """unknown (no heartbeat since this coordinator started), healthy, or unhealthy
    (`threshold` heartbeats in a row missed)."""
    if last_seen is None:
        return NodeHealth.UNKNOWN
    return NodeHealth.UNHEALTHY if missed_heartbeats(last_seen, now, interval) >= threshold else NodeHealth.HEALTHY


def cut_off(last_seen: Iterable[float | None], now: float, interval: float, threshold: int) -> bool:
    """Has every node this coordinator has heard from gone silent at once?

    With two or more of them, the coordinator itself is far more likely cut off
    (its NATS server paused or partitioned away) than every node down, so it must
    not judge them: marking them all unhealthy would make every shard unavailable
    while the nodes serve fine.

    >>> cut_off([100.0, 100.2], now=104.0, interval=1.0, threshold=3)
    True
    >>> cut_off([100.0, 103.9], now=104.0, interval=1.0, threshold=3)
    False
    """
    heard = [t for t in last_seen if t is not None]
    return len(heard) >= 2 and all(missed_heartbeats(t, now, interval) >= threshold for t in heard)
