"""Policy stores. The scan path calls `get`, which must not wait on a database for a
subscriber seen recently.

- `DbPolicyStore`: one row per subscriber who changed anything (JSON settings), on the shared
  SQLite/PostgreSQL data layer; every write also appends to `policy_changes`.
- `CachedPolicyStore`: a bounded cache in front of any store, the one the scan path uses.
  * a subscriber seen recently is answered from memory, always; an entry older than `ttl` is
    still answered at once and refreshed in the background (stale-while-revalidate), and kept
    when the database is down;
  * a subscriber with no stored policy (most of them) is answered from memory too, with a
    copy of the defaults and no cache entry: at start the cache loads the ids of the
    subscribers that have one (up to `max_known`; beyond that every miss reads the database
    and caches what it read), and the change feed and local writes keep that set;
  * a subscriber not cached while the store is down, or slower than `timeout`, is scanned
    with the default policy when `fallback` is on (MAMORI_STORE__POLICY_FALLBACK=default,
    counted in mamori_policy_fallbacks_total) and refreshed in the background like a stale
    entry; with it off the lookup raises StoreError and the ingress answers a temporary failure;
  * a change made through this object (the API on this replica) replaces the cached entry
    immediately, so it takes effect for the next message;
  * other replicas learn of it from the change feed: each replica polls `policy_changes`
    every `poll_interval` (default 1 s; one indexed query per replica, not per message) and
    reloads the changed subscribers it has cached. So a change reaches every replica within
    about one poll interval plus one query; `ttl` is only the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.errors import StoreError
from gateway.metrics import POLICY_FALLBACKS
from gateway.policy import DEFAULT_POLICY, Policy
from gateway.store.db import Database
from gateway.store.schema import policy_changes, subscriber_policy

log = logging.getLogger("mamori.store.policy")

MAX_SUBSCRIBER_ID = 128


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


def _decode(subscriber: str, raw: str | bytes, updated_at: float) -> Policy:
    try:
        data = orjson.loads(raw)
        data["subscriber"] = subscriber
        data["updated_at"] = updated_at
        return Policy.from_json(data)
    except (ValueError, TypeError) as exc:
        raise StoreError("a stored policy row is unreadable") from exc


def _upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (subscriber) DO UPDATE, in the database's own dialect."""
    ins = (sqlite_insert if dialect == "sqlite" else pg_insert)(subscriber_policy)
    return ins.on_conflict_do_update(
        index_elements=[subscriber_policy.c.subscriber],
        set_={"settings": ins.excluded.settings, "updated_at": ins.excluded.updated_at,
              "updated_by": ins.excluded.updated_by},
    )


class DbPolicyStore:
    """Policies on the shared data layer (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, *, owns_db: bool = False) -> None:
        self.db = db
        self._owns_db = owns_db

    async def get(self, subscriber: str | None) -> Policy:
        if subscriber is None:
            return DEFAULT_POLICY
        engine = await self.db.ready()
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(
                    select(subscriber_policy.c.settings, subscriber_policy.c.updated_at)
                    .where(subscriber_policy.c.subscriber == subscriber)
                )).first()
        except Exception as exc:
            raise StoreError("policy store unavailable") from exc
        if row is None:
            return DEFAULT_POLICY.for_subscriber(subscriber)
        return _decode(subscriber, row[0], row[1])

    async def get_many(self, subscribers: Iterable[str]) -> dict[str, Policy]:
        wanted = list(dict.fromkeys(subscribers))
        out = {s: DEFAULT_POLICY.for_subscriber(s) for s in wanted}
        if not wanted:
            return out
        engine = await self.db.ready()
        try:
            async with engine.connect() as conn:
                for i in range(0, len(wanted), 500):
                    rows = await conn.execute(
                        select(subscriber_policy.c.subscriber, subscriber_policy.c.settings,
                               subscriber_policy.c.updated_at)
                        .where(subscriber_policy.c.subscriber.in_(wanted[i:i + 500]))
                    )
                    for sub, raw, at in rows:
                        out[sub] = _decode(sub, raw, at)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError("policy store unavailable") from exc
        return out

    async def put(self, policy: Policy, *, actor: str = "") -> None:
        await self.put_many([policy], actor=actor)

    async def put_many(self, policies: Iterable[Policy], *, actor: str = "") -> int:
        rows = []
        now = time.time()
        for p in policies:
            if not p.subscriber:
                raise StoreError("a stored policy needs a subscriber id")
            data = p.to_json()
            data.pop("subscriber", None)
            data.pop("updated_at", None)
            rows.append((p.subscriber, orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode(),
                         p.updated_at or now))
        if not rows:
            return 0
        engine = await self.db.ready()
        upsert = _upsert(self.db.dialect)
        try:
            async with engine.begin() as conn:
                for i in range(0, len(rows), 1000):
                    await conn.execute(upsert, [
                        {"subscriber": sub, "settings": settings, "updated_at": at,
                         "updated_by": actor[:128]} for sub, settings, at in rows[i:i + 1000]])
                await conn.execute(insert(policy_changes),
                                   [{"subscriber": sub, "at": now} for sub, _, _ in rows])
        except Exception as exc:
            raise StoreError("policy store unavailable") from exc
        return len(rows)

    async def delete(self, subscriber: str) -> None:
        engine = await self.db.ready()
        try:
            async with engine.begin() as conn:
                await conn.execute(delete(subscriber_policy)
                                   .where(subscriber_policy.c.subscriber == subscriber))
                await conn.execute(insert(policy_changes).values(subscriber=subscriber,
                                                                 at=time.time()))
        except Exception as exc:
            raise StoreError("policy store unavailable") from exc

    async def iter_all(self, *, batch: int = 1000) -> AsyncIterator[Policy]:
        """Every stored policy, ordered by subscriber id (for export)."""
        engine = await self.db.ready()
        last = ""
        while True:
            async with engine.connect() as conn:
                rows = (await conn.execute(
                    select(subscriber_policy.c.subscriber, subscriber_policy.c.settings,
                           subscriber_policy.c.updated_at)
                    .where(subscriber_policy.c.subscriber > last)
                    .order_by(subscriber_policy.c.subscriber).limit(batch)
                )).all()
            for sub, raw, at in rows:
                yield _decode(sub, raw, at)
            if len(rows) < batch:
                return
            last = rows[-1][0]

    async def subscribers(self, *, limit: int) -> set[str] | None:
        """The ids of every subscriber with a stored policy; None when there are more than
        `limit` (too many to keep in memory)."""
        engine = await self.db.ready()
        out: set[str] = set()
        last = ""
        try:
            while True:
                async with engine.connect() as conn:
                    rows = (await conn.execute(
                        select(subscriber_policy.c.subscriber)
                        .where(subscriber_policy.c.subscriber > last)
                        .order_by(subscriber_policy.c.subscriber).limit(50_000))).all()
                out.update(r[0] for r in rows)
                if len(out) > limit:
                    return None
                if len(rows) < 50_000:
                    return out
                last = rows[-1][0]
        except Exception as exc:
            raise StoreError("policy store unavailable") from exc

    async def count(self) -> int:
        engine = await self.db.ready()
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(subscriber_policy)))
                       .scalar_one())

    async def changes_since(self, since: float) -> list[tuple[int, str, float]]:
        """(id, subscriber, at) of the changes with at > since, oldest first."""
        engine = await self.db.ready()
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(policy_changes.c.id, policy_changes.c.subscriber, policy_changes.c.at)
                    .where(policy_changes.c.at > since)
                    .order_by(policy_changes.c.id).limit(10_000)
                )
                return [(int(i), str(s), float(a)) for i, s, a in rows]
        except Exception as exc:
            raise StoreError("policy change feed unavailable") from exc

    async def latest_change(self) -> float:
        engine = await self.db.ready()
        try:
            async with engine.connect() as conn:
                v = (await conn.execute(select(func.max(policy_changes.c.at)))).scalar_one()
        except Exception as exc:
            raise StoreError("policy change feed unavailable") from exc
        return float(v or 0.0)

    async def trim_changes(self, before: float) -> int:
        engine = await self.db.ready()
        async with engine.begin() as conn:
            res = await conn.execute(delete(policy_changes).where(policy_changes.c.at < before))
        return int(res.rowcount or 0)

    async def close(self) -> None:
        if self._owns_db:
            await self.db.close()


class SqlitePolicyStore(DbPolicyStore):
    """The embedded default at `path` (kept for callers of the first API)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(Database(f"sqlite:///{path.resolve()}"), owns_db=True)
        self.path = path


class CachedPolicyStore:
    """A bounded cache in front of a store (see the module docstring for the guarantees)."""

    CHANGE_WINDOW = 5.0  # seconds of change log re-read each poll (writers' clock skew, commit order)

    def __init__(self, inner: PolicyStore, *, ttl: float = 30.0, maxsize: int = 1_000_000,
                 poll_interval: float = 1.0, max_known: int = 2_000_000, timeout: float = 2.0,
                 fallback: bool = False) -> None:
        self.inner = inner
        self.timeout = timeout
        self.fallback = fallback
        self.ttl = ttl
        self.maxsize = maxsize
        self.poll_interval = poll_interval
        self._cache: OrderedDict[str, tuple[float, Policy]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Policy]] = {}
        self._wanted: list[tuple[str, asyncio.Future[Policy]]] = []
        # the subscribers that have a stored policy (None: not known, ask the database)
        self.max_known = max_known
        self._known: set[str] | None = None
        self._reader: asyncio.Future[None] | None = None
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._seen_changes: set[int] = set()
        self._since = 0.0
        self.hits = 0
        self.misses = 0
        self.stale = 0
        self.defaults = 0  # answered with the defaults from the known set, not cached

    # -- the scan path ----------------------------------------------------------------------

    def peek(self, subscriber: str | None) -> Policy | None:
        """The policy when it is known without a read (cached, or nothing stored for the
        subscriber), else None: then `get` reads it. What `get` answers without I/O."""
        if subscriber is None:
            return DEFAULT_POLICY
        hit = self._cache.get(subscriber)
        if hit is not None:
            self.hits += 1
            if hit[0] <= time.monotonic() and subscriber not in self._refreshing:
                self.stale += 1
                self._spawn(self._refresh(subscriber))
            return hit[1]
        if (self._known is not None and subscriber not in self._known
                and isinstance(self.inner, DbPolicyStore)):
            # nothing stored: the defaults, without a read, a future or a timer; and not kept
            # (a Policy and a tuple per subscriber ever seen, up to `maxsize`, were objects
            # every full garbage collection walked: the set of known subscribers answers it)
            self.defaults += 1
            return DEFAULT_POLICY.for_subscriber(subscriber)
        return None

    async def get(self, subscriber: str | None) -> Policy:
        known = self.peek(subscriber)
        if known is not None:
            return known
        assert subscriber is not None
        self.misses += 1
        fut = self._inflight.get(subscriber)
        if fut is not None:  # single flight: one database read per subscriber at a time
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[subscriber] = fut
        try:
            async with asyncio.timeout(self.timeout):
                policy = await self._read(subscriber)
        except (StoreError, TimeoutError) as exc:
            if not self.fallback:
                fut.set_exception(exc)
                fut.exception()
                if isinstance(exc, TimeoutError):
                    raise StoreError("policy store too slow") from exc
                raise
            # the store is down or slow: scanning goes on with the default policy, kept as a
            # stale entry so the next message is answered at once and refreshes it in the background
            POLICY_FALLBACKS.inc()
            log.warning("policy store unavailable; scanning with the default policy")
            policy = DEFAULT_POLICY.for_subscriber(subscriber)
            fut.set_result(policy)
            self._cache[subscriber] = (time.monotonic(), policy)
            return policy
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._inflight.pop(subscriber, None)
        fut.set_result(policy)
        self._store(subscriber, policy)
        return policy

    # Misses that arrive while a read is in flight are read together, in one query
    # (`get_many`), as soon as it ends: under load a database round trip serves many messages.
    # A failed batch is retried subscriber by subscriber, so one unreadable row fails only its
    # own messages.

    async def _read(self, subscriber: str) -> Policy:
        if not isinstance(self.inner, DbPolicyStore):
            return await self.inner.get(subscriber)
        if self._known is not None and subscriber not in self._known:
            return DEFAULT_POLICY.for_subscriber(subscriber)  # nothing stored: the defaults
        fut: asyncio.Future[Policy] = asyncio.get_running_loop().create_future()
        self._wanted.append((subscriber, fut))
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read_batches(self.inner))
        return await fut

    async def _read_batches(self, inner: DbPolicyStore) -> None:
        batch: list[tuple[str, asyncio.Future[Policy]]] = []
        try:
            while self._wanted:
                batch, self._wanted = self._wanted, []
                try:
                    got: dict[str, Policy | BaseException] = dict(
                        await inner.get_many([s for s, _ in batch]))
                except Exception as exc:
                    got = {}
                    for sub, _ in batch:
                        if len(batch) == 1:
                            got[sub] = exc
                            break
                        try:
                            got[sub] = await inner.get(sub)
                        except Exception as one:
                            got[sub] = one
                for sub, f in batch:
                    if f.done():
                        continue
                    res = got[sub]
                    if isinstance(res, BaseException):
                        f.set_exception(res)
                        f.exception()  # retrieved: the waiter may have been cancelled
                    else:
                        f.set_result(res)
        finally:
            self._reader = None
            for _, f in batch + self._wanted:  # cancelled while reading: nobody waits forever
                if not f.done():
                    f.set_exception(StoreError("policy store closing"))
                    f.exception()
            self._wanted = []

    def _store(self, subscriber: str, policy: Policy) -> None:
        self._cache[subscriber] = (time.monotonic() + self.ttl, policy)
        self._cache.move_to_end(subscriber)
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, subscriber: str) -> None:
        self._refreshing.add(subscriber)
        try:
            policy = await self.inner.get(subscriber)
        except Exception:
            log.warning("policy refresh failed; serving the cached policy")
            return
        finally:
            self._refreshing.discard(subscriber)
        if subscriber in self._cache:
            self._store(subscriber, policy)

    def invalidate(self, subscriber: str | None = None) -> None:
        if subscriber is None:
            self._cache.clear()
        else:
            self._cache.pop(subscriber, None)

    def cached(self, subscriber: str) -> Policy | None:
        hit = self._cache.get(subscriber)
        return hit[1] if hit else None

    # -- writes (the API on this replica) ---------------------------------------------------

    async def put(self, policy: Policy, *, actor: str = "") -> None:
        if isinstance(self.inner, DbPolicyStore):
            await self.inner.put(policy, actor=actor)
        else:
            await self.inner.put(policy)
        if policy.subscriber is not None:
            self._note(policy.subscriber)
            self._store(policy.subscriber, policy)

    async def put_many(self, policies: list[Policy], *, actor: str = "") -> int:
        if isinstance(self.inner, DbPolicyStore):
            n = await self.inner.put_many(policies, actor=actor)
        else:
            for p in policies:
                await self.inner.put(p)
            n = len(policies)
        for p in policies:
            if p.subscriber is not None:
                self._note(p.subscriber)
                if p.subscriber in self._cache:
                    self._store(p.subscriber, p)
        return n

    def _note(self, subscriber: str) -> None:
        """A subscriber now has (or had) a stored policy: ask the database from now on."""
        if self._known is not None:
            self._known.add(subscriber)
            if len(self._known) > self.max_known:
                self._known = None  # too many to hold: every miss reads the database

    async def delete(self, subscriber: str) -> None:
        await self.inner.delete(subscriber)
        self.invalidate(subscriber)

    # -- other replicas' changes -------------------------------------------------------------

    async def start(self) -> None:
        if self._poller is None and isinstance(self.inner, DbPolicyStore) and self.poll_interval > 0:
            with contextlib.suppress(StoreError):
                self._since = await self.inner.latest_change()
            # after the feed position: a policy stored meanwhile comes in through the feed
            with contextlib.suppress(StoreError):
                self._known = await self.inner.subscribers(limit=self.max_known)
            self._poller = asyncio.create_task(self._poll_loop(), name="policy-change-feed")

    async def poll_changes(self) -> int:
        """Reload the cached subscribers changed since the last poll; returns how many."""
        if not isinstance(self.inner, DbPolicyStore):
            return 0
        changes = await self.inner.changes_since(self._since - self.CHANGE_WINDOW)
        fresh = [(i, s, a) for i, s, a in changes if i not in self._seen_changes]
        if changes:
            self._since = max(self._since, max(a for _, _, a in changes))
        window = self._since - self.CHANGE_WINDOW
        self._seen_changes = {i for i, _, a in changes if a > window}
        for _, s, _ in fresh:
            self._note(s)
        subs = {s for _, s, _ in fresh if s in self._cache}
        if subs:
            policies = await self.inner.get_many(subs)
            for sub, policy in policies.items():
                if sub in self._cache:
                    self._store(sub, policy)
        return len(subs)

    async def _poll_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.poll_interval)
            n += 1
            try:
                await self.poll_changes()
                if n % 600 == 0 and isinstance(self.inner, DbPolicyStore):
                    await self.inner.trim_changes(time.time() - 86400)
            except Exception:
                log.warning("policy change feed poll failed; retrying")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.inner.close()
