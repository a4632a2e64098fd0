"""The SQLite writer of quarantine copies writes in the caller's thread when it needs no wait,
and in its thread otherwise: every row is committed once `executemany` returns, whichever
way it went, and a locked or slow database never makes the caller wait for a lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.store import db as DB
from gateway.store.db import SqliteWriter

SQL = "INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING"


def _database(tmp_path: Path) -> str:
    path = str(tmp_path / "w.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    conn.close()
    return path


def _rows(path: str) -> list[tuple[str, bytes]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT k, v FROM t ORDER BY k").fetchall()
    finally:
        conn.close()


def _spy(writer: SqliteWriter) -> list[int]:
    """The number of rows of each transaction the writer thread ran."""
    calls: list[int] = []
    real = writer.write

    def write(sql, rows):
        calls.append(len(rows))
        real(sql, rows)

    writer.write = write  # type: ignore[method-assign]
    return calls


async def test_free_database_is_written_in_the_callers_thread(tmp_path: Path) -> None:
    path = _database(tmp_path)
    w = SqliteWriter(path)
    threaded = _spy(w)
    try:
        await w.executemany(SQL, [("a", b"1"), ("b", b"2")])
        await w.executemany(SQL, [("c", b"3")])
        assert _rows(path) == [("a", b"1"), ("b", b"2"), ("c", b"3")]  # committed: others see it
        assert threaded == []
        with pytest.raises(sqlite3.IntegrityError):  # the statement's own errors still raise
            await w.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [("a", b"x")])
        await w.executemany(SQL, [("d", b"4")])  # and leave no transaction open
        assert [k for k, _ in _rows(path)] == ["a", "b", "c", "d"]
    finally:
        w.close()


async def test_locked_database_goes_to_the_thread_which_waits(tmp_path: Path) -> None:
    path = _database(tmp_path)
    w = SqliteWriter(path)
    threaded = _spy(w)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database
    other.execute("INSERT INTO t (k, v) VALUES ('z', x'00')")
    try:
        pending = asyncio.ensure_future(w.executemany(SQL, [("a", b"1")]))
        await asyncio.sleep(0.05)
        assert not pending.done()  # waiting in the writer thread, not in the loop
        assert threaded == [1]
        await asyncio.to_thread(other.execute, "COMMIT")
        await pending
        assert _rows(path) == [("a", b"1"), ("z", b"\x00")]
    finally:
        other.close()
        w.close()


async def test_slow_inline_write_sends_the_next_ones_to_the_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _database(tmp_path)
    w = SqliteWriter(path)
    threaded = _spy(w)
    try:
        monkeypatch.setattr(DB, "INLINE_SLOW", -1.0)  # every inline write counts as slow
        await w.executemany(SQL, [("a", b"1")])
        assert threaded == []
        await w.executemany(SQL, [("b", b"2")])
        assert threaded == [1]
        assert [k for k, _ in _rows(path)] == ["a", "b"]
    finally:
        w.close()


async def test_inline_writes_are_checkpointed_beside_the_writers(tmp_path: Path) -> None:
    path = _database(tmp_path)
    w = SqliteWriter(path)
    try:
        for i in range(3):
            await w.executemany(SQL, [(f"k{i}", b"v" * 2000)])
        assert w._inline is not None  # written in place (some may have gone to the thread)
        for conn in (w._inline, w._conn):
            assert conn is None or conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        checkpointer = w.checkpointer
        assert checkpointer is not None
    finally:
        await asyncio.to_thread(w.close)
    assert w.checkpointer is None and checkpointer.passes >= 1  # the last pass at close
    assert len(_rows(path)) == 3
