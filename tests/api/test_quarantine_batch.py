"""Quarantine group commit: copies asked for together are written together, each caller
returns only once its own copy is stored, and one bad row never fails the others. (The path
of PostgreSQL, and of SQLite without its spool: tests/api/test_quarantine_spool.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StoreError
from gateway.message import Message
from gateway.store.db import Database
from gateway.store.quarantine import QuarantineStore
from gateway.verdict import Action, ScoredSymbol, Verdict


def blocked(i: int, subscriber: str = "q1") -> tuple[Message, Verdict]:
    msg = Message.sms(f"pay now {i}", sender="+15550000000", subscriber=subscriber)
    return msg, Verdict(message_id=msg.id, channel="sms", action=Action.QUARANTINE, score=10.0,
                        symbols={"X": ScoredSymbol("X", 10.0, ("why",), "a reason")})


@pytest.fixture
async def store(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'q.sqlite3'}")
    yield QuarantineStore(db, spool=False)
    await db.close()


async def test_concurrent_copies_share_transactions_and_all_are_stored(
        store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real = store._insert

    async def counting(rows: list[dict[str, Any]]) -> None:
        batches.append(len(rows))
        await real(rows)

    monkeypatch.setattr(store, "_insert", counting)
    items = [blocked(i) for i in range(30)]
    await asyncio.gather(*(store.add(m, v, "smpp") for m, v in items))
    assert sum(batches) == 30 and len(batches) < 30  # grouped
    stored = {q.message_id for q in await store.list("q1", limit=100)}
    assert stored == {m.id for m, _ in items}
    # the same message again (a retried submit) is stored once, without an error
    await asyncio.gather(*(store.add(m, v, "smpp") for m, v in items[:3]))
    assert len(await store.list("q1", limit=100)) == 30


async def test_one_bad_row_fails_only_its_caller(store: QuarantineStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = store._insert
    bad, _ = blocked(99)

    async def picky(rows: list[dict[str, Any]]) -> None:
        if any(r["message_id"] == bad.id for r in rows):
            raise RuntimeError("constraint")
        await real(rows)

    monkeypatch.setattr(store, "_insert", picky)
    items = [blocked(i) for i in range(5)]
    items.insert(2, (bad, blocked(99)[1]))
    results = await asyncio.gather(*(store.add(m, v, "smpp") for m, v in items),
                                   return_exceptions=True)
    assert [isinstance(r, StoreError) for r in results] == [False, False, True, False, False, False]
    assert len(await store.list("q1", limit=100)) == 5


async def test_database_down_is_a_store_error_for_every_caller(tmp_path: Path) -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none")
    store = QuarantineStore(db)
    items = [blocked(i) for i in range(3)]
    results = await asyncio.gather(*(store.add(m, v, "smpp") for m, v in items),
                                   return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results)
    await db.close()


async def test_eight_bit_headers_are_kept_byte_for_byte(store: QuarantineStore) -> None:
    from gateway.store.quarantine import message_bytes

    raw = b"From: a@example.org\r\nSubject: caf\xe9 \xff\r\n\r\nbody\r\n"
    msg = Message.email(raw, recipients=["q2@example.test"])
    verdict = Verdict(message_id=msg.id, channel="email", action=Action.QUARANTINE, score=10.0,
                      symbols={})
    await store.add(msg, verdict, "milter")  # was: TypeError in orjson, so a tempfail
    item = await store.get("q2@example.test", msg.id)
    assert item is not None and message_bytes(item.to_message()) == message_bytes(msg)
    assert item.subject == msg.header("Subject")
