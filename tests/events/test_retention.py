"""Retention with a fake clock: expiry per record type, legal holds (by subscriber and by
message id, with expiry, lifted, audited), the stores owned by the events area, the CLI and the
scheduled purge service."""

from __future__ import annotations

import asyncio
import calendar
import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from gateway.config import Settings
from gateway.events import EventSpool, FileEventSink, SpoolStore
from gateway.privacy import PartyHasher
from gateway.retention import (
    DAY,
    REGISTRY,
    DmarcReportDir,
    Holds,
    HoldStore,
    all_stores,
    hold_store,
    purge_all,
    retention_cli,
    run_purge,
    start,
)

NOW = float(calendar.timegm((2026, 6, 30, 12, 0, 0, 0, 0, 0)))
ALICE, BOB = "+819011110001", "+819022220002"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def hasher(settings: Settings) -> PartyHasher:
    return PartyHasher.from_settings(settings.hash_key, settings.data_dir)


async def write_verdicts(settings: Settings, hasher: PartyHasher, ages_days: list[float]) -> None:
    clock = Clock(NOW)
    sink = FileEventSink(settings.data_dir / "events", clock=clock)
    for age in ages_days:
        clock.t = NOW - age * DAY
        for who in (ALICE, BOB):
            h = hasher(who)
            sink.emit("verdicts", h, {"message_id": f"{who[-4:]}-{int(age)}", "subscriber": h})
    sink.flush()


def kept(settings: Settings) -> list[str]:
    out = []
    for p in sorted((settings.data_dir / "events" / "verdicts").glob("*.jsonl")):
        out += [orjson.loads(x)["message_id"] for x in p.read_bytes().splitlines()]
    return sorted(out)


async def test_verdict_records_expire_after_180_days(settings: Settings, hasher: PartyHasher) -> None:
    await write_verdicts(settings, hasher, [400, 181, 179, 1])
    result = await run_purge(settings, hasher=hasher, now=NOW)
    assert result["verdicts"] == 4
    assert kept(settings) == ["0001-1", "0001-179", "0002-1", "0002-179"]


async def test_legal_hold_by_subscriber_keeps_records_until_lifted(
        settings: Settings, hasher: PartyHasher) -> None:
    await write_verdicts(settings, hasher, [400, 200, 10])
    clock = Clock(NOW - 30 * DAY)
    holds = hold_store(settings, clock)
    hold = holds.add("subscriber", ALICE, reason="case 2026-17", actor="legal@carrier",
                     expires_at=NOW + 30 * DAY)
    clock.t = NOW
    await run_purge(settings, hasher=hasher, now=NOW)
    ids = kept(settings)
    assert ids == ["0001-10", "0001-200", "0001-400", "0002-10"]
    # lifted: the next purge removes what had expired
    holds.lift(hold.id, actor="legal@carrier", reason="case closed")
    await run_purge(settings, hasher=hasher, now=NOW)
    assert kept(settings) == ["0001-10", "0002-10"]
    audit = holds.audit()
    assert [(a["action"], a["actor"]) for a in audit] == [("add", "legal@carrier"), ("lift", "legal@carrier")]
    assert audit[0]["reason"] == "case 2026-17" and audit[1]["reason"] == "case closed"


async def test_hold_expires_by_itself(settings: Settings, hasher: PartyHasher) -> None:
    await write_verdicts(settings, hasher, [300])
    clock = Clock(NOW)
    holds = hold_store(settings, clock)
    holds.add("subscriber", BOB, reason="r", actor="a", expires_at=NOW + 5 * DAY)
    assert holds.active(hasher).subscribers == frozenset({BOB})
    await run_purge(settings, hasher=hasher, now=NOW)
    assert len(kept(settings)) == 1
    clock.t = NOW + 6 * DAY
    assert not holds.active(hasher)
    await run_purge(settings, hasher=hasher, now=NOW + 6 * DAY)
    assert kept(settings) == []


async def test_hold_by_message_id(settings: Settings, hasher: PartyHasher) -> None:
    await write_verdicts(settings, hasher, [300])
    HoldStore(settings.data_dir / "retention.sqlite3", clock=Clock(NOW)).add(
        "message", "0002-300", reason="fraud report", actor="trust")
    holds = hold_store(settings, Clock(NOW)).active(hasher)
    await purge_all(settings, all_stores(settings), holds, now=NOW)
    assert kept(settings) == ["0002-300"]


def test_hold_validation(settings: Settings) -> None:
    holds = hold_store(settings, Clock(NOW))
    with pytest.raises(ValueError):
        holds.add("subscriber", ALICE, reason=" ", actor="a")
    with pytest.raises(ValueError):
        holds.add("subscriber", ALICE, reason="r", actor="a", expires_at=NOW - 1)
    with pytest.raises(ValueError):
        holds.add("domain", "x", reason="r", actor="a")
    h = holds.add("message", "m1", reason="r", actor="a")
    holds.lift(h.id, actor="a", reason="done")
    with pytest.raises(ValueError):
        holds.lift(h.id, actor="a", reason="again")
    with pytest.raises(KeyError):
        holds.lift(999, actor="a", reason="r")


class FakeQuarantine:
    kind = "quarantine"

    def __init__(self) -> None:
        self.calls: list[tuple[float, Holds]] = []

    async def purge(self, cutoff: float, holds: Holds) -> int:
        self.calls.append((cutoff, holds))
        return 3


class Broken:
    kind = "audit"

    async def purge(self, cutoff: float, holds: Holds) -> int:
        raise RuntimeError("database gone")


async def test_each_kind_gets_its_own_cutoff_and_failures_are_isolated(
        settings: Settings, hasher: PartyHasher) -> None:
    q = FakeQuarantine()
    hold_store(settings, Clock(NOW)).add("subscriber", ALICE, reason="r", actor="a")
    result = await run_purge(settings, hasher=hasher, now=NOW, extra=[Broken(), q])
    (cutoff, holds), = q.calls
    assert cutoff == NOW - 7 * DAY
    assert holds.holds(ALICE, None) and holds.holds_hashed(hasher(ALICE), None)
    assert result["quarantine"] == 3 and result["audit"] == 0


async def test_registered_store_is_purged(settings: Settings, hasher: PartyHasher) -> None:
    q = FakeQuarantine()
    REGISTRY.register(q)
    try:
        await run_purge(settings, hasher=hasher, now=NOW)
    finally:
        REGISTRY.stores.remove(q)
    assert len(q.calls) == 1


async def test_dmarc_report_files(settings: Settings) -> None:
    d = settings.data_dir / "dmarc-reports"
    (d / "example.org").mkdir(parents=True)
    for name, age in (("old.xml.gz", 100), ("new.xml.gz", 10)):
        p = d / "example.org" / name
        p.write_bytes(b"<feedback/>")
        os.utime(p, (NOW - age * DAY, NOW - age * DAY))
    n = await DmarcReportDir(d).purge(NOW - 90 * DAY, Holds())
    assert n == 1 and [p.name for p in d.rglob("*.gz")] == ["new.xml.gz"]


async def test_spool_retention_drops_old_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EventSpool, "SEGMENT_BYTES", 100)
    spool = EventSpool(tmp_path)
    for i in range(6):
        spool.append([("verdicts", "k", orjson.dumps({"n": i, "pad": "x" * 60}))])
    segs = spool.segments()
    for n in segs[:3]:
        p = tmp_path / f"{n:012d}.spool"
        os.utime(p, (NOW - 30 * DAY, NOW - 30 * DAY))
    purged = await SpoolStore(tmp_path).purge(NOW - 7 * DAY, Holds())
    assert purged == 3
    left = EventSpool(tmp_path)
    assert len(left) == 3
    got = []
    while entries := left.peek(10):  # one segment at a time
        got += [orjson.loads(e[3])["n"] for e in entries]
        left.commit(entries, [True] * len(entries))
    assert got == [3, 4, 5]


def test_cli_purge_and_holds(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMORI_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MAMORI_HASH_KEY", settings.hash_key)
    runner = CliRunner()
    r = runner.invoke(retention_cli, ["hold", "add", "--subscriber", ALICE, "--reason", "case 9",
                                      "--by", "legal", "--days", "30"])
    assert r.exit_code == 0, r.output
    added = orjson.loads(r.output)
    assert added["value"].startswith("h1:") and ALICE not in r.output
    r = runner.invoke(retention_cli, ["hold", "list"])
    assert r.exit_code == 0 and len(r.output.splitlines()) == 1 and ALICE not in r.output
    r = runner.invoke(retention_cli, ["hold", "add", "--reason", "x", "--by", "y"])
    assert r.exit_code == 2 and "exactly one" in r.output
    r = runner.invoke(retention_cli, ["hold", "add", "--message-id", "m", "--reason", "x",
                                      "--by", "y", "--expires", "yesterday"])
    assert r.exit_code == 2 and "invalid expiry" in r.output and "Traceback" not in r.output
    r = runner.invoke(retention_cli, ["hold", "lift", str(added["id"]), "--reason", "closed",
                                      "--by", "legal"])
    assert r.exit_code == 0 and orjson.loads(r.output)["lifted_at"] is not None
    r = runner.invoke(retention_cli, ["hold", "lift", "42", "--reason", "x", "--by", "y"])
    assert r.exit_code == 2 and "no legal hold 42" in r.output
    r = runner.invoke(retention_cli, ["hold", "audit"])
    assert [orjson.loads(x)["action"] for x in r.output.splitlines()] == ["add", "lift"]
    r = runner.invoke(retention_cli, ["purge"])
    assert r.exit_code == 0, r.output
    assert "verdicts" in orjson.loads(r.output)["purged"]


async def test_scheduled_purge_service(settings: Settings) -> None:
    from gateway.events import MemorySink
    from gateway.runtime import Gateway

    gw = Gateway.create(settings, events=MemorySink())
    svc = await start(gw)
    assert svc is not None and svc.name == "retention"
    await asyncio.sleep(0)
    await svc.stop()
    off = Gateway.create(settings.model_copy(update={"retention": settings.retention.model_copy(
        update={"interval_hours": 0})}), events=MemorySink())
    assert await start(off) is None
    await gw.close()
    await off.close()


async def test_purge_runs_inside_serve(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With "gateway.retention" among serve's service modules, `mamori serve` purges on its
    schedule (interval shortened here) and stops cleanly."""
    import gateway.retention as retention
    import gateway.serve as serve

    calls: list[float] = []

    async def fake_run_purge(s: Settings, **kw: object) -> dict[str, int]:
        calls.append(s.retention.interval_hours)
        return {}

    monkeypatch.setattr(retention, "run_purge", fake_run_purge)
    monkeypatch.setattr(serve, "INGRESS_MODULES", ("gateway.retention",))
    s = settings.model_copy(update={"api": settings.api.model_copy(update={"listen": ""}),
                                    "smtp": settings.smtp.model_copy(update={"listen": ""}),
                                    "retention": settings.retention.model_copy(
                                        update={"interval_hours": 0.01 / 3600})})
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve.run(s, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 30)
    for _ in range(100):
        if len(calls) >= 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert len(calls) >= 2


async def test_entry_point_stores_are_found_opened_and_closed(
        settings: Settings, hasher: PartyHasher, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.retention as retention

    q = FakeQuarantine()
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    q.close = aclose  # type: ignore[attr-defined]

    async def factory(s: Settings) -> list[FakeQuarantine]:
        return [q]

    class EP:
        name = "store"

        def load(self) -> object:
            return factory

    monkeypatch.setattr(retention, "entry_points", lambda group: [EP()] if group == "mamori.retention" else [])
    result = await run_purge(settings, hasher=hasher, now=NOW)
    assert result["quarantine"] == 3 and closed == [True]
