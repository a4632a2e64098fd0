"""Quarantine copies of a batch (`Gateway._hold_many`, `QuarantineStore.add_many`): the same
answers as `Gateway.hold` of each message, with the copies stored together."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from gateway.errors import StoreError
from gateway.message import Message
from gateway.policy import OnBlock, Policy
from gateway.runtime import Gateway
from gateway.store.db import Database
from gateway.store.quarantine import QuarantineStore
from gateway.verdict import Action, ScoredSymbol, Verdict


def _verdict(m: Message, action: Action) -> Verdict:
    return Verdict(message_id=m.id, channel="sms", action=action, score=10.0,
                   symbols={"X_TEST": ScoredSymbol("X_TEST", 10.0, ("why",), "a reason")})


def _cases() -> list[tuple[Message, Verdict, Policy]]:
    """Every branch of `hold`: kept, failing, dropped, no subscriber, not blocking."""
    out = []
    for k, (action, on_block, bad, sub) in enumerate([
        (Action.QUARANTINE, OnBlock.QUARANTINE, False, True),
        (Action.QUARANTINE, OnBlock.QUARANTINE, True, True),  # its copy fails: StoreError
        (Action.REJECT, OnBlock.QUARANTINE, True, True),  # fails: best effort, verdict stands
        (Action.REJECT, OnBlock.QUARANTINE, False, True),
        (Action.QUARANTINE, OnBlock.DROP, False, True),
        (Action.QUARANTINE, OnBlock.QUARANTINE, False, False),  # nobody to get it back: TAG
        (Action.TAG, OnBlock.QUARANTINE, False, True),
        (Action.QUARANTINE, OnBlock.QUARANTINE, False, True),
    ]):
        rcpt = f"+8180{'9' if bad else '1'}000{k:04d}"
        m = Message.sms(f"text {k}", sender="+15550000000", recipient=rcpt,
                        subscriber=rcpt if sub else "")
        out.append((m, _verdict(m, action), Policy(subscriber=rcpt, on_block=on_block)))
    return out


async def _store(tmp_path: Path, name: str, *, spool: bool = True) -> QuarantineStore:
    db = Database(f"sqlite:///{tmp_path / name}")
    await db.ready()
    conn = sqlite3.connect(make_url(db.url).database or "")
    conn.execute("CREATE TRIGGER full BEFORE INSERT ON quarantine WHEN NEW.subscriber "
                 "LIKE '+81809%' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    conn.commit()
    conn.close()
    return QuarantineStore(db, spool=spool)


def _shown(x: Any) -> Any:
    if isinstance(x, BaseException):
        return (type(x).__name__, str(x), type(x.__cause__).__name__)
    return (x.action, x.reason, x.score)


@pytest.mark.parametrize("free", [True, False], ids=["in-place", "group-commit"])
async def test_hold_many_answers_as_hold_of_each(tmp_path: Path, free: bool) -> None:
    cases = _cases()
    one_store = await _store(tmp_path, "one.sqlite3")
    one: list[Any] = []
    for m, v, p in cases:
        try:
            one.append(await _gw(one_store).hold(m, v, p, "test"))
        except StoreError as exc:
            one.append(exc)
    # (busy without the spool: its answers when busy are tests/api/test_quarantine_spool.py's)
    many_store = await _store(tmp_path, "many.sqlite3", spool=free)
    writer = many_store.db.sqlite_writer()
    assert writer is not None
    if not free:  # another writer holds the database: the copies go through the group commit
        writer._inline_off_until = float("inf")
    many = await _gw(many_store)._hold_many(cases, "test")
    assert [_shown(x) for x in many] == [_shown(x) for x in one]
    assert isinstance(many[1], StoreError) and many[5].action is Action.TAG  # type: ignore[union-attr]
    for store in (one_store, many_store):
        kept = {q.message_id for sub in {m.subscriber for m, _, _ in cases if m.subscriber}
                for q in await store.list(sub or "")}
        assert kept == {cases[i][0].id for i in (0, 3, 7)}
        await store.db.close()


def _gw(store: QuarantineStore) -> Gateway:
    gw = Gateway.__new__(Gateway)
    gw.quarantine = store
    return gw


async def test_add_many_of_nothing_to_keep_writes_nothing(tmp_path: Path) -> None:
    store = await _store(tmp_path, "q.sqlite3")
    m = Message.sms("x", sender="+15550000000", subscriber="")
    assert await store.add_many([(m, _verdict(m, Action.QUARANTINE))], "test") == [None]
    assert await store.add_many([], "test") == []
    await store.db.close()
