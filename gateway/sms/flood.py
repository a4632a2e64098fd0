"""Flood and burst counting: how many distinct recipients got the same (or a near-identical)
text, and how many a sender reached, within a sliding window.

Two buckets of half a window each approximate the sliding window. In memory: per key, a set
of recipient hashes per bucket (bounded: the set stops growing past the threshold it must
reach, and the number of keys is capped, oldest first). With Redis (`MAMORI_REDIS__URL`):
HyperLogLog per key and bucket, so replicas count together (PFADD + PFCOUNT over both
buckets in one round trip).
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections import OrderedDict
from typing import Any

_URL = re.compile(r"https?://\S+|www\.\S+", re.I)
_DIGITS = re.compile(r"\d+")
_NOISE = re.compile(r"[\W_]+", re.UNICODE)


def text_fingerprint(text: str) -> str:
    """A key equal for near-identical texts: NFKC, casefold, numbers and URL paths replaced
    (tracking ids and codes differ per recipient), punctuation and spacing dropped."""
    if text.isascii():  # the same result without the Unicode machinery (see below)
        t = text.lower()
        if "://" in t or "www." in t:
            t = _URL.sub(lambda m: " url:" + _host(m.group(0)) + " ", t)
        b = t.encode("ascii").translate(None, _ASCII_NOT_LETTERS)
        return hashlib.blake2b(b, digest_size=12).hexdigest()
    t = unicodedata.normalize("NFKC", text).casefold()
    t = _URL.sub(lambda m: " url:" + _host(m.group(0)) + " ", t)
    t = _DIGITS.sub("#", t)
    t = _NOISE.sub("", t)
    return hashlib.blake2b(t.encode("utf-8"), digest_size=12).hexdigest()


# ASCII text: NFKC and casefold are lower(); digits become "#" and then go with the rest of
# the noise ([\W_]), so of ASCII only the letters a-z remain (the other bytes deleted by
# bytes.translate, six times cheaper than str.translate with a mapping)
_ASCII_NOT_LETTERS = bytes(c for c in range(128) if not (97 <= c <= 122))


def _host(url: str) -> str:
    u = url.split("://", 1)[-1]
    return u.split("/", 1)[0].split("?", 1)[0]


class MemoryCounter:
    """Distinct members per key over a sliding window, in memory.

    Per key: the bucket, the members of the current and the previous bucket, and the size of
    their union, kept up to date as members arrive (a member new to the current bucket counts
    when the previous one did not have it), so an answer costs O(1) however many members a
    key holds (a union per call made a popular text cost O(recipients) per message).

    The state is shaped for the garbage collector: a key's entry is a tuple replaced on each
    change and its members are dict keys (str -> None), so the collector stops tracking both
    after its first look at them. With sets in a list, every key the window held was three
    objects each full collection walked: 200,000 keys, a pause of ~100 ms per collection."""

    def __init__(self, window: float, *, max_keys: int = 200_000, cap: int = 10_000,
                 clock: Any = time.monotonic) -> None:
        self.half = max(window / 2.0, 0.001)
        self.max_keys = max_keys
        self.cap = cap  # members kept per key and bucket (enough to cross any threshold)
        self.clock = clock
        # key -> (bucket, members now, members of the previous bucket, size of their union)
        self._data: OrderedDict[str, tuple[int, dict[str, None], dict[str, None], int]] = (
            OrderedDict())

    def add(self, key: str, member: str) -> int:
        """Add `member` under `key`; return the distinct members in the window."""
        bucket = int(self.clock() / self.half)
        data = self._data
        cur = data.get(key)
        if cur is None or cur[0] < bucket - 1:
            now: dict[str, None] = {}
            prev: dict[str, None] = _NONE
            count = 0
        elif cur[0] == bucket - 1:  # roll: the current bucket becomes the previous one
            now, prev, count = {}, cur[1], len(cur[1])
        else:  # this bucket (or a later one, if the clock stepped back): kept
            bucket, now, prev, count = cur
        if member not in now and len(now) < self.cap:
            now[member] = None
            if member not in prev:
                count += 1
        data[key] = (bucket, now, prev, count)
        data.move_to_end(key)  # the dict is in order of last use
        # keys last used before the previous bucket count nothing any more: drop them, so the
        # held state is what the window saw (rate x window), not every key since start-up
        while data:
            oldest = next(iter(data))
            if data[oldest][0] >= bucket - 1 and len(data) <= self.max_keys:
                break
            del data[oldest]
        return count

    def __len__(self) -> int:
        return len(self._data)


_NONE: dict[str, None] = {}  # the previous bucket of a new key (never written to)


class RedisCounter:
    """Distinct members per key over a sliding window, shared through Redis HyperLogLogs."""

    def __init__(self, url: str, window: float, *, prefix: str = "mamori:sms:") -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url)
        self.half = max(window / 2.0, 1.0)
        self.prefix = prefix
        self.ttl = int(self.half * 2) + 2

    async def add(self, key: str, member: str) -> int:
        bucket = int(time.time() / self.half)
        k_now = f"{self.prefix}{key}:{bucket}"
        k_prev = f"{self.prefix}{key}:{bucket - 1}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.pfadd(k_now, member)
            pipe.expire(k_now, self.ttl)
            pipe.pfcount(k_now, k_prev)
            res = await pipe.execute()
        return int(res[2])

    async def close(self) -> None:
        await self.redis.aclose()
