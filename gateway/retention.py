"""Retention: every stored record type expires after its configured period and is purged;
a legal hold keeps matching records until it is lifted.

Stores that keep records implement `Retainable` and register with `register_retainable` at
start-up, or name a factory `f(settings) -> list[Retainable]` in the entry-point group
`mamori.retention` (so `mamori retention purge` finds them without starting the gateway).
`purge_all` (run by `mamori retention purge` and on a schedule inside `mamori serve`) calls each
with the cutoff of its kind (`MAMORI_RETENTION__<KIND>_DAYS`) and the active holds.

Legal holds live in SQLite (`MAMORI_DATA_DIR/retention.sqlite3`): by subscriber or message id,
with a reason, an author and an expiry; adding and lifting a hold is written to an audit table.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
import orjson

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.privacy import PartyHasher
    from gateway.runtime import Gateway

log = logging.getLogger("mamori.retention")

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Holds:
    """Active legal holds: records of these subscribers or message ids are kept.

    `subscribers` holds raw subscriber ids (for stores that keep them, e.g. quarantine);
    `subscriber_hashes` the same subscribers as keyed hashes (for event records, which only
    carry hashes)."""

    subscribers: frozenset[str] = frozenset()
    message_ids: frozenset[str] = frozenset()
    subscriber_hashes: frozenset[str] = frozenset()

    def holds(self, subscriber: str | None, message_id: str | None) -> bool:
        return (subscriber is not None and subscriber in self.subscribers) or (
            message_id is not None and message_id in self.message_ids
        )

    def holds_hashed(self, subscriber_hash: str | None, message_id: str | None) -> bool:
        return (subscriber_hash is not None and subscriber_hash in self.subscriber_hashes) or (
            message_id is not None and message_id in self.message_ids
        )

    def __bool__(self) -> bool:
        return bool(self.subscribers or self.message_ids or self.subscriber_hashes)


class Retainable(Protocol):
    kind: str  # "verdicts", "quarantine", "feedback", "audit", "dmarc", ...

    async def purge(self, cutoff: float, holds: Holds) -> int:
        """Delete records older than `cutoff` (unix time) unless held; return how many."""
        ...


@dataclass
class RetentionRegistry:
    stores: list[Retainable] = field(default_factory=list)

    def register(self, store: Retainable) -> None:
        self.stores.append(store)


REGISTRY = RetentionRegistry()


def register_retainable(store: Retainable) -> None:
    REGISTRY.register(store)


# ---------------------------------------------------------------------------------------------
# Legal holds


@dataclass(frozen=True, slots=True)
class LegalHold:
    id: int
    scope: str  # "subscriber" | "message"
    value: str
    reason: str
    created_by: str
    created_at: float
    expires_at: float | None
    lifted_at: float | None

    def active(self, now: float) -> bool:
        return self.lifted_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self, hasher: PartyHasher | None = None) -> dict[str, Any]:
        """For listings and logs: a subscriber is shown as its keyed hash when a hasher is given."""
        value = self.value
        if self.scope == "subscriber" and hasher is not None:
            value = hasher(value) or ""
        return {"id": self.id, "scope": self.scope, "value": value, "reason": self.reason,
                "created_by": self.created_by, "created_at": self.created_at,
                "expires_at": self.expires_at, "lifted_at": self.lifted_at}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS legal_holds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL CHECK (scope IN ('subscriber', 'message')),
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    lifted_at REAL
);
CREATE TABLE IF NOT EXISTS legal_hold_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    action TEXT NOT NULL,
    hold_id INTEGER NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class HoldStore:
    """Legal holds and their audit trail in SQLite. Small and rare: plain sqlite3."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Any:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(self, scope: str, value: str, *, reason: str, actor: str,
            expires_at: float | None = None) -> LegalHold:
        if scope not in ("subscriber", "message"):
            raise ValueError("a hold is by subscriber or by message id")
        if not value.strip():
            raise ValueError("a hold needs a subscriber or message id")
        if not reason.strip():
            raise ValueError("a hold needs a reason")
        if not actor.strip():
            raise ValueError("a hold needs the name of who placed it")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise ValueError("the expiry of a hold must be in the future")
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO legal_holds (scope, value, reason, created_by, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", (scope, value.strip(), reason, actor, now, expires_at))
            hold_id = int(cur.lastrowid or 0)
            db.execute("INSERT INTO legal_hold_audit (time, action, hold_id, actor, detail)"
                       " VALUES (?, 'add', ?, ?, ?)",
                       (now, hold_id, actor, orjson.dumps({"reason": reason, "scope": scope,
                                                           "expires_at": expires_at}).decode()))
        log.info("legal hold added", extra={"hold_id": hold_id, "scope": scope, "actor": actor})
        return self.get(hold_id)

    def lift(self, hold_id: int, *, actor: str, reason: str) -> LegalHold:
        if not reason.strip() or not actor.strip():
            raise ValueError("lifting a hold needs a reason and the name of who lifts it")
        hold = self.get(hold_id)
        if hold.lifted_at is not None:
            raise ValueError(f"hold {hold_id} was already lifted")
        now = self.clock()
        with self._db() as db:
            db.execute("UPDATE legal_holds SET lifted_at = ? WHERE id = ?", (now, hold_id))
            db.execute("INSERT INTO legal_hold_audit (time, action, hold_id, actor, detail)"
                       " VALUES (?, 'lift', ?, ?, ?)",
                       (now, hold_id, actor, orjson.dumps({"reason": reason}).decode()))
        log.info("legal hold lifted", extra={"hold_id": hold_id, "actor": actor})
        return self.get(hold_id)

    def get(self, hold_id: int) -> LegalHold:
        with self._db() as db:
            row = db.execute("SELECT id, scope, value, reason, created_by, created_at, expires_at,"
                             " lifted_at FROM legal_holds WHERE id = ?", (hold_id,)).fetchone()
        if row is None:
            raise KeyError(f"no legal hold {hold_id}")
        return LegalHold(*row)

    def entries(self, *, include_inactive: bool = False) -> list[LegalHold]:
        with self._db() as db:
            rows = db.execute("SELECT id, scope, value, reason, created_by, created_at, expires_at,"
                              " lifted_at FROM legal_holds ORDER BY id").fetchall()
        holds = [LegalHold(*r) for r in rows]
        now = self.clock()
        return holds if include_inactive else [h for h in holds if h.active(now)]

    def audit(self) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT time, action, hold_id, actor, detail FROM legal_hold_audit"
                              " ORDER BY id").fetchall()
        return [{"time": t, "action": a, "hold_id": h, "actor": who, **orjson.loads(d)}
                for t, a, h, who, d in rows]

    def active(self, hasher: PartyHasher | None = None, now: float | None = None) -> Holds:
        now = self.clock() if now is None else now
        subs: set[str] = set()
        msgs: set[str] = set()
        for h in self.entries(include_inactive=True):
            if not h.active(now):
                continue
            (subs if h.scope == "subscriber" else msgs).add(h.value)
        hashes = {x for x in (hasher(s) for s in subs)} if hasher is not None else set()
        return Holds(frozenset(subs), frozenset(msgs), frozenset(x for x in hashes if x))


def hold_store(settings: Settings, clock: Callable[[], float] = time.time) -> HoldStore:
    return HoldStore(settings.data_dir / "retention.sqlite3", clock=clock)


# ---------------------------------------------------------------------------------------------
# Stores owned here


class DmarcReportDir:
    """DMARC aggregate report files under MAMORI_DATA_DIR/dmarc-reports/ (by modification time).
    They carry no subscriber or message id, so holds do not apply to them."""

    kind = "dmarc"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _purge(self, cutoff: float) -> int:
        if not self.directory.is_dir():
            return 0
        purged = 0
        for path in self.directory.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                purged += 1
        return purged

    async def purge(self, cutoff: float, holds: Holds) -> int:
        return await asyncio.to_thread(self._purge, cutoff)


def builtin_stores(settings: Settings) -> list[Retainable]:
    from gateway.events import retainable_stores

    return [*retainable_stores(settings), DmarcReportDir(settings.data_dir / "dmarc-reports")]


async def plugin_stores(settings: Settings) -> list[Retainable]:
    """Stores named by entry points in the group `mamori.retention`: each a factory
    `f(settings)` returning a list of stores, or an awaitable of one (for stores that open a
    database first). A store with an async `close()` is closed after the purge."""
    stores: list[Retainable] = []
    for ep in entry_points(group="mamori.retention"):
        try:
            found = ep.load()(settings)
            if inspect.isawaitable(found):
                found = await found
            stores.extend(found)
        except Exception:
            log.exception("retention store %s failed to load", ep.name)
    return stores


def all_stores(settings: Settings, extra: Iterable[Retainable] = (),
               plugins: Iterable[Retainable] = ()) -> list[Retainable]:
    """Built-in stores, entry-point stores, registered stores; each object once."""
    seen: set[int] = set()
    out: list[Retainable] = []
    for s in [*builtin_stores(settings), *plugins, *REGISTRY.stores, *extra]:
        if id(s) not in seen:
            seen.add(id(s))
            out.append(s)
    return out


async def purge_all(settings: Settings, stores: Iterable[Retainable], holds: Holds,
                    now: float | None = None) -> dict[str, int]:
    """Purge every store with the cutoff of its kind; returns records purged per kind.
    One failing store is logged and does not stop the others."""
    now = time.time() if now is None else now
    result: dict[str, int] = {}
    for store in stores:
        cutoff = now - settings.retention.days_for(store.kind) * DAY
        try:
            n = await store.purge(cutoff, holds)
        except Exception:
            log.exception("retention purge of %s failed", store.kind)
            result.setdefault(store.kind, 0)
            continue
        result[store.kind] = result.get(store.kind, 0) + n
    log.info("retention purge", extra={"purged": result})
    return result


async def run_purge(settings: Settings, *, hasher: PartyHasher, now: float | None = None,
                    extra: Iterable[Retainable] = ()) -> dict[str, int]:
    holds = hold_store(settings).active(hasher, now)
    plugins = await plugin_stores(settings)
    try:
        return await purge_all(settings, all_stores(settings, extra, plugins), holds, now)
    finally:
        for store in plugins:
            close = getattr(store, "close", None)
            if close is not None:
                try:
                    result = close()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("closing retention store %s failed", store.kind)


# ---------------------------------------------------------------------------------------------
# Scheduled purge inside `mamori serve` (a service module: `start(gw)`)


class RetentionService:
    name = "retention"

    def __init__(self, gw: Gateway, interval: float) -> None:
        self.gw = gw
        self.interval = interval
        self._task = asyncio.create_task(self._run(), name="retention-purge")

    async def _run(self) -> None:
        await asyncio.sleep(min(60.0, self.interval))  # let the ingresses start first
        while True:
            try:
                extra = self.gw.stores.retainables() if self.gw.stores is not None else ()
                await run_purge(self.gw.settings, hasher=self.gw.hasher, extra=extra)
            except Exception:
                log.exception("scheduled retention purge failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def start(gw: Gateway) -> RetentionService | None:
    hours = gw.settings.retention.interval_hours
    if hours <= 0:
        return None
    return RetentionService(gw, hours * 3600.0)


# ---------------------------------------------------------------------------------------------
# CLI: mamori retention purge | hold add | hold lift | hold list | hold audit


def _settings() -> Settings:
    from gateway.config import load_settings

    return load_settings()


def _hasher(settings: Settings) -> PartyHasher:
    from gateway.privacy import PartyHasher

    return PartyHasher.from_settings(settings.hash_key, settings.data_dir)


def _fail(msg: str) -> None:
    click.echo(f"mamori: error: {msg}", err=True)
    raise SystemExit(2)


@click.group("retention")
def retention_cli() -> None:
    """Retention of stored records and legal holds."""


@retention_cli.command("purge")
def purge_cmd() -> None:
    """Delete every record older than its retention, except those under a legal hold."""
    async def go(settings: Settings) -> dict[str, int]:
        from gateway.store import Stores

        stores = Stores.open(settings)  # quarantine, feedback and audit on the database
        try:
            return await run_purge(settings, hasher=_hasher(settings), extra=stores.retainables())
        finally:
            await stores.close()

    try:
        settings = _settings()
        result = asyncio.run(go(settings))
    except Exception as exc:
        _fail(str(exc))
    click.echo(orjson.dumps({"purged": result}).decode())


@retention_cli.group("hold")
def hold_cli() -> None:
    """Legal holds: keep a subscriber's or a message's records until lifted."""


def _parse_expiry(value: str | None, days: float | None) -> float | None:
    if days is not None:
        return time.time() + days * DAY
    if not value:
        return None
    import datetime as dt

    try:
        d = dt.datetime.fromisoformat(value)
    except ValueError:
        _fail(f"invalid expiry {value!r}: expected an ISO date like 2027-01-31")
        raise
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp()


@hold_cli.command("add")
@click.option("--subscriber", help="subscriber id (phone number or address)")
@click.option("--message-id", help="message id")
@click.option("--reason", required=True, help="why (case reference)")
@click.option("--by", "actor", required=True, help="who places the hold")
@click.option("--expires", help="ISO date or time the hold ends by itself")
@click.option("--days", type=float, help="days until the hold ends by itself")
def hold_add(subscriber: str | None, message_id: str | None, reason: str, actor: str,
             expires: str | None, days: float | None) -> None:
    """Place a legal hold on a subscriber or a message."""
    if bool(subscriber) == bool(message_id):
        _fail("give exactly one of --subscriber or --message-id")
    settings = _settings()
    scope, value = ("subscriber", subscriber) if subscriber else ("message", message_id)
    try:
        hold = hold_store(settings).add(scope, value or "", reason=reason, actor=actor,
                                        expires_at=_parse_expiry(expires, days))
    except ValueError as exc:
        _fail(str(exc))
    click.echo(orjson.dumps(hold.public(_hasher(settings))).decode())


@hold_cli.command("lift")
@click.argument("hold_id", type=int)
@click.option("--reason", required=True)
@click.option("--by", "actor", required=True)
def hold_lift(hold_id: int, reason: str, actor: str) -> None:
    """Lift a legal hold."""
    settings = _settings()
    try:
        hold = hold_store(settings).lift(hold_id, actor=actor, reason=reason)
    except (KeyError, ValueError) as exc:
        _fail(str(exc).strip("'\""))
    click.echo(orjson.dumps(hold.public(_hasher(settings))).decode())


@hold_cli.command("list")
@click.option("--all", "include_all", is_flag=True, help="include lifted and expired holds")
def hold_list(include_all: bool) -> None:
    """List legal holds (subscribers shown as keyed hashes)."""
    settings = _settings()
    hasher = _hasher(settings)
    for hold in hold_store(settings).entries(include_inactive=include_all):
        click.echo(orjson.dumps(hold.public(hasher)).decode())


@hold_cli.command("audit")
def hold_audit() -> None:
    """The audit trail of legal holds."""
    for row in hold_store(_settings()).audit():
        click.echo(orjson.dumps(row).decode())
