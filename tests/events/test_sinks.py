"""File sink (daily files, schemas), spool (durable, ordered, exactly-once replay bookkeeping),
Kafka sink behaviour without a broker, and the sink factory."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_h
from hypothesis import strategies as st

from gateway.config import Settings
from gateway.events import (
    STREAMS,
    EventSpool,
    FileEventSink,
    KafkaEventSink,
    make_event_sink,
)
from gateway.message import Message
from gateway.runtime import Gateway

from ._data import EMAIL_RAW, SMS_BODY, assert_valid, validator


def _read(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_every_stream_has_a_valid_schema() -> None:
    for stream in STREAMS:
        validator(stream)


def test_factory_picks_file_sink_without_broker(settings: Settings) -> None:
    assert isinstance(make_event_sink(settings), FileEventSink)
    s2 = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap": "127.0.0.1:1"})})
    sink = make_event_sink(s2)
    assert isinstance(sink, KafkaEventSink)
    assert sink.spool_dir == settings.data_dir / "spool" / "events"


async def test_gateway_verdict_events_match_schema(settings: Settings) -> None:
    gw = Gateway.create(settings)
    assert isinstance(gw.events, FileEventSink)
    await gw.start()
    try:
        await gw.process(Message.sms(SMS_BODY, sender="+819011112222", recipient="+819033334444"), "http")
        await gw.process(Message.email(EMAIL_RAW, sender="a@example.org", recipients=["b@example.test"]), "smtp")
        await gw.process(Message.sms("hello", sender="MyBank"), "smpp")  # no subscriber
    finally:
        await gw.close()
    files = list((settings.data_dir / "events" / "verdicts").glob("*.jsonl"))
    assert len(files) == 1
    events = _read(files[0])
    assert [e["channel"] for e in events] == ["sms", "email", "sms"]
    for e in events:
        assert_valid("verdicts", e)
        assert e["key"] == e["subscriber"]
    assert events[2]["key"] is None
    assert len({e["event_id"] for e in events}) == 3


async def test_file_sink_rotates_daily(tmp_path: Path) -> None:
    now = [calendar.timegm((2026, 3, 1, 23, 59, 0, 0, 0, 0))]
    sink = FileEventSink(tmp_path, clock=lambda: now[0])
    await sink.start()
    sink.emit("verdicts", None, {"message_id": "a"})
    now[0] += 120
    sink.emit("verdicts", None, {"message_id": "b"})
    sink.emit("dmarc", None, {"message_id": "c"})
    await sink.close()
    assert [e["message_id"] for e in _read(tmp_path / "verdicts" / "2026-03-01.jsonl")] == ["a"]
    assert [e["message_id"] for e in _read(tmp_path / "verdicts" / "2026-03-02.jsonl")] == ["b"]
    assert (tmp_path / "dmarc" / "2026-03-02.jsonl").exists()


def test_unserialisable_event_is_dropped_not_raised(tmp_path: Path) -> None:
    sink = FileEventSink(tmp_path)
    sink.emit("verdicts", None, {"bad": object()})
    assert not (tmp_path / "verdicts").exists()


def _items(n: int, start: int = 0) -> list[tuple[str, str | None, bytes]]:
    return [("verdicts", f"k{i % 3}", orjson.dumps({"n": i})) for i in range(start, start + n)]


def test_spool_persists_and_replays_in_order(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    spool.append(_items(10))
    assert len(spool) == 10
    again = EventSpool(tmp_path)  # a restart
    entries = again.peek(4)
    assert [orjson.loads(e[3])["n"] for e in entries] == [0, 1, 2, 3]
    again.commit(entries, [True] * 4)
    assert len(again) == 6
    third = EventSpool(tmp_path)
    assert len(third) == 6
    assert [orjson.loads(e[3])["n"] for e in third.peek(100)] == [4, 5, 6, 7, 8, 9]


def test_spool_partial_failure_resends_only_the_failed(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    spool.append(_items(6))
    entries = spool.peek(6)
    # 0 and 1 delivered, 2 failed, 3 delivered, 4 failed, 5 delivered
    spool.commit(entries, [True, True, False, True, False, True])
    assert len(spool) == 2
    reopened = EventSpool(tmp_path)
    left = reopened.peek(10)
    assert [orjson.loads(e[3])["n"] for e in left] == [2, 4]
    reopened.commit(left, [True, True])
    assert reopened.peek(10) == []
    assert len(EventSpool(tmp_path)) == 0


def test_spool_rolls_segments_and_ignores_torn_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EventSpool, "SEGMENT_BYTES", 200)
    spool = EventSpool(tmp_path)
    for i in range(10):
        spool.append(_items(2, start=2 * i))
    assert len(spool.segments()) > 2
    last = tmp_path / f"{spool.segments()[-1]:012d}.spool"
    with open(last, "ab") as fh:
        fh.write(b'["verdicts", "k", "{\\"n\\": 99')  # a crash in the middle of a write
    got = []
    fresh = EventSpool(tmp_path)
    while entries := fresh.peek(3):
        got += [orjson.loads(e[3])["n"] for e in entries]
        fresh.commit(entries, [True] * len(entries))
    assert got == list(range(20))
    assert len(fresh.segments()) == 1  # delivered segments are deleted
    fresh.append(_items(1, start=20))  # after the torn tail was cut: a clean line
    assert [orjson.loads(e[3])["n"] for e in EventSpool(tmp_path).peek(5)] == [20]


async def test_kafka_sink_spools_when_broker_unreachable(settings: Settings) -> None:
    cfg = settings.kafka.model_copy(update={"bootstrap": "127.0.0.1:9", "request_timeout_ms": 500,
                                            "queue_size": 5, "close_timeout": 1.0})
    sink = KafkaEventSink(cfg, settings.data_dir / "spool")
    await sink.start()
    for i in range(20):
        sink.emit("verdicts", f"k{i % 2}", {"n": i})  # never blocks, never raises
    await asyncio.sleep(0.3)
    await sink.close()
    spool = EventSpool(settings.data_dir / "spool")
    entries = spool.peek(100)
    assert [orjson.loads(e[3])["n"] for e in entries] == list(range(20))
    assert all(e[2] == f"k{orjson.loads(e[3])['n'] % 2}" for e in entries)


async def test_replay_skips_events_already_on_the_broker(tmp_path: Path, settings: Settings) -> None:
    """A delivery that failed after the broker wrote it (lost acknowledgement) is found on the
    topic at replay and not sent again."""
    sink = KafkaEventSink(settings.kafka.model_copy(update={"bootstrap": "x:1"}), tmp_path)
    spool = sink._spool()
    values = [orjson.dumps({"event_id": f"{i:032x}", "n": i}) for i in range(5)]
    spool.append(("verdicts", "k", v) for v in values)
    spool.mark_uncertain(1000.0)
    asked: list[tuple[float, set[str]]] = []
    sent: list[bytes] = []

    async def delivered_since(since: float, topics: set[str]) -> set[str]:
        asked.append((since, topics))
        return {f"{1:032x}", f"{2:032x}"}

    async def send(items: list[tuple[str, str | None, bytes]]) -> list[bool]:
        sent.extend(v for _, _, v in items)
        return [True] * len(items)

    sink._delivered_since = delivered_since  # type: ignore[method-assign]
    sink._send = send  # type: ignore[method-assign]
    assert await sink._replay_round(spool)
    assert asked == [(1000.0, {"mamori.verdicts"})]
    assert [orjson.loads(v)["n"] for v in sent] == [0, 3, 4]
    assert len(spool) == 0 and spool.check_since is None
    assert EventSpool(tmp_path).check_since is None


@settings_h(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 7), st.lists(st.booleans(), max_size=12)), max_size=12),
       st.integers(1, 6))
def test_spool_bookkeeping_delivers_each_event_once(tmp_path_factory: pytest.TempPathFactory,
                                                    rounds: list[tuple[int, list[bool]]],
                                                    limit: int) -> None:
    """Any mix of appends, partial failures and restarts: every event is delivered once."""
    path = tmp_path_factory.mktemp("spool")
    spool = EventSpool(path)
    n = 0
    delivered: list[int] = []
    for appended, outcome in rounds:
        spool.append(_items(appended, start=n))
        n += appended
        entries = spool.peek(limit)
        ok = (outcome + [True] * len(entries))[: len(entries)]
        delivered += [orjson.loads(e[3])["n"] for e, good in zip(entries, ok, strict=True) if good]
        spool.commit(entries, ok)
        spool = EventSpool(path)  # a restart between rounds
        assert len(spool) == n - len(delivered)
    while entries := spool.peek(limit):
        delivered += [orjson.loads(e[3])["n"] for e in entries]
        spool.commit(entries, [True] * len(entries))
    assert sorted(delivered) == list(range(n))


async def test_sender_survives_an_unexpected_error(settings: Settings) -> None:
    cfg = settings.kafka.model_copy(update={"bootstrap": "x:1", "close_timeout": 5.0})
    sink = KafkaEventSink(cfg, settings.data_dir / "spool")
    sent: list[bytes] = []
    fail = [True]

    async def connect() -> bool:
        return True

    async def send(items: list[tuple[str, str | None, bytes]]) -> list[bool]:
        if fail[0]:
            fail[0] = False
            raise RuntimeError("bug")
        sent.extend(v for _, _, v in items)
        return [True] * len(items)

    sink._connect = connect  # type: ignore[method-assign]
    sink._send = send  # type: ignore[method-assign]
    await sink.start()
    for i in range(3):
        sink.emit("verdicts", "k", {"n": i})
    assert await sink.flush(10)
    await sink.close()
    assert [orjson.loads(v)["n"] for v in sent] == [0, 1, 2]


async def test_dmarc_and_settings_events_match_schema(tmp_path: Path) -> None:
    sink = FileEventSink(tmp_path)
    row = {"ts": 1767225600.0, "header_from": "example.org", "policy_domain": "example.org",
           "policy_published": {"domain": "example.org", "p": "reject", "pct": 100},
           "rua": ["mailto:dmarc@example.org"], "source_ip": "192.0.2.1", "disposition": "reject",
           "dkim": "fail", "spf": "pass", "reasons": [], "auth_dkim": [],
           "auth_spf": {"domain": "example.org", "scope": "mfrom", "result": "pass"}}
    sink.emit("dmarc", "example.org", row)  # as the DMARC check emits it
    h = "h1:" + "ab" * 16
    sink.emit("settings", h, {"at": 1767225600.0, "actor": f"subscriber:{h}", "subscriber": h,
                              "action": "policy.update", "changes": {"urls": False}})
    sink.emit("feedback", h, {"at": 1767225600.0, "id": 7, "subscriber": h, "message_id": None,
                              "label": "not_fraud", "consent": False, "channel": None,
                              "content_kept": False})  # as the API emits them
    for stream in ("dmarc", "settings", "feedback"):
        (path,) = (tmp_path / stream).glob("*.jsonl")
        assert_valid(stream, orjson.loads(path.read_bytes()))
    with pytest.raises(AssertionError):
        assert_valid("dmarc", {**orjson.loads((next((tmp_path / "dmarc").glob("*.jsonl"))).read_bytes()),
                               "dkim": "maybe"})


async def test_spool_gauge_follows_the_spool(settings: Settings) -> None:
    """mamori_events_spool_events reports what waits in the disk spool while the broker is away."""
    from prometheus_client import REGISTRY

    cfg = settings.kafka.model_copy(update={"bootstrap": "127.0.0.1:9", "request_timeout_ms": 500,
                                            "queue_size": 5, "close_timeout": 1.0})
    sink = KafkaEventSink(cfg, settings.data_dir / "spool")
    await sink.start()
    try:
        for i in range(30):
            sink.emit("verdicts", "k", {"n": i})
            await asyncio.sleep(0.02)
        spooled = sink.stats()["spooled"]
        assert spooled > 0
        assert REGISTRY.get_sample_value("mamori_events_spool_events") == spooled
    finally:
        await sink.close()
