"""The feedback consumer: consented feedback becomes labelled training records, the rest is
skipped; from the file sink and (e2e) from Kafka; re-running does not duplicate records."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from gateway.config import Settings
from gateway.events import FileEventSink, KafkaEventSink
from gateway.events_cli import events, training_record
from tests.conftest import service_env

from ._data import assert_valid

SUB = "h1:" + "ab" * 16


def feedback(i: int, *, consent: bool, label: str = "spam") -> dict[str, Any]:
    ev: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "message_id": f"m{i}", "subscriber": SUB, "channel": "sms",
                          "label": label, "consent": consent}
    if consent:
        ev["content"] = f"win a prize {i}"
    return ev


def test_training_record_needs_consent_and_content() -> None:
    assert training_record(feedback(1, consent=False)) is None
    assert training_record({**feedback(1, consent=True), "label": "meh"}) is None
    rec = training_record({**feedback(1, consent=True, label="fraud"), "event_id": "e1"})
    assert rec == {"label": "spam", "channel": "sms", "text": "win a prize 1", "message_id": "m1",
                   "event_id": "e1", "time": rec["time"]}


async def test_feedback_events_match_schema(tmp_path: Path) -> None:
    sink = FileEventSink(tmp_path)
    sink.emit("feedback", SUB, feedback(1, consent=True))
    sink.emit("feedback", SUB, feedback(2, consent=False, label="ham"))
    (path,) = (tmp_path / "feedback").glob("*.jsonl")
    for line in path.read_bytes().splitlines():
        assert_valid("feedback", orjson.loads(line))
    bad = orjson.loads(path.read_bytes().splitlines()[1]) | {"content": "secret"}
    with pytest.raises(AssertionError):
        assert_valid("feedback", bad)  # content without consent breaks the schema


def test_consume_from_files(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAMORI_DATA_DIR", str(settings.data_dir))
    sink = FileEventSink(settings.data_dir / "events")
    for i in range(5):
        sink.emit("feedback", SUB, feedback(i, consent=i % 2 == 0, label="ham" if i == 4 else "spam"))
    out = tmp_path / "train.jsonl"
    runner = CliRunner()
    r = runner.invoke(events, ["consume-feedback", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.output) == {"written": 3, "skipped": 2}
    recs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [(x["label"], x["text"]) for x in recs] == [
        ("spam", "win a prize 0"), ("spam", "win a prize 2"), ("ham", "win a prize 4")]
    # again: nothing new
    r = runner.invoke(events, ["consume-feedback", "--out", str(out)])
    assert orjson.loads(r.output) == {"written": 0, "skipped": 0}
    sink.emit("feedback", SUB, feedback(6, consent=True))
    r = runner.invoke(events, ["consume-feedback", "--out", str(out)])
    assert orjson.loads(r.output) == {"written": 1, "skipped": 0}
    assert len(out.read_bytes().splitlines()) == 4


@pytest.fixture
def bootstrap() -> str:
    return service_env("MAMORI_TEST_KAFKA")


@pytest.mark.e2e
async def test_consume_from_kafka(bootstrap: str, settings: Settings,
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    topic = f"mamori.feedback.e2e-{uuid.uuid4().hex[:8]}"
    cfg = settings.kafka.model_copy(update={"bootstrap": bootstrap, "topic_feedback": topic})
    sink = KafkaEventSink(cfg, tmp_path / "spool")
    await sink.start()
    for i in range(6):
        sink.emit("feedback", SUB, feedback(i, consent=i != 3))
    assert await sink.flush(60)
    await sink.close()
    monkeypatch.setenv("MAMORI_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MAMORI_KAFKA__BOOTSTRAP", bootstrap)
    monkeypatch.setenv("MAMORI_KAFKA__TOPIC_FEEDBACK", topic)
    out = tmp_path / "train.jsonl"
    from gateway.config import load_settings
    from gateway.events_cli import FeedbackWriter, consume_kafka

    writer = FeedbackWriter(out)
    await consume_kafka(load_settings(), writer, group_id=f"g-{topic}", idle_timeout=3.0,
                        max_records=None)
    assert (writer.written, writer.skipped) == (5, 1)
    # the group committed its offsets: a second run reads nothing new
    writer2 = FeedbackWriter(out)
    await consume_kafka(load_settings(), writer2, group_id=f"g-{topic}", idle_timeout=2.0,
                        max_records=None)
    assert (writer2.written, writer2.skipped) == (0, 0)
    assert len(out.read_bytes().splitlines()) == 5


def test_email_feedback_becomes_a_raw_record() -> None:
    ev = {**feedback(1, consent=True), "channel": "email", "content": "Subject: x\r\n\r\nbody"}
    rec = training_record(ev)
    assert rec is not None and rec["raw"] == "Subject: x\r\n\r\nbody" and "text" not in rec
