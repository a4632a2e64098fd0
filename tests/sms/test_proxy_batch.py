"""The SMPP proxy judges complete messages together, in batches
(`Gateway.process_many`): every PDU still gets its own answer, with its own status, and a
failed quarantine copy fails only its own message."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url

from gateway.ingress import smpp
from gateway.ingress import smpp_pdu as P
from gateway.message import Message
from gateway.policy import Policy
from gateway.verdict import Action, Verdict

from .conftest import FakeSmsc, RawEsme, submit_body
from .test_proxy import register_brand

Hook = Callable[[int], Awaitable[None]]


def judge_calls(proxy: Any, before: Hook | None = None, after: Hook | None = None) -> list[int]:
    """Wrap the proxy's `process_many`: the list of batch sizes it was called with;
    `before(n)` / `after(n)` run around the n-th call (1-based)."""
    calls: list[int] = []
    real = proxy.gw.process_many

    async def judge(msgs: list[Message], ingress: str, **kw: Any) -> list[Verdict]:
        calls.append(len(msgs))
        n = len(calls)
        if before is not None:
            await before(n)
        verdicts: list[Verdict] = await real(msgs, ingress, **kw)
        if after is not None:
            await after(n)
        return verdicts

    proxy.gw.process_many = judge
    return calls


async def until(cond: Callable[[], bool]) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)


def first_waits_for(gate: asyncio.Event) -> Hook:
    async def hook(n: int) -> None:
        if n == 1:
            await gate.wait()
    return hook


async def read_all(c: RawEsme, n: int) -> dict[int, P.Pdu]:
    out: dict[int, P.Pdu] = {}
    while len(out) < n:
        r = await c.read()
        out[r.sequence] = r
    return out


async def first_judge_gated(make_proxy: Any, *, after: bool = False
                            ) -> tuple[Any, asyncio.Event, list[int], RawEsme]:
    """A proxy whose first judge waits for the returned gate (before its verdicts, or after
    them with `after`), the batch sizes judged, and a bound ESME that has sent "first" (1)."""
    proxy = await make_proxy()
    gate = asyncio.Event()
    hook = first_waits_for(gate)
    calls = judge_calls(proxy, after=hook) if after else judge_calls(proxy, before=hook)
    c = await RawEsme.connect(proxy)
    await c.bind()
    await c.send(P.encode(P.SUBMIT_SM, 1, submit_body(b"first")))
    return proxy, gate, calls, c


async def test_a_burst_is_judged_in_batches_and_each_pdu_answered(
        make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy(reject_status="ESME_RSUBMITFAIL")
    register_brand(proxy)
    calls = judge_calls(proxy)
    c = await RawEsme.connect(proxy)
    await c.bind()
    burst = []
    for seq in range(100, 120):
        spoofed = seq % 4 == 0
        body = (submit_body(b"Your account is locked", source="MyBank", source_ton=5)
                if spoofed else submit_body(b"Dinner at %d?" % seq))
        burst.append(P.encode(P.SUBMIT_SM, seq, body))
    await c.send(b"".join(burst))  # one write: one turn of the proxy's loop
    got = await read_all(c, 20)
    for seq in range(100, 120):
        assert got[seq].command_id == P.SUBMIT_SM_RESP
        assert got[seq].status == (P.ESME_RSUBMITFAIL if seq % 4 == 0 else P.ESME_ROK)
    assert sorted(sm.short_message for sm in smsc.submits) == sorted(
        b"Dinner at %d?" % s for s in range(100, 120) if s % 4)
    assert sum(calls) == 20 and len(calls) < 20
    c.close()


async def test_batch_wait_gathers_messages_arriving_meanwhile(
        make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    """Two ESMEs' messages 30 ms apart: one batch each without MAMORI_SMPP__BATCH_WAIT, one
    batch of both with a wait longer than the gap; each is answered either way."""
    for wait, batches in ((0.0, [1, 1]), (0.5, [2])):
        proxy = await make_proxy(batch_wait=wait)
        calls = judge_calls(proxy)
        a, b = await RawEsme.connect(proxy), await RawEsme.connect(proxy)
        await a.bind()
        await b.bind()
        await a.send(P.encode(P.SUBMIT_SM, 10, submit_body(b"Dinner at 7?")))
        await asyncio.sleep(0.03)
        await b.send(P.encode(P.SUBMIT_SM, 11, submit_body(b"Lunch at 1?")))
        assert (await a.read()).status == P.ESME_ROK
        assert (await b.read()).status == P.ESME_ROK
        assert calls == batches
        a.close()
        b.close()


async def test_a_failed_copy_fails_only_its_message(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    gw = proxy.gw
    gw.pipeline.scores.force_actions["SMS_SENDER_LOOKALIKE"] = Action.QUARANTINE
    register_brand(proxy)
    for dest in ("+818011110001", "+818011110002"):
        await gw.policies.put(Policy(subscriber=dest, block_spoofed=False))
    assert gw.quarantine is not None
    # the copy for +818011110002 fails in the database itself (whichever way the store writes:
    # a transaction of the batch, then row by row)
    await gw.quarantine.db.ready()
    conn = sqlite3.connect(make_url(gw.quarantine.db.url).database or "")
    conn.execute("CREATE TRIGGER full BEFORE INSERT ON quarantine "
                 "WHEN NEW.recipients LIKE '%818011110002%' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    conn.commit()
    conn.close()
    c = await RawEsme.connect(proxy)
    await c.bind()
    await c.send(b"".join([
        P.encode(P.SUBMIT_SM, 1, submit_body(b"hello", source="MYB4NK", source_ton=5,
                                             dest="+818011110001")),
        P.encode(P.SUBMIT_SM, 2, submit_body(b"hello", source="MYB4NK", source_ton=5,
                                             dest="+818011110002")),
        P.encode(P.SUBMIT_SM, 3, submit_body(b"See you at 7")),
    ]))
    got = await read_all(c, 3)
    assert got[1].status == P.ESME_ROK and P.parse_message_id_resp(got[1].body).startswith("q")
    assert got[2].status == proxy.tempfail_status  # its copy is not stored: the ESME retries
    assert got[3].status == P.ESME_ROK and P.parse_message_id_resp(got[3].body).startswith("m")
    assert [sm.short_message for sm in smsc.submits] == [b"See you at 7"]
    c.close()


async def test_messages_arriving_while_a_batch_is_judged_go_together_next(
        make_proxy, smsc: FakeSmsc, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """While a judge computes, complete messages wait and then form one batch (not one batch
    per loop turn); every PDU is still answered once, in the order of its own verdict."""
    monkeypatch.setattr(smpp, "JUDGE_HOLD", 3600.0)  # the first judge holds until its verdict
    proxy, gate, calls, c = await first_judge_gated(make_proxy)
    await until(lambda: bool(calls))
    for seq in range(2, 7):  # five writes: several turns of the proxy's loop
        await c.send(P.encode(P.SUBMIT_SM, seq, submit_body(b"next %d" % seq)))
        await asyncio.sleep(0.01)
    await until(lambda: len(proxy._judging) == 5)
    assert calls == [1]  # nothing else started while the first judge had no verdict
    gate.set()
    got = await read_all(c, 6)
    assert calls == [1, 5]
    assert all(got[s].status == P.ESME_ROK for s in range(1, 7))
    assert [sm.short_message for sm in smsc.submits] == [b"first"] + [
        b"next %d" % s for s in range(2, 7)]
    c.close()


async def test_a_judge_waiting_before_its_verdicts_holds_the_next_batch_only_briefly(
        make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    """A judge waiting for I/O before any verdict (a slow policy read, a quarantine copy of
    every message of its batch) holds the next batch back at most JUDGE_HOLD."""
    _proxy, gate, calls, c = await first_judge_gated(make_proxy)
    await until(lambda: bool(calls))
    await c.send(P.encode(P.SUBMIT_SM, 2, submit_body(b"second")))
    r = await c.read()
    assert r.sequence == 2 and r.status == P.ESME_ROK and calls == [1, 1]
    gate.set()
    r = await c.read()
    assert r.sequence == 1 and r.status == P.ESME_ROK
    c.close()


async def test_a_judge_waiting_after_its_verdicts_does_not_hold_the_next_batch(
        make_proxy, smsc: FakeSmsc, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Once a batch's verdicts are out, the next batch goes ahead even if the first judge
    is still waiting (e.g. for the quarantine store)."""
    monkeypatch.setattr(smpp, "JUDGE_HOLD", 3600.0)
    _proxy, gate, calls, c = await first_judge_gated(make_proxy, after=True)
    assert (await c.read()).sequence == 1
    await c.send(P.encode(P.SUBMIT_SM, 2, submit_body(b"second")))
    r = await c.read()
    assert r.sequence == 2 and r.status == P.ESME_ROK and calls == [1, 1]
    gate.set()
    c.close()


async def test_a_failed_judge_answers_its_batch_and_frees_the_next(
        make_proxy, smsc: FakeSmsc, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(smpp, "JUDGE_HOLD", 3600.0)

    async def broken_first(n: int) -> None:
        if n == 1:
            raise RuntimeError("judging broke")

    proxy = await make_proxy()
    judge_calls(proxy, before=broken_first)
    c = await RawEsme.connect(proxy)
    await c.bind()
    await c.send(P.encode(P.SUBMIT_SM, 1, submit_body(b"first")))
    r = await c.read()
    assert r.sequence == 1 and r.status == proxy.tempfail_status  # the ESME retries
    await c.send(P.encode(P.SUBMIT_SM, 2, submit_body(b"second")))
    r = await c.read()
    assert r.sequence == 2 and r.status == P.ESME_ROK
    assert [sm.short_message for sm in smsc.submits] == [b"second"]
    c.close()
