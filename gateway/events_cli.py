"""`mamori events`: consumers of the event streams and the state of the Kafka spool.

`consume-feedback` turns subscriber feedback events into labelled training records (JSON lines
`{"label": "spam"|"ham", "channel", "text" (SMS) or "raw" (email), "message_id", "event_id",
"time"}`, the JSON-lines format `mamori model train` reads). Only feedback the subscriber consented to share carries content; the rest
is counted and skipped. It reads Kafka (MAMORI_KAFKA__BOOTSTRAP set; a consumer group, offsets
committed after the records are written and fsynced) or the file sink's daily files (a state file
remembers how far it read). Records already in the output (same event_id) are not written again.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click
import orjson

from gateway.config import Settings, load_settings

LABELS = {"spam": "spam", "fraud": "spam", "phishing": "spam", "ham": "ham", "not_fraud": "ham"}


def training_record(event: dict[str, Any]) -> dict[str, Any] | None:
    """The labelled record for one feedback event, or None (no consent, no content, bad label)."""
    if not isinstance(event, dict) or event.get("consent") is not True:
        return None
    text = event.get("content")
    label = LABELS.get(str(event.get("label", "")))
    if not isinstance(text, str) or not text or label is None:
        return None
    channel = "email" if event.get("channel") == "email" else "sms"
    return {"label": label, "channel": channel, ("raw" if channel == "email" else "text"): text,
            "message_id": event.get("message_id"), "event_id": event.get("event_id"),
            "time": event.get("time") or event.get("at")}


class FeedbackWriter:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: set[str] = set()
        self.written = 0
        self.skipped = 0
        if out.exists():
            for line in out.read_bytes().splitlines():
                try:
                    eid = orjson.loads(line).get("event_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if eid:
                    self.seen.add(eid)

    def write(self, events: list[dict[str, Any]]) -> None:
        lines = []
        for ev in events:
            rec = training_record(ev)
            if rec is None or (rec["event_id"] and rec["event_id"] in self.seen):
                self.skipped += 1
                continue
            if rec["event_id"]:
                self.seen.add(rec["event_id"])
            lines.append(orjson.dumps(rec) + b"\n")
        if not lines:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out, "ab") as fh:
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        self.written += len(lines)


def consume_files(settings: Settings, writer: FeedbackWriter) -> None:
    folder = settings.data_dir / "events" / "feedback"
    state_path = settings.data_dir / "events" / "feedback.consumer.json"
    try:
        state: dict[str, int] = orjson.loads(state_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        state = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        start = state.get(path.name, 0)
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        events = []
        for line in data[:end].splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                writer.skipped += 1
        writer.write(events)
        state[path.name] = start + end
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(state))
    os.replace(tmp, state_path)


async def consume_kafka(settings: Settings, writer: FeedbackWriter, *, group_id: str,
                        idle_timeout: float, max_records: int | None) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.kafka.topic_feedback, bootstrap_servers=settings.kafka.bootstrap,
        group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
        client_id=settings.kafka.client_id,
    )
    try:
        await consumer.start()
        while max_records is None or writer.written < max_records:
            batches = await consumer.getmany(timeout_ms=int(idle_timeout * 1000))
            if not batches:
                break  # idle: everything available was consumed
            events = []
            for records in batches.values():
                for r in records:
                    try:
                        events.append(orjson.loads(r.value))
                    except (orjson.JSONDecodeError, TypeError):
                        writer.skipped += 1
            writer.write(events)
            await consumer.commit()
    finally:
        await consumer.stop()


@click.group("events")
def events() -> None:
    """Event stream consumers and the Kafka spool."""


@events.command("consume-feedback")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON lines file the labelled records are appended to")
@click.option("--group-id", default="mamori-feedback-trainer", show_default=True)
@click.option("--idle-timeout", type=float, default=5.0, show_default=True,
              help="stop after this many seconds without new events (Kafka)")
@click.option("--max-records", type=int, default=None, help="stop after writing this many")
def consume_feedback(out: Path, group_id: str, idle_timeout: float, max_records: int | None) -> None:
    """Append consented subscriber feedback as labelled training records."""
    try:
        settings = load_settings()
        writer = FeedbackWriter(out)
        if settings.kafka.bootstrap:
            asyncio.run(consume_kafka(settings, writer, group_id=group_id,
                                      idle_timeout=idle_timeout, max_records=max_records))
        else:
            consume_files(settings, writer)
    except Exception as exc:
        click.echo(f"mamori: error: cannot consume feedback: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(orjson.dumps({"written": writer.written, "skipped": writer.skipped}).decode())


@events.command("spool")
def spool_status() -> None:
    """Events waiting in the Kafka spool (undelivered)."""
    from gateway.events import EventSpool, spool_dir

    path = spool_dir(load_settings())
    n = len(EventSpool(path)) if path.is_dir() else 0
    click.echo(orjson.dumps({"spool": str(path), "events": n}).decode())
