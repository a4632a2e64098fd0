"""One async data layer for SQLite (embedded default, MAMORI_DATA_DIR/mamori.sqlite3) and
PostgreSQL (MAMORI_STORE__URL=postgresql://...), on SQLAlchemy's async engine.

The schema is migrated to alembic's head the first time a store touches the database
(`Database.ready`), so `Gateway.create` stays synchronous and cheap.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import and_, delete, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.errors import StoreError
from gateway.retention import Holds

log = logging.getLogger("mamori.store")

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def async_url(url: str) -> str:
    """postgresql://... -> postgresql+asyncpg://...; sqlite:///... -> sqlite+aiosqlite:///..."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreError("MAMORI_STORE__URL must look like postgresql://user:pass@host:port/db")
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise StoreError(f"unsupported database scheme {base!r}: use postgresql:// or sqlite://")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


# a write in the caller's thread (SqliteWriter) slower than this sends the writes to the
# writer thread for INLINE_BACKOFF seconds
INLINE_SLOW = 0.005
INLINE_BACKOFF = 10.0


class SqliteWriter:
    """The hot path's writes (quarantine copies) to one SQLite file: in the caller's thread
    when that needs no wait, else on one connection in one thread.

    A batch of rows costs one transaction, committed when `executemany` returns (WAL;
    synchronous=NORMAL as on the engine's connections). Readers and other writers keep using
    the engine: SQLite serialises the writers (busy_timeout).

    Where the write goes: a hop to the writer thread and back costs two thread wake-ups,
    which on a virtual machine cost more CPU than the transaction itself (about 100 us
    against 50 us per SMS copy). So the transaction runs in the caller's thread when it can
    without waiting: on a second connection that never waits for a lock (busy_timeout 0).
    It goes to the writer thread, which waits for the lock as before, when another writer
    holds the database or the connection is in use, and for INLINE_BACKOFF seconds after an
    inline transaction took longer than INLINE_SLOW (a slow disk then stalls the thread, not
    the event loop, again).

    Neither connection checkpoints the WAL itself (`wal_autocheckpoint=0`): SQLite's
    automatic checkpoint runs inside the COMMIT that crosses 1,000 pages, copying them and
    syncing the database file, and every message waiting on that commit waited for it too
    (1.3% of commits took 4-14 ms instead of 0.03 ms). A `WalCheckpointer` thread on its own
    connection does the checkpoints beside them, started with the first connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mamori-sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()
        self._inline_off_until = 0.0
        self.checkpointer: WalCheckpointer | None = None
        self._start_lock = threading.Lock()

    def _connect(self, *, inline: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        _sqlite_pragmas(conn, None)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        if inline:
            conn.execute("PRAGMA busy_timeout=0")
        with self._start_lock:  # held only here: never a wait for a transaction
            if self.checkpointer is None:
                self.checkpointer = WalCheckpointer(self.path)
                self.checkpointer.start()
        return conn

    @staticmethod
    def _transaction(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`rows` through `sql` and COMMIT, on a connection that has just begun (rolled back
        on failure)."""
        try:
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def write(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One transaction of `rows` on the writer's own connection, waiting for the lock
        (busy_timeout): the writer thread's work (`executemany`, functions given to `run`)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            self._transaction(conn, sql, rows)

    def write_inline(self, sql: str, rows: Sequence[Sequence[Any]]) -> bool:
        """Write in the caller's thread if that needs no wait (see the class): True once
        committed, False when nothing was written (the writer thread's turn). Errors of the
        statement itself are raised, as `executemany` raises them."""
        t0 = time.monotonic()
        if t0 < self._inline_off_until or not self._inline_lock.acquire(blocking=False):
            return False
        try:
            conn = self._inline
            if conn is None:
                try:
                    conn = self._inline = self._connect(inline=True)
                except sqlite3.Error:
                    return False
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked by another writer: the thread waits
                return False
            self._transaction(conn, sql, rows)
        finally:
            self._inline_lock.release()
            took = time.monotonic() - t0
            if took > INLINE_SLOW:
                self._inline_off_until = t0 + took + INLINE_BACKOFF
        return True

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `sql` for every row in one transaction, committed when this returns."""
        if self.write_inline(sql, rows):
            return
        await self.run(self.write, sql, rows)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the writer thread (which may call `write`), after the writes queued
        before it."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._inline_lock:
            if self._inline is not None:
                self._inline.close()
                self._inline = None
        if self.checkpointer is not None:  # after the writers: its last pass sees all
            self.checkpointer.stop()
            self.checkpointer = None


class WalCheckpointer:
    """WAL checkpoints of one SQLite database from a thread and connection of their own.

    Every `interval` seconds a PASSIVE checkpoint copies what it can without waiting for
    anyone (writers go on appending meanwhile). Under a steady stream of commits a passive
    checkpoint rarely finds the WAL fully copied at the moment a writer starts, so the WAL is
    never rewound and grows; once it holds more than `restart_frames` pages after a passive
    pass, a RESTART checkpoint waits (busy_timeout) for the writers, copies the few frames
    left and rewinds the WAL: one short stall per tens of megabytes written, instead of one
    per 1,000 pages. `stop` runs a last checkpoint."""

    def __init__(self, path: str, *, interval: float = 1.0, restart_frames: int = 8192) -> None:
        self.path = path
        self.interval = interval
        self.restart_frames = restart_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.restarts = 0
        # the WAL's length when it was last rewound: it keeps that length until the next
        # write starts it again from the beginning, and needs no second rewind meanwhile
        self._rewound_at = -1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mamori-sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.exception("cannot open %s for WAL checkpoints", self.path)
            return
        try:  # no journal_mode pragma here: the writers made the file WAL, and setting it
            conn.execute("PRAGMA synchronous=NORMAL")  # again could hold a writer off
            conn.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(self.interval):
                self.checkpoint(conn)
            self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One passive pass, and a RESTART one when the WAL stays longer than the bound."""
        try:
            frames = _wal_checkpoint(conn, "PASSIVE")
            self.passes += 1
            if frames > self.restart_frames and frames != self._rewound_at:
                _wal_checkpoint(conn, "RESTART")
                self.restarts += 1
                self._rewound_at = frames
        except sqlite3.Error:  # busy beyond the timeout, a full disk: the next pass retries
            log.warning("WAL checkpoint of %s failed", self.path, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _wal_checkpoint(conn: sqlite3.Connection, mode: str) -> int:
    """Run `PRAGMA wal_checkpoint(mode)`; the number of frames in the WAL (-1 if not WAL)."""
    cur = conn.execute(f"PRAGMA wal_checkpoint({mode})")
    try:
        row = cur.fetchone()
    finally:
        cur.close()
    return int(row[1]) if row else -1


class Database:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        kw: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kw.update(pool_size=10, max_overflow=10, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(self.url, **kw)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._ready = False
        self._lock: asyncio.Lock | None = None
        self._writer: SqliteWriter | None = None

    @property
    def is_ready(self) -> bool:
        """Whether the schema is known to be at the head revision (`ready` returns at once)."""
        return self._ready

    def sqlite_writer(self) -> SqliteWriter | None:
        """The direct writer of a file SQLite database (None for PostgreSQL or in memory)."""
        if self.dialect != "sqlite":
            return None
        if self._writer is None:
            path = make_url(self.url).database
            if not path or path == ":memory:" or path.startswith("file:"):
                return None
            self._writer = SqliteWriter(path)
        return self._writer

    @classmethod
    def from_settings(cls, url: str, data_dir: Path) -> Database:
        if url:
            return cls(url)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{(data_dir / 'mamori.sqlite3').resolve()}")

    async def ready(self) -> AsyncEngine:
        """The engine, with the schema at the head revision."""
        if self._ready:
            return self.engine
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._ready:
                try:
                    async with self.engine.begin() as conn:
                        await conn.run_sync(_upgrade)
                except StoreError:
                    raise
                except Exception as exc:
                    raise StoreError(f"cannot open the {self.dialect} store") from exc
                self._ready = True
        return self.engine

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.close)
        await self.engine.dispose()


def _upgrade(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    if conn.dialect.name == "postgresql":
        # several replicas may start at once: one migrates, the others wait
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243001)")
    command.upgrade(cfg, "head")


async def purge_rows(db: Database, table: Any, at_col: Any, cutoff: float, holds: Holds,
                 sub_col: Any, msg_col: Any | None) -> int:
    """Delete rows of `table` with `at_col` < cutoff, except those a legal hold keeps."""
    conds = [at_col < cutoff]
    if holds.subscribers:
        conds.append(sub_col.not_in(sorted(holds.subscribers)))
    if holds.message_ids and msg_col is not None:
        conds.append(msg_col.is_(None) | msg_col.not_in(sorted(holds.message_ids)))
    engine = await db.ready()
    try:
        async with engine.begin() as conn:
            res = await conn.execute(delete(table).where(and_(*conds)))
    except Exception as exc:
        raise StoreError(f"cannot purge {table.name}") from exc
    return int(res.rowcount or 0)
