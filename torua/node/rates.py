"""How busy a shard copy is: operations per second over a sliding window.

Pure (no clock): the caller passes the monotonic time of each operation and of
each reading. Counts go into `buckets` slots of `window / buckets` seconds; a
reading sums the slots inside the window and divides by the time they cover.
A meter younger than the window divides by its age instead (at least
`min_span`), so a copy that has just arrived (a move's target) reports its real
rate within a second or so instead of ramping up over the whole window.

>>> m = RateMeter(window=10.0)
>>> for i in range(50):
...     m.record(100.0 + i / 10)        # 10 ops/s for 5 s
>>> round(m.rate(105.0), 1)
10.0
>>> m.rate(200.0)                       # long idle
0.0
"""

from __future__ import annotations

from collections import deque


class RateMeter:
    def __init__(self, window: float = 10.0, buckets: int = 10, min_span: float = 1.0) -> None:
        if window <= 0 or buckets < 1 or min_span <= 0:
            raise ValueError("window and min_span must be > 0, buckets >= 1")
        self.window = window
        self.buckets = buckets
        self.width = window / buckets
        self.min_span = min(min_span, window)
        self._counts: deque[list[int]] = deque()  # [slot index, count], oldest first
        self._since: float | None = None  # time of the first operation

    def _slot(self, now: float) -> int:
        return int(now // self.width)

    def record(self, now: float, n: int = 1) -> None:
        if self._since is None:
            self._since = now
        slot = self._slot(now)
        if self._counts and self._counts[-1][0] >= slot:
            self._counts[-1][1] += n  # same slot (or a clock reading a hair older: count it here)
        else:
            self._counts.append([slot, n])
        self._expire(slot)

    def _expire(self, slot: int) -> None:
        first = slot - self.buckets + 1
        while self._counts and self._counts[0][0] < first:
            self._counts.popleft()

    def rate(self, now: float) -> float:
        """Operations per second over the last `window` seconds (or the meter's age, if shorter)."""
        if self._since is None:
            return 0.0
        slot = self._slot(now)
        first = slot - self.buckets + 1
        total = sum(count for index, count in self._counts if first <= index <= slot)
        if total == 0:
            return 0.0
        covered = now - first * self.width  # the window's slots, the current one partly
        span = max(self.min_span, min(covered, now - self._since))
        return total / span
