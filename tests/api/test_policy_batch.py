"""Policy cache misses read together: concurrent misses share one query, each gets its own
policy, and a failing batch is retried per subscriber."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.policy import DEFAULT_POLICY, Policy
from gateway.store.db import Database
from gateway.store.policy import CachedPolicyStore, DbPolicyStore


class CountingDb(DbPolicyStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.batches: list[int] = []
        self.singles = 0
        self.broken: set[str] = set()

    async def get_many(self, subscribers):  # type: ignore[no-untyped-def,override]
        subs = list(subscribers)
        self.batches.append(len(subs))
        if self.broken & set(subs):
            raise StoreError("policy store unavailable")
        return await super().get_many(subs)

    async def get(self, subscriber: str | None) -> Policy:
        self.singles += 1
        if subscriber in self.broken:
            raise StoreError("policy store unavailable")
        return await super().get(subscriber)


@pytest.fixture
async def inner(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    yield CountingDb(db)
    await db.close()


async def test_concurrent_misses_share_one_query(inner: CountingDb) -> None:
    await inner.put(Policy(subscriber="s3", youth=True))
    cache = CachedPolicyStore(inner, poll_interval=0)
    subs = [f"s{i}" for i in range(20)]
    got = await asyncio.gather(*(cache.get(s) for s in subs))
    assert [p.subscriber for p in got] == subs
    assert got[3].youth is True and got[4] == DEFAULT_POLICY.for_subscriber("s4")
    assert sum(inner.batches) == 20 and len(inner.batches) < 20 and inner.singles == 0
    # now cached: no more reads
    await asyncio.gather(*(cache.get(s) for s in subs))
    assert sum(inner.batches) == 20


async def test_a_failing_subscriber_fails_only_its_own_lookup(inner: CountingDb) -> None:
    inner.broken = {"bad"}
    cache = CachedPolicyStore(inner, poll_interval=0)
    res = await asyncio.gather(*(cache.get(s) for s in ("a", "bad", "b")),
                               return_exceptions=True)
    assert isinstance(res[1], StoreError)
    assert [getattr(r, "subscriber", None) for r in (res[0], res[2])] == ["a", "b"]
    assert cache.cached("bad") is None and cache.cached("a") is not None


async def test_subscribers_without_a_policy_are_answered_from_memory(inner: CountingDb) -> None:
    await inner.put(Policy(subscriber="has", youth=True))
    cache = CachedPolicyStore(inner, poll_interval=0.05)
    await cache.start()
    try:
        assert (await cache.get("nobody")) == DEFAULT_POLICY.for_subscriber("nobody")
        assert (await cache.get("has")).youth is True
        assert sum(inner.batches) == 1  # only "has" was read
        # another replica stores a policy for a subscriber this one has not seen yet...
        other = CachedPolicyStore(DbPolicyStore(inner.db), poll_interval=0)
        await other.put(Policy(subscriber="new", youth=True))
        for _ in range(100):  # ...this replica learns of it through the change feed
            await asyncio.sleep(0.05)
            if (await cache.get("new")).youth:
                break
        assert (await cache.get("new")).youth is True
        # and a change through this replica takes effect at once
        await cache.put(Policy(subscriber="mine", youth=True))
        cache.invalidate("mine")
        assert (await cache.get("mine")).youth is True
    finally:
        await cache.close()


async def test_too_many_stored_policies_fall_back_to_reading(inner: CountingDb) -> None:
    for i in range(5):
        await inner.put(Policy(subscriber=f"p{i}", youth=True))
    cache = CachedPolicyStore(inner, poll_interval=60, max_known=3)
    await cache.start()
    try:
        await cache.get("nobody")
        assert sum(inner.batches) == 1  # not known: read
    finally:
        await cache.close()
