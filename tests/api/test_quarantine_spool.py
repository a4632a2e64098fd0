"""The quarantine spool (SQLite file): a copy the database cannot take at once (another writer
or a WAL checkpoint holds it) is appended to a spool file and the caller goes on without
waiting; the writer thread moves it into the database shortly after, reads see it, closing
moves what is left, and a process that died leaves rows that the next start recovers."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.db import Database
from gateway.store.quarantine import QuarantineStore
from gateway.store.rowspool import RowSpool, decode_rows, encode_rows
from tests.api.test_quarantine_batch import blocked


def _path(tmp_path: Path) -> Path:
    return tmp_path / "q.sqlite3"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[QuarantineStore]:
    db = Database(f"sqlite:///{_path(tmp_path)}")
    await db.ready()
    s = QuarantineStore(db)
    yield s
    await s.close()
    await db.close()


def _stored(tmp_path: Path) -> set[str]:
    conn = sqlite3.connect(_path(tmp_path))
    try:
        return {r[0] for r in conn.execute("SELECT message_id FROM quarantine")}
    finally:
        conn.close()


class _Holder:
    """Another writer holding the database (BEGIN IMMEDIATE) until `release`."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


async def _settle(task: asyncio.Future[object]) -> None:
    for _ in range(20):  # (no wall clock: a few turns of the loop)
        if task.done():
            return
        await asyncio.sleep(0)


async def test_busy_database_spools_without_waiting_and_ingests_after(
        store: QuarantineStore, tmp_path: Path) -> None:
    holder = _Holder(_path(tmp_path))
    items = [blocked(i) for i in range(5)]
    try:
        one = asyncio.ensure_future(store.add(*items[0], "smpp"))
        many = asyncio.ensure_future(store.add_many(items[1:], "smpp"))
        await _settle(one)
        await _settle(many)
        assert one.done() and many.done()  # answered while the database is still held
        assert many.result() == [None] * 4
        assert _stored(tmp_path) == set()
    finally:
        holder.release()
    for _ in range(200):  # the writer thread ingests by itself, SPOOL_DELAY later
        if len(_stored(tmp_path)) == 5:
            break
        await asyncio.sleep(0.05)
    assert _stored(tmp_path) == {m.id for m, _ in items}


async def test_reads_wait_for_what_is_spooled(store: QuarantineStore, tmp_path: Path) -> None:
    holder = _Holder(_path(tmp_path))
    m, v = blocked(1)
    await store.add(m, v, "smpp")
    holder.release()
    listed = await store.list("q1")  # at once, not SPOOL_DELAY later
    assert [q.message_id for q in listed] == [m.id]
    got = await store.get("q1", m.id)
    assert got is not None and got.body == m.body and got.status == "held"


async def test_close_moves_the_spool_into_the_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{_path(tmp_path)}")
    await db.ready()
    s = QuarantineStore(db)
    holder = _Holder(_path(tmp_path))
    items = [blocked(i) for i in range(3)]
    await s.add_many(items, "smpp")
    holder.release()
    await s.close()
    await db.close()
    assert _stored(tmp_path) == {m.id for m, _ in items}
    spool_root = Path(str(_path(tmp_path)) + "-spool") / "quarantine"
    assert list(spool_root.iterdir()) == []  # nothing left behind


async def test_rows_of_a_process_that_died_are_recovered_at_start(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{_path(tmp_path)}")
    await db.ready()
    s = QuarantineStore(db)
    m, v = blocked(7)
    row = s._copy(m, v, "smpp")
    root = Path(str(_path(tmp_path)) + "-spool") / "quarantine"
    # a real other process spools the row and dies without closing anything
    child = textwrap.dedent(f"""
        import os, pickle, sys
        from pathlib import Path
        from gateway.store.rowspool import RowSpool
        RowSpool(Path({str(root)!r})).append([pickle.loads(sys.stdin.buffer.read())])
        os._exit(0)
    """)
    import pickle

    subprocess.run([sys.executable, "-c", child], input=pickle.dumps(row), check=True,
                   cwd=Path(__file__).resolve().parents[2])
    assert _stored(tmp_path) == set() and len(list(root.iterdir())) == 1
    await s.recover()
    assert _stored(tmp_path) == {m.id}
    assert list(root.iterdir()) == []
    await s.recover()  # nothing twice
    assert _stored(tmp_path) == {m.id}
    await s.close()
    await db.close()


async def test_a_live_processs_spool_is_not_taken(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    live = RowSpool(root)
    live.append([{"a": 1}])
    other = RowSpool(root)
    assert other.orphans() == []  # its lock is held: not an orphan
    live.close()


async def test_unwritable_spool_falls_back_to_waiting_for_the_database(
        store: QuarantineStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: RowSpool, rows: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RowSpool, "append", full)
    holder = _Holder(_path(tmp_path))
    m, v = blocked(3)
    task = asyncio.ensure_future(store.add(m, v, "smpp"))
    await _settle(task)
    assert not task.done()  # waits for the database, as before the spool
    await asyncio.to_thread(holder.release)
    await task
    assert _stored(tmp_path) == {m.id}


def test_records_round_trip_and_a_torn_tail_is_skipped() -> None:
    rows = [{"k": "a", "body": b"\x00\xffx", "n": 1.5, "z": None}, {"k": "b", "body": b""}]
    data = encode_rows(rows)
    assert decode_rows(data) == rows
    assert decode_rows(data[:-3]) == rows[:1]  # the last record torn
    damaged = bytearray(data)
    damaged[12] ^= 0xFF  # inside the first record's payload: its CRC no longer matches
    assert decode_rows(bytes(damaged)) == []


async def test_a_row_the_database_refuses_is_set_aside_not_blocking_the_others(
        store: QuarantineStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(_path(tmp_path))
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON quarantine WHEN NEW.subscriber = 'bad' "
                 "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.commit()
    conn.close()
    holder = _Holder(_path(tmp_path))
    good = [blocked(i) for i in range(3)]
    bad = blocked(9, subscriber="bad")
    await store.add_many([good[0], bad, *good[1:]], "smpp")  # spooled together, one file
    holder.release()
    listed = await store.list("q1")  # no StoreError: the refused row does not hold the file
    assert {q.message_id for q in listed} == {m.id for m, _ in good}
    rejected = Path(str(_path(tmp_path)) + "-spool") / "quarantine" / "rejected"
    rows = decode_rows(rejected.read_bytes())
    assert [r["message_id"] for r in rows] == [bad[0].id] and rows[0]["body"] == bad[0].body
    await store.drain()  # nothing is retried
    assert _stored(tmp_path) == {m.id for m, _ in good}
