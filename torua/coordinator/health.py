"""When a node is healthy: a pure function of its last heartbeat and the clock.

>>> node_health(last_seen=100.0, now=103.5, interval=1.0, threshold=3)
'unhealthy'
"""

from __future__ import annotations

import math


def missed_heartbeats(last_seen: float | None, now: float, interval: float) -> int:
    """Whole heartbeat intervals gone by since the last one arrived."""
    if last_seen is None:
        return 0
    return max(0, math.floor((now - last_seen) / interval))


def node_health(last_seen: float | None, now: float, interval: float, threshold: int) -> str:
    """unknown (no heartbeat since this coordinator started), healthy, or unhealthy
    (`threshold` heartbeats in a row missed)."""
    if last_seen is None:
        return "unknown"
    return "unhealthy" if missed_heartbeats(last_seen, now, interval) >= threshold else "healthy"
