"""Quarantine: a copy of each blocked message with the reasons (the verdict's
`explanations()`), retrievable by its subscriber for MAMORI_RETENTION__QUARANTINE_DAYS (default 7)
and then purged. Release re-delivers through the channel's redeliverer when one is registered
(`QuarantineStore.redeliverers[channel]`; email: `gateway.store.redeliver`, SMS: the SMS
ingress) and marks the message released; without a redeliverer it is only marked released.

`quarantine_hook` is the verdict hook `Gateway.create` installs: a verdict whose action blocks
(quarantine; or reject / soft reject when the subscriber's `on_block` is quarantine) stores a
copy before the ingress answers its peer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.errors import StoreError
from gateway.message import Channel, Message
from gateway.retention import Holds
from gateway.store.db import Database, SqliteWriter, purge_rows
from gateway.store.rowspool import RowSpool
from gateway.store.schema import quarantine
from gateway.verdict import Verdict

log = logging.getLogger("mamori.store.quarantine")

DAY = 86400.0
PREVIEW_CHARS = 160
SPOOL_DELAY = 0.05  # seconds from a spooled copy to its ingest
SPOOL_RETRY = 1.0  # seconds between failed ingests

Redeliverer = Callable[[Message], Awaitable[bool]]
# the idempotent insert of a batch of copies on SQLite, by column order (built once)
_SQLITE_INSERT: dict[tuple[str, ...], str] = {}


def message_bytes(message: Message) -> bytes:
    """The message as received: the SMS text, or the email header block and body."""
    if message.channel is Channel.SMS:
        return message.body
    head = b"".join(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape")
                    for name, value in message.headers)
    return head + b"\r\n" + message.body


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    subscriber: str
    message_id: str
    channel: str
    ingress: str
    sender: str
    recipients: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    protocol: dict[str, str]
    received_at: float
    stored_at: float
    expires_at: float
    action: str
    score: float
    reasons: list[dict[str, Any]]
    status: str
    released_at: float | None = None

    @property
    def subject(self) -> str:
        for name, value in self.headers:
            if name.lower() == "subject":
                return value
        return ""

    @property
    def preview(self) -> str:
        """The SMS text or the email subject, shortened: what the settings page lists."""
        if self.channel == Channel.SMS.value:
            text = self.body.decode("utf-8", "replace")
        else:
            text = self.subject
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "\u2026"

    def to_message(self) -> Message:
        return Message(
            channel=Channel(self.channel), sender=self.sender, recipients=self.recipients,
            subscriber=self.subscriber, headers=self.headers, body=self.body,
            protocol=self.protocol, id=self.message_id, received_at=self.received_at,
        )


def _dump_headers(headers: tuple[tuple[str, str], ...]) -> str:
    """Header fields as JSON. Bytes that are not UTF-8 (8-bit headers, kept as surrogate
    escapes by `Message.email`) become \\udcXX escapes, so the copy keeps the raw bytes."""
    fields = [list(h) for h in headers]
    try:
        return orjson.dumps(fields).decode()
    except TypeError:  # orjson refuses lone surrogates; the standard library escapes them
        return json.dumps(fields)


def _load_headers(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # surrogate escapes of an 8-bit header
        return json.loads(raw)


def _ingest_spool(writer: SqliteWriter, spool: RowSpool) -> None:
    """In the writer thread: the spool's files, and those of processes gone, into the
    database, a transaction per file (idempotent: a row already there is left as it is)."""
    for path in spool.take():
        _ingest_rows(writer, spool, spool.read(path))
        spool.done(path)
    for orphan in spool.orphans():
        try:
            n = 0
            for path in spool.files_of(orphan):
                rows = spool.read(path)
                _ingest_rows(writer, spool, rows)
                n += len(rows)
        except BaseException:
            spool.release(orphan)
            raise
        spool.remove(orphan)
        if n:
            log.info("quarantine copies recovered from a spool", extra={"count": n})


# what the database refuses a row for (its content); OperationalError (busy, full disk, I/O)
# is caught before these and raised: the spool file is then kept for the next try
_REFUSED = (sqlite3.DatabaseError, ValueError, TypeError, OverflowError)


def _ingest_rows(writer: SqliteWriter, spool: RowSpool, rows: list[dict[str, Any]]) -> None:
    """The rows in one transaction per column set. A transaction the database refuses for
    what is in it is retried row by row, and a row it refuses alone is set aside in the
    spool's `rejected` file and logged by its id, so it cannot hold the others back."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r), []).append(r)
    for group in groups.values():
        try:
            writer.write(*_sqlite_args(group))
        except sqlite3.OperationalError:
            raise
        except _REFUSED:
            for row in group:
                _ingest_alone(writer, spool, row)


def _ingest_alone(writer: SqliteWriter, spool: RowSpool, row: dict[str, Any]) -> None:
    try:
        writer.write(*_sqlite_args([row]))
    except sqlite3.OperationalError:
        raise
    except _REFUSED as exc:
        spool.reject(row)
        log.error("quarantine copy refused by the database; kept in the spool's rejected file",
                  extra={"ref": str(row.get("message_id", ""))[:12], "error": type(exc).__name__})


def _sqlite_args(rows: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
    """The idempotent insert of copies on SQLite and its parameters."""
    cols = tuple(rows[0])
    sql = _SQLITE_INSERT.get(cols)
    if sql is None:
        sql = _SQLITE_INSERT[cols] = (
            f"INSERT INTO quarantine ({', '.join(cols)}) VALUES "
            f"({', '.join('?' * len(cols))}) "
            "ON CONFLICT (subscriber, message_id) DO NOTHING")
    return sql, [tuple(r[c] for c in cols) for r in rows]


@dataclass
class QuarantineStore:
    db: Database
    days: float = 7.0
    kind: str = "quarantine"
    redeliverers: dict[str, Redeliverer] = field(default_factory=dict)
    spool: bool = True  # SQLite file: spool the copies the database cannot take at once
    _pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = field(
        default_factory=list, init=False, repr=False)
    _flusher: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _insert_stmt: Any = field(default=None, init=False, repr=False)
    # SQLite file: copies the database could not take at once (see gateway.store.rowspool)
    _spool: RowSpool | None = field(default=None, init=False, repr=False)
    _ingest_timer: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)
    _ingesting: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    @property
    def period(self) -> float:
        return self.days * DAY

    async def add(self, message: Message, verdict: Verdict, ingress: str) -> None:
        if not message.subscriber:
            return  # nobody could ever retrieve it
        row = self._copy(message, verdict, ingress)
        done = self._write_now([row])
        if done is True or (done is None and self._spooled([row])):
            return
        await self._enqueue(row)

    async def add_many(self, items: Sequence[tuple[Message, Verdict]],
                       ingress: str) -> list[StoreError | None]:
        """`add` of many copies at once: what each `add` would have raised (None: stored), in
        order. One transaction for all when the database is free, else they join the group
        commit together; no task per copy."""
        rows = [self._copy(m, v, ingress) for m, v in items if m.subscriber]
        out: list[StoreError | None] = [None] * len(items)
        if not rows:
            return out
        done = self._write_now(rows)
        if done is True or (done is None and self._spooled(rows)):
            return out
        futs = iter([self._enqueue(r) for r in rows])
        for k, (m, _v) in enumerate(items):
            if not m.subscriber:
                continue
            try:
                await next(futs)
            except StoreError as exc:
                out[k] = exc
        return out

    def _copy(self, message: Message, verdict: Verdict, ingress: str) -> dict[str, Any]:
        return {
            "subscriber": message.subscriber, "message_id": message.id,
            "channel": message.channel.value, "ingress": ingress[:32],
            "sender": message.sender,
            "recipients": orjson.dumps(list(message.recipients)).decode(),
            "headers": _dump_headers(message.headers),
            "body": message.body, "protocol": orjson.dumps(dict(message.protocol)).decode(),
            "received_at": message.received_at, "stored_at": time.time(),
            "action": verdict.action.value, "score": float(verdict.score),
            "reasons": orjson.dumps(verdict.explanations()).decode(), "status": "held",
        }

    def _enqueue(self, row: dict[str, Any]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, fut))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        return fut

    def _write_now(self, rows: list[dict[str, Any]]) -> bool | None:
        """Commit the rows at once in this thread, without a task or a hop, when nothing is
        queued or being written and the SQLite writer can do it without waiting
        (`SqliteWriter.write_inline`): True once committed; None when the database was busy
        (nothing tried: the copies may be spooled); False when writing failed or cannot be
        done here (the group commit retries and reports it)."""
        if self._flusher is not None or self._pending or not self.db.is_ready:
            return False
        writer = self.db.sqlite_writer()
        if writer is None:
            return False
        try:
            return True if writer.write_inline(*_sqlite_args(rows)) else None
        except Exception:
            log.debug("quarantine write in place failed; queued", exc_info=True)
            return False

    # Spool (SQLite file): when the database cannot take a copy at once (a WAL checkpoint or
    # another writer holds it), the copy is appended to a spool file instead of waiting, as
    # safe as a commit with synchronous=NORMAL, and the writer thread moves it into the
    # database SPOOL_DELAY seconds later. Reads first wait for what is spooled. A copy whose
    # own insert fails is never spooled (it goes on to the group commit, which reports the
    # failure to the caller); what keeps a spooled copy out of the database (a full disk)
    # keeps it in the spool, retried every SPOOL_RETRY seconds.

    def _spooled(self, rows: list[dict[str, Any]]) -> bool:
        """Append the rows to the spool; False (the caller waits for the database) when there
        is no spool (PostgreSQL, SQLite in memory) or the append failed."""
        spool = self._spool_of(self.db.sqlite_writer()) if self.spool else None
        if spool is None:
            return False
        try:
            spool.append(rows)
        except Exception:  # a full disk; a value the spool cannot encode
            log.warning("quarantine copy not spooled; waiting for the database", exc_info=True)
            return False
        if self._ingest_timer is None and self._ingesting is None:
            self._ingest_timer = asyncio.get_running_loop().call_later(
                SPOOL_DELAY, self._start_ingest)
        return True

    def _cancel_ingest_timer(self) -> None:
        if self._ingest_timer is not None:
            self._ingest_timer.cancel()
            self._ingest_timer = None

    def _start_ingest(self) -> None:
        self._ingest_timer = None
        if self._ingesting is None:
            self._ingesting = asyncio.ensure_future(self._ingest())

    async def _ingest(self) -> None:
        """Move what is spooled into the database (in the writer thread); retried later on
        failure, the rows staying in their spool file."""
        try:
            await self.db.ready()
            writer = self.db.sqlite_writer()
            if writer is not None and self._spool is not None:
                await writer.run(_ingest_spool, writer, self._spool)
        except Exception:
            log.warning("quarantine spool not ingested yet; retrying", exc_info=True)
            self._ingest_timer = asyncio.get_running_loop().call_later(
                SPOOL_RETRY, self._start_ingest)
        finally:
            self._ingesting = None
        if self._spool is not None and self._spool.pending and self._ingest_timer is None:
            self._ingest_timer = asyncio.get_running_loop().call_later(
                SPOOL_DELAY, self._start_ingest)

    def _spool_of(self, writer: SqliteWriter | None) -> RowSpool | None:
        """The spool beside the SQLite file of `writer` (None without one)."""
        if writer is None:
            return None
        if self._spool is None:
            self._spool = RowSpool(Path(writer.path + "-spool") / self.kind)
        return self._spool

    async def recover(self) -> None:
        """Ingest what processes gone before left in the spool (at start)."""
        writer = self.db.sqlite_writer()
        spool = self._spool_of(writer)
        if writer is None or spool is None:
            return
        await self.db.ready()
        await writer.run(_ingest_spool, writer, spool)

    async def drain(self) -> None:
        """Wait until every copy spooled so far is in the database (reads call this)."""
        if self._spool is None:
            return
        if self._ingesting is not None:
            await asyncio.shield(self._ingesting)
        if self._spool.pending:
            self._cancel_ingest_timer()
            self._start_ingest()
            assert self._ingesting is not None
            await asyncio.shield(self._ingesting)
            if self._spool.pending or self._ingest_timer is not None:
                raise StoreError("quarantine store unavailable")

    async def close(self) -> None:
        """Ingest what is spooled (what cannot be stays for the next start)."""
        self._cancel_ingest_timer()
        try:
            await self.drain()
        except StoreError:
            log.warning("quarantine spool left for the next start")
        self._cancel_ingest_timer()  # (a failed ingest re-arms it)
        if self._spool is not None:
            self._spool.close()

    # Group commit: the copies asked for while a write is in flight are written together, in
    # one transaction, as soon as it ends; every caller still returns only once its own copy
    # is committed (or gets StoreError). One bad row never fails the others: a failed batch
    # is retried row by row.

    async def _flush(self) -> None:
        batch: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._insert([r for r, _ in batch])
                    results: list[BaseException | None] = [None] * len(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        results = [exc]
                    else:
                        results = []
                        for r, _ in batch:
                            try:
                                await self._insert([r])
                                results.append(None)
                            except Exception as one:
                                results.append(one)
                for (_, f), err in zip(batch, results, strict=True):
                    if f.done():
                        continue
                    if err is None:
                        f.set_result(None)
                    else:
                        error = StoreError("quarantine store unavailable")
                        error.__cause__ = err
                        f.set_exception(error)
                        f.exception()  # retrieved: the waiter may have been cancelled
        finally:
            self._flusher = None
            for _, f in batch + self._pending:  # cancelled while writing: nobody waits forever
                if not f.done():
                    f.set_exception(StoreError("quarantine store closing"))
                    f.exception()
            self._pending = []

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        engine = await self.db.ready()
        writer = self.db.sqlite_writer()
        if writer is not None:  # SQLite file: one transaction per batch
            await writer.executemany(*_sqlite_args(rows))
            return
        if self._insert_stmt is None:  # built once: an idempotent insert (a retried message)
            ins = (sqlite_insert if self.db.dialect == "sqlite" else pg_insert)(quarantine)
            self._insert_stmt = ins.on_conflict_do_nothing(
                index_elements=[quarantine.c.subscriber, quarantine.c.message_id])
        async with engine.begin() as conn:
            await conn.execute(self._insert_stmt, rows)

    def _row(self, r: Any) -> QuarantinedMessage:
        return QuarantinedMessage(
            subscriber=r.subscriber, message_id=r.message_id, channel=r.channel,
            ingress=r.ingress, sender=r.sender,
            recipients=tuple(orjson.loads(r.recipients)),
            headers=tuple((str(a), str(b)) for a, b in _load_headers(r.headers)),
            body=bytes(r.body), protocol=orjson.loads(r.protocol),
            received_at=r.received_at, stored_at=r.stored_at,
            expires_at=r.stored_at + self.period, action=r.action, score=r.score,
            reasons=orjson.loads(r.reasons), status=r.status, released_at=r.released_at,
        )

    async def list(self, subscriber: str, *, limit: int = 50, before: float | None = None,
                   status: str | None = None) -> list[QuarantinedMessage]:
        """The subscriber's messages still within the period, newest first."""
        conds = [quarantine.c.subscriber == subscriber,
                 quarantine.c.stored_at >= time.time() - self.period]
        if before is not None:
            conds.append(quarantine.c.stored_at < before)
        if status is not None:
            conds.append(quarantine.c.status == status)
        await self.drain()
        engine = await self.db.ready()
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(
                    select(quarantine).where(and_(*conds))
                    .order_by(quarantine.c.stored_at.desc(), quarantine.c.message_id)
                    .limit(limit))).all()
        except Exception as exc:
            raise StoreError("quarantine store unavailable") from exc
        return [self._row(r) for r in rows]

    async def get(self, subscriber: str, message_id: str) -> QuarantinedMessage | None:
        await self.drain()
        engine = await self.db.ready()
        try:
            async with engine.connect() as conn:
                r = (await conn.execute(select(quarantine).where(and_(
                    quarantine.c.subscriber == subscriber,
                    quarantine.c.message_id == message_id,
                    quarantine.c.stored_at >= time.time() - self.period)))).first()
        except Exception as exc:
            raise StoreError("quarantine store unavailable") from exc
        return None if r is None else self._row(r)

    async def _set_status(self, subscriber: str, message_id: str, old: str, new: str,
                          **values: Any) -> bool:
        """Compare-and-set of the status; False when another request got there first."""
        await self.drain()
        engine = await self.db.ready()
        try:
            async with engine.begin() as conn:
                res = await conn.execute(update(quarantine).where(and_(
                    quarantine.c.subscriber == subscriber,
                    quarantine.c.message_id == message_id,
                    quarantine.c.status == old)).values(status=new, **values))
        except Exception as exc:
            raise StoreError("quarantine store unavailable") from exc
        return bool(res.rowcount)

    async def release(self, subscriber: str, message_id: str, actor: str
                      ) -> tuple[QuarantinedMessage, bool, bool] | None:
        """Re-deliver through the channel's redeliverer (when one is registered) and mark the
        message released. Concurrent releases deliver once (the row is claimed first); a failed
        re-delivery raises StoreError and leaves the message held, to be retried.
        Returns (message, redelivered, newly released) or None when there is no such message."""
        item = await self.get(subscriber, message_id)
        if item is None:
            return None
        if not await self._set_status(subscriber, message_id, "held", "releasing"):
            current = await self.get(subscriber, message_id)
            return (current or item), False, False
        redelivered = False
        redeliver = self.redeliverers.get(item.channel)
        try:
            if redeliver is not None:
                redelivered = await redeliver(item.to_message())
        except BaseException:
            await self._set_status(subscriber, message_id, "releasing", "held")
            raise
        now = time.time()
        await self._set_status(subscriber, message_id, "releasing", "released",
                               released_at=now, released_by=actor[:128])
        released = QuarantinedMessage(**{**{f: getattr(item, f) for f in item.__dataclass_fields__},
                                         "status": "released", "released_at": now})
        return released, redelivered, True

    async def purge(self, cutoff: float, holds: Holds) -> int:
        """Retainable: delete what was stored before `cutoff` unless held."""
        await self.drain()
        return await purge_rows(self.db, quarantine, quarantine.c.stored_at, cutoff, holds,
                            quarantine.c.subscriber, quarantine.c.message_id)

    async def purge_expired(self, holds: Holds | None = None) -> int:
        return await self.purge(time.time() - self.period, holds or Holds())
