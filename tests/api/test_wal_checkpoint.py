"""The quarantine writer's WAL checkpoints run beside it, never inside its commits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.store.db import SqliteWriter, WalCheckpointer, _sqlite_pragmas, _wal_checkpoint

_ROW = "INSERT INTO t (k, v) VALUES (?, ?)"


def _db(tmp_path: Path) -> str:
    path = str(tmp_path / "w.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    _sqlite_pragmas(conn, None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    conn.close()
    return path


def _wal_frames(path: str) -> int:
    return Path(path + "-wal").stat().st_size // 4096 if Path(path + "-wal").exists() else 0


def _thread_conn(writer: SqliteWriter) -> sqlite3.Connection | None:
    """The writer thread's connection, made by one write through the thread."""
    writer.write(_ROW, [(10_000, b"t")])
    return writer._conn


async def test_writer_commits_never_checkpoint_and_rows_survive_close(tmp_path: Path) -> None:
    path = _db(tmp_path)
    writer = SqliteWriter(path)
    for n in range(40):  # ~1,300 pages: SQLite's own checkpoint would have run at 1,000
        await writer.executemany(_ROW, [(n * 10 + i, b"x" * 3000) for i in range(10)])
    for conn in (writer._inline, await asyncio.to_thread(_thread_conn, writer)):
        assert conn is not None
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    checkpointer = writer.checkpointer
    assert checkpointer is not None
    await asyncio.to_thread(writer.close)
    assert writer.checkpointer is None and checkpointer.passes >= 1  # the last one at stop
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 401
    conn.close()


def test_passive_then_restart_rewinds_a_long_wal(tmp_path: Path) -> None:
    path = _db(tmp_path)
    w = sqlite3.connect(path, isolation_level=None)
    _sqlite_pragmas(w, None)
    w.execute("PRAGMA wal_autocheckpoint=0")
    for n in range(200):
        w.execute(_ROW, (n, b"y" * 3000))
    assert _wal_frames(path) > 150
    c = sqlite3.connect(path, isolation_level=None)
    cp = WalCheckpointer(path, restart_frames=100)
    cp.checkpoint(c)
    assert (cp.passes, cp.restarts) == (1, 1)
    cp.checkpoint(c)  # no write since: the WAL keeps its length but is rewound already
    assert (cp.passes, cp.restarts) == (2, 1)
    w.execute(_ROW, (1000, b"z"))  # the next write starts the WAL from its beginning again
    assert _wal_checkpoint(c, "PASSIVE") < 10
    cp2 = WalCheckpointer(path, restart_frames=10_000)
    cp2.checkpoint(c)
    assert (cp2.passes, cp2.restarts) == (1, 0)
    assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 201
    c.close()
    w.close()


def test_a_failing_checkpoint_is_logged_not_raised(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = _db(tmp_path)
    c = sqlite3.connect(path, isolation_level=None)
    c.close()  # any call on a closed connection raises sqlite3.ProgrammingError (an Error)
    cp = WalCheckpointer(path)
    cp.checkpoint(c)
    assert cp.passes == 0
    assert "WAL checkpoint of" in caplog.text


def test_stop_without_start_and_twice_is_harmless(tmp_path: Path) -> None:
    cp = WalCheckpointer(_db(tmp_path), interval=0.01)
    cp.stop()
    cp.start()
    cp.stop()
    cp.stop()
    assert cp.passes >= 1
