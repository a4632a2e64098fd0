"""Policy stores. The scan path calls `get`, which must not wait on a database for a
subscriber seen recently: `CachedPolicyStore` puts a TTL cache in front of any store."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import aiosqlite
import orjson

from gateway.errors import StoreError
from gateway.policy import DEFAULT_POLICY, Policy


class PolicyStore(Protocol):
    async def get(self, subscriber: str | None) -> Policy: ...

    async def put(self, policy: Policy) -> None: ...

    async def delete(self, subscriber: str) -> None: ...

    async def close(self) -> None: ...


class MemoryPolicyStore:
    def __init__(self) -> None:
        self._rows: dict[str, Policy] = {}

    async def get(self, subscriber: str | None) -> Policy:
        if subscriber is None:
            return DEFAULT_POLICY
        return self._rows.get(subscriber) or DEFAULT_POLICY.for_subscriber(subscriber)

    async def put(self, policy: Policy) -> None:
        if policy.subscriber is None:
            raise StoreError("a stored policy needs a subscriber id")
        self._rows[policy.subscriber] = policy

    async def delete(self, subscriber: str) -> None:
        self._rows.pop(subscriber, None)

    async def close(self) -> None:
        return None


class SqlitePolicyStore:
    """Embedded default. One row per subscriber who changed anything; JSON settings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._opening: asyncio.Lock | None = None

    async def _conn(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # concurrent first scans must not open it twice
            if self._db is not None:
                return self._db
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = await aiosqlite.connect(self.path)
                await self._db.execute("PRAGMA journal_mode=WAL")
                await self._db.execute(
                    "CREATE TABLE IF NOT EXISTS subscriber_policy ("
                    " subscriber TEXT PRIMARY KEY, settings TEXT NOT NULL, updated_at REAL NOT NULL)"
                )
                await self._db.commit()
            except Exception as exc:
                raise StoreError(f"cannot open policy store {self.path}") from exc
        return self._db

    async def get(self, subscriber: str | None) -> Policy:
        if subscriber is None:
            return DEFAULT_POLICY
        db = await self._conn()
        # one round trip to aiosqlite's thread (execute + fetchone + close would be three)
        rows = await db.execute_fetchall(
            "SELECT settings FROM subscriber_policy WHERE subscriber = ?", (subscriber,)
        )
        row = next(iter(rows), None)
        if row is None:
            return DEFAULT_POLICY.for_subscriber(subscriber)
        return Policy.from_json(orjson.loads(row[0]))

    async def put(self, policy: Policy) -> None:
        if policy.subscriber is None:
            raise StoreError("a stored policy needs a subscriber id")
        db = await self._conn()
        await db.execute(
            "INSERT INTO subscriber_policy(subscriber, settings, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(subscriber) DO UPDATE SET settings=excluded.settings,"
            " updated_at=excluded.updated_at",
            (policy.subscriber, orjson.dumps(policy.to_json()).decode(), policy.updated_at or time.time()),
        )
        await db.commit()

    async def delete(self, subscriber: str) -> None:
        db = await self._conn()
        await db.execute("DELETE FROM subscriber_policy WHERE subscriber = ?", (subscriber,))
        await db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


class CachedPolicyStore:
    """A bounded TTL cache in front of a store. Writes through this object invalidate at once;
    other replicas learn of changes within `ttl` seconds (or sooner through `invalidate`)."""

    def __init__(self, inner: PolicyStore, *, ttl: float = 1.0, maxsize: int = 100_000) -> None:
        self.inner = inner
        self.ttl = ttl
        self.maxsize = maxsize
        self._cache: OrderedDict[str, tuple[float, Policy]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def get(self, subscriber: str | None) -> Policy:
        if subscriber is None:
            return DEFAULT_POLICY
        now = time.monotonic()
        hit = self._cache.get(subscriber)
        if hit is not None and hit[0] > now:
            self.hits += 1
            return hit[1]
        self.misses += 1
        try:
            policy = await self.inner.get(subscriber)
        except StoreError:
            if hit is not None:  # stale beats nothing when the database is down
                return hit[1]
            raise
        self._cache[subscriber] = (now + self.ttl, policy)
        self._cache.move_to_end(subscriber)
        if len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return policy

    def invalidate(self, subscriber: str | None = None) -> None:
        if subscriber is None:
            self._cache.clear()
        else:
            self._cache.pop(subscriber, None)

    async def put(self, policy: Policy) -> None:
        await self.inner.put(policy)
        self.invalidate(policy.subscriber)

    async def delete(self, subscriber: str) -> None:
        await self.inner.delete(subscriber)
        self.invalidate(subscriber)

    async def close(self) -> None:
        await self.inner.close()
