"""Request rate limits per API key: a token bucket per key, in each process that
checks keys (every gateway, every node for torua.Client's one-hop requests).

A key made with ``rate`` R may make R requests a second on average, and up to
``burst`` = max(1, R) at once after a quiet spell; a request beyond that is
refused with ``too_many_requests`` (429) and a Retry-After of when the next one
would be let in. Each process keeps its own buckets, so a key reaching several
gateways or nodes gets R at each: a limit against one client flooding one
process, not a cluster-wide quota. `take` is the decision (pure); `Limiter`
keeps the buckets, at most `MAX_BUCKETS` (the least recently used go first:
they are full again by the time they would be needed).

>>> b, wait = take(None, rate=2.0, now=0.0)
>>> wait, round(b.tokens, 3)
(0.0, 1.0)
>>> b, wait = take(b, rate=2.0, now=0.0)
>>> b, wait = take(b, rate=2.0, now=0.0)
>>> wait
0.5
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

MAX_BUCKETS = 10_000


@dataclass(frozen=True)
class Bucket:
    tokens: float  # requests it may make now
    at: float  # when `tokens` was counted (monotonic seconds)


def burst_of(rate: float) -> float:
    return max(1.0, rate)


def take(bucket: Bucket | None, rate: float, now: float) -> tuple[Bucket, float]:
    """(the bucket after one request, 0.0 when the request may go, else the seconds
    until it could). A refused request takes nothing."""
    burst = burst_of(rate)
    tokens = burst if bucket is None else min(burst, bucket.tokens + max(0.0, now - bucket.at) * rate)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate


def retry_after(wait: float) -> int:
    """Whole seconds for a Retry-After header: at least 1."""
    return max(1, math.ceil(wait))


class Limiter:
    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._max = max_buckets

    def take(self, key_id: str, rate: float, now: float) -> float:
        """0.0 when `key_id` may make a request now (and it is counted), else the wait."""
        bucket, wait = take(self._buckets.pop(key_id, None), rate, now)
        self._buckets[key_id] = bucket
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait
