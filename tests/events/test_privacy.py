"""No message body, phone number or address leaves the process in clear text: drive the real
`Gateway.process` for SMS and email with the file sink and with the Kafka sink, and search the
logs (JSON, DEBUG level), the events (files, spool, Kafka topic) and the /metrics text."""

from __future__ import annotations

import io
import logging
import uuid
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY, generate_latest

from gateway.config import Settings
from gateway.logging import setup_logging
from gateway.message import Message, Peer
from gateway.runtime import Gateway
from tests.conftest import service_env

from ._data import (
    EMAIL_RAW,
    EMAIL_RECIPIENT,
    EMAIL_SENDER,
    SMS_BODY,
    SMS_RECIPIENT,
    SMS_SENDER,
    assert_no_secrets,
    assert_valid,
)


@pytest.fixture
def captured_logs() -> io.StringIO:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buf = io.StringIO()
    setup_logging("DEBUG", stream=buf)
    yield buf
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def messages() -> list[Message]:
    return [
        Message.sms(SMS_BODY, sender=SMS_SENDER, recipient=SMS_RECIPIENT,
                    peer=Peer(ip="192.0.2.10")),
        Message.email(EMAIL_RAW, sender=EMAIL_SENDER, recipients=[EMAIL_RECIPIENT],
                      peer=Peer(ip="192.0.2.20", helo="mail.example.org")),
    ]


async def scan_all(gw: Gateway) -> None:
    await gw.start()
    try:
        for msg in messages():
            await gw.process(msg, "smpp" if msg.channel == "sms" else "smtp")
    finally:
        await gw.close()


def check_hashes_present(gw: Gateway, text: str) -> None:
    """The parties are there, as keyed hashes: the test looks at the right output."""
    for party in (SMS_SENDER, SMS_RECIPIENT, EMAIL_SENDER, EMAIL_RECIPIENT):
        h = gw.hasher(party)
        assert h is not None and h in text


async def test_file_sink_logs_and_metrics_carry_no_content_or_parties(
        settings: Settings, captured_logs: io.StringIO) -> None:
    gw = Gateway.create(settings)
    await scan_all(gw)
    files = sorted((settings.data_dir / "events").rglob("*.jsonl"))
    events_text = "".join(p.read_text() for p in files)
    assert events_text.count('"schema":"mamori.verdicts/v1"') == 2
    for line in events_text.splitlines():
        assert_valid("verdicts", orjson.loads(line))
    check_hashes_present(gw, events_text)
    logs = captured_logs.getvalue()
    assert '"verdict"' in logs  # the verdict log lines are there
    check_hashes_present(gw, logs)
    assert_no_secrets(events_text, "event files")
    assert_no_secrets(logs, "logs")
    assert_no_secrets(generate_latest(REGISTRY).decode(), "metrics")


@pytest.fixture
def bootstrap() -> str:
    return service_env("MAMORI_TEST_KAFKA")


@pytest.mark.e2e
async def test_kafka_sink_logs_events_spool_and_metrics_carry_no_content_or_parties(
        bootstrap: str, settings: Settings, captured_logs: io.StringIO) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = f"mamori.verdicts.privacy-{uuid.uuid4().hex[:8]}"
    kafka = settings.kafka.model_copy(update={"bootstrap": bootstrap, "topic_verdicts": topic})
    gw = Gateway.create(settings.model_copy(update={"kafka": kafka}))
    await scan_all(gw)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        while len(values) < 2:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "verdict events did not arrive"
            values += [(r.key or b"") + b" " + r.value for recs in batch.values() for r in recs]
    finally:
        await consumer.stop()
    topic_text = b"\n".join(values).decode()
    check_hashes_present(gw, topic_text)
    assert_no_secrets(topic_text, "Kafka topic")
    spool = Path(settings.data_dir / "spool")
    spool_text = "".join(p.read_text() for p in spool.rglob("*") if p.is_file())
    assert_no_secrets(spool_text, "spool")
    assert_no_secrets(captured_logs.getvalue(), "logs")
    assert_no_secrets(generate_latest(REGISTRY).decode(), "metrics")


async def test_kafka_spool_carries_no_content_or_parties(settings: Settings) -> None:
    """Broker unreachable: what is written to disk is the same hashed event."""
    kafka = settings.kafka.model_copy(update={"bootstrap": "127.0.0.1:9", "request_timeout_ms": 300,
                                              "close_timeout": 0.5})
    gw = Gateway.create(settings.model_copy(update={"kafka": kafka}))
    await scan_all(gw)
    files = [p for p in (settings.data_dir / "spool").rglob("*.spool")]
    text = "".join(p.read_text() for p in files)
    assert text.count("mamori.verdicts/v1") == 2
    check_hashes_present(gw, text)
    assert_no_secrets(text, "spool")
