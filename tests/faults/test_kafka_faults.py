"""Fault: the Kafka broker down or slow. Mail keeps flowing (the event sink never blocks a
scan); every verdict event waits in the disk spool and reaches the broker once it is back
(real broker: scripts/services/kafka.sh, MAMORI_TEST_KAFKA)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import orjson
import pytest

from gateway.config import Settings
from gateway.events import EventSpool, KafkaEventSink
from gateway.ingress import smtp as smtp_ingress
from gateway.runtime import Gateway
from tests.conftest import service_env
from tests.faults.proxy import FaultProxy
from tests.faults.support import Sink, free_port, smtp_send

N = 25
KAFKA_AT_IMPORT = os.environ.get("MAMORI_TEST_KAFKA", "")  # the settings fixture clears MAMORI_*


def with_kafka(settings: Settings, bootstrap: str, topic: str, sink_port: int) -> Settings:
    return settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "bootstrap": bootstrap, "topic_verdicts": topic, "request_timeout_ms": 1500,
            "max_backoff": 0.5, "close_timeout": 2.0, "enable_idempotence": False}),
        "smtp": settings.smtp.model_copy(update={
            "listen": "127.0.0.1:0", "next_hop": f"127.0.0.1:{sink_port}"}),
        "api": settings.api.model_copy(update={"listen": ""}),
    })


async def mail_through(s: Settings, sink: Sink) -> list[int]:
    gw = Gateway.create(s)
    await gw.start()
    svc = await smtp_ingress.start(gw)
    assert svc is not None and isinstance(gw.events, KafkaEventSink)
    try:
        codes = [(await smtp_send(svc.port, i))[0] for i in range(N)]
    finally:
        await svc.stop()
        await gw.close()
    return codes


@pytest.mark.parametrize("fault", ["down", "slow"])
async def test_mail_flows_and_events_spool_while_broker_down_or_slow(settings: Settings,
                                                                      fault: str) -> None:
    proxy = None
    if fault == "down":
        bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens: connection refused
    else:  # a broker that accepts connections and never answers
        proxy = await FaultProxy("127.0.0.1", 9).start()
        await proxy.set("blackhole")
        bootstrap = f"127.0.0.1:{proxy.port}"
    with Sink() as sink:
        s = with_kafka(settings, bootstrap, "mamori.verdicts.fault", sink.port)
        codes = await asyncio.wait_for(mail_through(s, sink), 120)
    if proxy is not None:
        await proxy.stop()
    assert codes == [250] * N
    assert len(sink.messages) == N  # every accepted message reached the next hop
    spooled = EventSpool(s.data_dir / "spool" / "events").peek(10 * N)
    events = [orjson.loads(e[3]) for e in spooled]
    assert len(events) == N and all(e["ingress"] == "smtp" for e in events)


@pytest.mark.e2e
async def test_spooled_events_reach_the_broker_when_it_returns(settings: Settings) -> None:
    real = KAFKA_AT_IMPORT or service_env("MAMORI_TEST_KAFKA")
    topic = f"mamori.verdicts.fault-{uuid.uuid4().hex[:8]}"
    with Sink() as sink:  # outage: the broker's address is unreachable
        s = with_kafka(settings, f"127.0.0.1:{free_port()}", topic, sink.port)
        assert await mail_through(s, sink) == [250] * N
    assert len(EventSpool(s.data_dir / "spool" / "events").peek(10 * N)) == N
    s2 = s.model_copy(update={"kafka": s.kafka.model_copy(update={"bootstrap": real})})
    gw = Gateway.create(s2)  # the same data dir: the spool is replayed
    await gw.start()
    try:
        assert isinstance(gw.events, KafkaEventSink)
        assert await gw.events.flush(120)
    finally:
        await gw.close()
    from tests.e2e.test_kafka import consume_all

    records = await consume_all(real, topic, N)
    ids = [orjson.loads(r.value)["message_id"] for r in records]
    assert len(ids) == N and len(set(ids)) == N
    assert not EventSpool(Path(s.data_dir) / "spool" / "events").peek(10)
