"""Per-caller token buckets (in memory, per replica): `rate` tokens a second, `burst` at most."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, maxkeys: int = 100_000) -> None:
        self.rate = max(rate, 0.001)
        self.burst = max(burst, 1)
        self.maxkeys = maxkeys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """0.0 when allowed, else the seconds to wait before retrying."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate
        self._buckets[key] = (tokens - cost, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.maxkeys:
            self._buckets.popitem(last=False)
        return 0.0
