"""The policy cache on the scan path, the change feed between replicas, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from gateway.errors import StoreError
from gateway.policy import DEFAULT_POLICY, Policy, Strength
from gateway.store.db import Database, async_url
from gateway.store.policy import CachedPolicyStore, DbPolicyStore, SqlitePolicyStore


class CountingStore:
    """Wraps a store and counts reads; can be switched to failing (a database outage)."""

    def __init__(self, inner: DbPolicyStore) -> None:
        self.inner = inner
        self.reads = 0
        self.down = False

    async def get(self, subscriber: str | None) -> Policy:
        self.reads += 1
        if self.down:
            raise StoreError("down")
        return await self.inner.get(subscriber)

    async def put(self, policy: Policy) -> None:
        await self.inner.put(policy)

    async def delete(self, subscriber: str) -> None:
        await self.inner.delete(subscriber)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def db(tmp_path: Path, backend: str):
    from .conftest import TABLES

    d = Database(backend or f"sqlite:///{tmp_path / 's.sqlite3'}")
    engine = await d.ready()
    if d.dialect == "postgresql":
        from sqlalchemy import text

        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    yield d
    await d.close()


async def test_seen_subscriber_never_waits_on_the_database(db: Database) -> None:
    counting = CountingStore(DbPolicyStore(db))
    cache = CachedPolicyStore(counting, ttl=0.0, poll_interval=0)  # every entry at once stale
    await DbPolicyStore(db).put(Policy(subscriber="s1", youth=True))
    assert (await cache.get("s1")).youth is True
    assert counting.reads == 1
    counting.down = True
    for _ in range(5):  # stale: answered from memory; refreshes fail in the background
        assert (await cache.get("s1")).youth is True
    await asyncio.sleep(0)
    assert cache.hits == 5
    with pytest.raises(StoreError):
        await cache.get("never-seen")
    await cache.close()


async def test_concurrent_misses_read_once(db: Database) -> None:
    counting = CountingStore(DbPolicyStore(db))
    cache = CachedPolicyStore(counting, poll_interval=0)
    results = await asyncio.gather(*(cache.get("s2") for _ in range(20)))
    assert counting.reads == 1 and all(r == DEFAULT_POLICY.for_subscriber("s2") for r in results)
    await cache.close()


async def test_write_through_takes_effect_at_once(db: Database) -> None:
    cache = CachedPolicyStore(DbPolicyStore(db), ttl=3600, poll_interval=0)
    assert (await cache.get("s3")).protection is True
    await cache.put(Policy(subscriber="s3", protection=False), actor="test")
    assert (await cache.get("s3")).protection is False
    await cache.close()


async def test_other_replica_learns_from_the_change_feed(db: Database) -> None:
    replica1 = CachedPolicyStore(DbPolicyStore(db), ttl=3600, poll_interval=0)
    replica2 = CachedPolicyStore(DbPolicyStore(db), ttl=3600, poll_interval=0)
    await replica2.start()
    assert (await replica2.get("s4")).youth is False  # cached on replica 2
    await replica1.put(Policy(subscriber="s4", youth=True))
    assert (await replica2.get("s4")).youth is False  # not yet: ttl is an hour
    assert await replica2.poll_changes() == 1
    assert (await replica2.get("s4")).youth is True
    assert await replica2.poll_changes() == 0  # seen changes are not reloaded again
    await replica1.delete("s4")
    assert await replica2.poll_changes() == 1
    assert (await replica2.get("s4")).youth is False
    await replica1.close()
    await replica2.close()


async def test_change_feed_poller_runs_in_background(db: Database) -> None:
    replica1 = CachedPolicyStore(DbPolicyStore(db), ttl=3600, poll_interval=0)
    replica2 = CachedPolicyStore(DbPolicyStore(db), ttl=3600, poll_interval=0.05)
    await replica2.start()
    await replica2.get("s5")
    await replica1.put(Policy(subscriber="s5", strength=Strength.HIGH))
    for _ in range(200):  # s5 had the defaults, not cached: the feed marks it as stored
        if (await replica2.get("s5")).strength == "high":
            break
        await asyncio.sleep(0.02)
    assert replica2.cached("s5").strength == "high"  # type: ignore[union-attr]
    await replica1.put(Policy(subscriber="s6", strength=Strength.HIGH))
    for _ in range(200):  # cached once read as stored, then changed elsewhere: reloaded
        if (await replica2.get("s6")).strength == "high":
            break
        await asyncio.sleep(0.02)
    await replica1.put(Policy(subscriber="s6", strength=Strength.LOW))
    for _ in range(200):
        if replica2.cached("s6") and replica2.cached("s6").strength == "low":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.02)
    assert replica2.cached("s6").strength == "low"  # type: ignore[union-attr]
    await replica1.close()
    await replica2.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_legacy_sqlite_file_is_migrated(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE subscriber_policy (subscriber TEXT PRIMARY KEY, settings TEXT NOT NULL,"
                " updated_at REAL NOT NULL)")
    con.execute("INSERT INTO subscriber_policy VALUES (?, ?, ?)",
                ("old-sub", orjson.dumps(Policy(subscriber="old-sub", youth=True).to_json()).decode(),
                 1.0))
    con.commit()
    con.close()
    store = SqlitePolicyStore(path)
    assert (await store.get("old-sub")).youth is True
    await store.put(Policy(subscriber="new-sub", block_international=True))
    assert (await store.get("new-sub")).block_international is True
    await store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    con.close()


def test_urls() -> None:
    assert async_url("postgresql://u:p@h:1/d") == "postgresql+asyncpg://u:p@h:1/d"
    assert async_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert async_url("sqlite:////x/y.db") == "sqlite+aiosqlite:////x/y.db"
    for bad in ("mysql://x/y", "no-scheme"):
        with pytest.raises(StoreError):
            async_url(bad)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_unreachable_database_is_a_store_error(backend: str) -> None:
    d = Database("postgresql://nobody:x@127.0.0.1:1/none")
    with pytest.raises(StoreError):
        await DbPolicyStore(d).get("x")
    await d.close()


async def test_migrations_match_the_schema(db: Database) -> None:
    """The head revision creates exactly what gateway/store/schema.py declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gateway.store.schema import metadata

    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    assert diff == []


@pytest.mark.parametrize(("action", "on_block", "kept"), [
    ("quarantine", "quarantine", True),
    ("quarantine", "drop", False),  # the subscriber chose drop: no copy  # the verdict itself says quarantine
    ("reject", "quarantine", True),
    ("soft_reject", "quarantine", False),
    ("reject", "drop", False),
    ("tag", "quarantine", False),
    ("accept", "quarantine", False),
])
async def test_quarantine_hook_decision(db: Database, action: str, on_block: str,
                                        kept: bool) -> None:
    from types import SimpleNamespace

    from gateway.message import Message
    from gateway.policy import OnBlock
    from gateway.runtime import Gateway
    from gateway.store.quarantine import QuarantineStore
    from gateway.verdict import Action, ScoredSymbol, Verdict

    store = QuarantineStore(db)
    policy = Policy(subscriber="h1", on_block=OnBlock(on_block))

    async def hook(msg: Message, verdict: Verdict, ingress: str) -> None:
        await Gateway.hold(SimpleNamespace(quarantine=store), msg, verdict, policy, ingress)  # type: ignore[arg-type]
    msg = Message.sms("text", sender="+15550000000", subscriber="h1")
    verdict = Verdict(message_id=msg.id, channel="sms", action=Action(action), score=10.0,
                      symbols={"X_TEST": ScoredSymbol("X_TEST", 10.0, ("why",), "a reason")})
    await hook(msg, verdict, "test")
    item = await store.get("h1", msg.id)
    assert (item is not None) is kept
    if item is not None:
        assert item.reasons == verdict.explanations()
    # a message without a subscriber is never kept
    anon = Message.sms("text", sender="+15550000000")
    await hook(anon, Verdict(message_id=anon.id, channel="sms", action=Action.QUARANTINE,
                             score=10.0, symbols={}), "test")
    assert await store.list("") == []
