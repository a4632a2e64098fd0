"""Event streams: verdicts, settings changes, feedback, DMARC data.

`emit` never blocks on I/O and never raises: a scan does not wait on the event transport.

- `FileEventSink` (the embedded default when no Kafka broker is configured) appends JSON lines
  to `MAMORI_DATA_DIR/events/<stream>/<YYYY-MM-DD>.jsonl` (one file per UTC day, so retention
  can drop whole days) from a background task.
- `KafkaEventSink` puts events in a bounded in-memory queue that a background task sends with
  aiokafka; when the broker is unreachable (or the queue is full) events go to a durable spool
  on disk (`EventSpool`) and are replayed in order when the broker returns.

Every event carries `schema` (`mamori.<stream>/v1`, see `schemas/`), `event_id` (unique, for
consumers that de-duplicate) and `key` (the keyed hash of the subscriber; the Kafka message key,
so one subscriber's events stay in one partition, in order).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from prometheus_client import Counter, Gauge

from gateway.ids import new_id
from gateway.retention import Holds

if TYPE_CHECKING:
    from gateway.config import KafkaSettings, Settings

log = logging.getLogger("mamori.events")

STREAMS = ("verdicts", "settings", "feedback", "dmarc")
SCHEMA_VERSION = 1

EVENTS_EMITTED = Counter("mamori_events_emitted_total", "Events handed to the sink", ["stream"])
EVENTS_SENT = Counter("mamori_events_sent_total", "Events acknowledged by the broker", ["stream"])
EVENTS_SPOOLED = Counter("mamori_events_spooled_total", "Events written to the disk spool", ["stream"])
EVENTS_DROPPED = Counter(
    "mamori_events_dropped_total", "Events that could not be kept (unserialisable, disk failure)",
    ["stream", "reason"],
)
QUEUE_DEPTH = Gauge("mamori_events_queue_depth", "Events waiting in the in-memory queue")
SPOOL_BYTES = Gauge("mamori_events_spool_bytes", "Bytes of events waiting in the disk spool")
SPOOL_EVENTS = Gauge("mamori_events_spool_events", "Events waiting in the disk spool")
LAG_SECONDS = Gauge(
    "mamori_events_lag_seconds", "Age of the oldest event not yet acknowledged by the broker"
)
# The spool gauges are read from the sinks' own spools when scraped. They used to be set by
# every EventSpool on each change, so a spool opened elsewhere in the process (retention's
# purge, a second or closed sink) overwrote them with its own count: last writer won, and the
# gauge could read 0 while the live sink's spool held events.
_LIVE_SPOOLS: weakref.WeakSet[EventSpool] = weakref.WeakSet()
SPOOL_EVENTS.set_function(lambda: float(sum(s.pending_events for s in list(_LIVE_SPOOLS))))
SPOOL_BYTES.set_function(lambda: float(sum(s.pending_bytes for s in list(_LIVE_SPOOLS))))


_EMITTED: dict[str, Any] = {}


def _emitted(stream: str) -> Any:
    """The emitted-events counter of a stream (its child looked up once, not per event)."""
    c = _EMITTED.get(stream)
    if c is None:
        c = _EMITTED[stream] = EVENTS_EMITTED.labels(stream)
    return c


class EventSink(Protocol):
    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def envelope(stream: str, key: str | None, event: dict[str, Any]) -> dict[str, Any]:
    """The event as it leaves the process: schema id, event id, key, then the fields."""
    return {
        "schema": f"mamori.{stream}/v{SCHEMA_VERSION}",
        "event_id": new_id(),
        "emitted_at": round(time.time(), 3),
        "key": key,
        **event,
    }


def _encode(stream: str, key: str | None, event: dict[str, Any]) -> bytes | None:
    try:
        return orjson.dumps(envelope(stream, key, event))
    except TypeError:
        log.error("event for %s is not serialisable; dropped", stream)
        EVENTS_DROPPED.labels(stream, "unserialisable").inc()
        return None


class NullSink:
    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemorySink:
    """For tests: keeps every event in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []

    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None:
        self.events.append((stream, key, event))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


_last_day: tuple[float, float, str] = (0.0, 0.0, "")


def _day(ts: float) -> str:
    """The UTC day of `ts` (formatted once per day, not per event)."""
    global _last_day
    start, end, day = _last_day
    if start <= ts < end:
        return day
    day = time.strftime("%Y-%m-%d", time.gmtime(ts))
    start = float(int(ts // 86400) * 86400)
    _last_day = (start, start + 86400.0, day)
    return day


def _utc_start(day: str) -> float:
    return float(calendar.timegm(time.strptime(day, "%Y-%m-%d")))


def _held(line: bytes, holds: Holds) -> bool:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(rec, dict):
        return False
    return holds.holds_hashed(rec.get("key") or rec.get("subscriber"), rec.get("message_id"))


class FileEventSink:
    """JSON lines per stream and UTC day. `clock` is injectable for tests."""

    def __init__(self, directory: Path, *, flush_interval: float = 0.2, max_buffer: int = 10_000,
                 clock: Any = time.time) -> None:
        self.directory = directory
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.clock = clock
        self._buf: dict[tuple[str, str], list[bytes]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None:
        line = _encode(stream, key, event)
        if line is None:
            return
        _emitted(stream).inc()
        buf = self._buf.setdefault((stream, _day(self.clock())), [])
        buf.append(line + b"\n")
        if len(buf) >= self.max_buffer or self._task is None:
            self._wake.set()
            if self._task is None:
                self.flush()

    def path_for(self, stream: str, day: str) -> Path:
        return self.directory / stream / f"{day}.jsonl"

    def flush(self) -> None:
        for (stream, day), buf in list(self._buf.items()):
            if not buf:
                continue
            data = b"".join(buf)
            buf.clear()
            path = self.path_for(stream, day)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "ab") as fh:
                    fh.write(data)
            except OSError:
                log.exception("cannot write %s events", stream)
                EVENTS_DROPPED.labels(stream, "disk").inc(data.count(b"\n"))
        self._buf = {k: v for k, v in self._buf.items() if v}

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.to_thread(self.flush)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="file-event-sink")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()


class EventFileStore:
    """Retention of the file sink's daily files: a day older than the cutoff is deleted, except
    the lines of held subscribers or messages, which are kept in place."""

    def __init__(self, directory: Path, stream: str) -> None:
        self.directory = directory
        self.stream = stream
        self.kind = stream  # its retention setting: MAMORI_RETENTION__<STREAM>_DAYS

    def files(self) -> Iterator[tuple[Path, float]]:
        folder = self.directory / self.stream
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.jsonl")):
            with contextlib.suppress(ValueError):
                yield path, _utc_start(path.stem) + 86400

    def _purge(self, cutoff: float, holds: Holds) -> int:
        purged = 0
        for path, day_end in self.files():
            if day_end > cutoff:
                continue
            lines = path.read_bytes().splitlines(keepends=True)
            kept = [ln for ln in lines if _held(ln, holds)] if holds else []
            purged += len(lines) - len(kept)
            if kept:
                if len(kept) != len(lines):
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(b"".join(kept))
                    os.replace(tmp, path)
            else:
                path.unlink()
        return purged

    async def purge(self, cutoff: float, holds: Holds) -> int:
        return await asyncio.to_thread(self._purge, cutoff, holds)


# ---------------------------------------------------------------------------------------------
# Durable spool


class EventSpool:
    """Append-only segment files of `[stream, key, value]` JSON lines, plus a cursor file naming
    the first line not yet delivered and the lines after it already delivered (so a replay that
    failed half way does not send anything twice). Writes are fsynced."""

    SEGMENT_BYTES = 16 * 1024 * 1024
    pending_events: int  # undelivered events
    pending_bytes: int  # and their bytes (both read by the gauges)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._cursor_path = directory / "cursor.json"
        cur = self._load_cursor()
        self.segment: int = cur.get("segment", 0)
        self.offset: int = cur.get("offset", 0)
        self.done: set[int] = set(cur.get("done", []))
        # events at the head of the spool may have reached the broker although their delivery
        # failed (the acknowledgement was lost): replay first looks for them on the topic,
        # among the records written since this time
        self.check_since: float | None = cur.get("check_since")
        self.pending_events = 0
        self.pending_bytes = 0
        # appends come from the event loop, commits from a worker thread (asyncio.to_thread)
        self._count_lock = threading.Lock()
        self._truncate_torn_tail()
        self._recount()

    # -- state
    def _load_cursor(self) -> dict[str, Any]:
        try:
            cur = orjson.loads(self._cursor_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            segs = self.segments()
            return {"segment": segs[0] if segs else 0, "offset": 0}
        return cur if isinstance(cur, dict) else {}

    def _save_cursor(self) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"segment": self.segment, "offset": self.offset,
                                   "done": sorted(self.done), "check_since": self.check_since}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._cursor_path)

    def segments(self) -> list[int]:
        out = []
        for p in self.directory.glob("*.spool"):
            with contextlib.suppress(ValueError):
                out.append(int(p.stem))
        return sorted(out)

    def _seg_path(self, n: int) -> Path:
        return self.directory / f"{n:012d}.spool"

    def _truncate_torn_tail(self) -> None:
        """A crash in the middle of an append leaves a partial last line: cut it off so the
        next append starts on a line of its own."""
        segs = self.segments()
        if not segs:
            return
        path = self._seg_path(segs[-1])
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
            log.warning("spool: a partial event from an interrupted write was discarded")

    def _recount(self) -> None:
        """Count undelivered events (reads the spool: at start-up and after a purge only)."""
        events = 0
        for n in self.segments():
            if n < self.segment:
                continue
            with open(self._seg_path(n), "rb") as fh:
                if n == self.segment:
                    fh.seek(self.offset)
                for raw in fh:
                    events += raw.endswith(b"\n")
        with self._count_lock:
            self.pending_events = max(0, events - len(self.done))
        self._gauges()

    def _gauges(self) -> None:
        size = 0
        for n in self.segments():
            if n >= self.segment:
                with contextlib.suppress(OSError):
                    size += self._seg_path(n).stat().st_size
        self.pending_bytes = max(0, size - self.offset)

    def __len__(self) -> int:
        return self.pending_events

    # -- writing
    def append(self, items: Iterable[tuple[str, str | None, bytes]]) -> int:
        lines = [orjson.dumps([s, k, v.decode()]) + b"\n" for s, k, v in items]
        if not lines:
            return 0
        segs = self.segments()
        last = segs[-1] if segs else self.segment
        path = self._seg_path(last)
        if path.exists() and path.stat().st_size >= self.SEGMENT_BYTES:
            path = self._seg_path(last + 1)
        data = b"".join(lines)
        # counted before they are written: a replay in a worker thread may read and commit
        # these lines the moment they are on disk, and its commit must find them counted
        # (else the count, clamped at 0, ends one too high and the sink waits for it forever)
        with self._count_lock:
            self.pending_events += len(lines)
        try:
            with open(path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with self._count_lock:
                self.pending_events = max(0, self.pending_events - len(lines))
            raise
        self._gauges()
        return len(lines)

    # -- reading
    def peek(self, limit: int) -> list[tuple[int, str, str | None, bytes, int]]:
        """Up to `limit` undelivered entries from the cursor: (index, stream, key, value, end)."""
        out: list[tuple[int, str, str | None, bytes, int]] = []
        while not out:
            path = self._seg_path(self.segment)
            if not path.exists():
                if any(n > self.segment for n in self.segments()):
                    self._advance_segment()
                    continue
                return out
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                pos = self.offset
                for index, raw in enumerate(fh):
                    if not raw.endswith(b"\n"):
                        break  # torn write at a crash: the tail is not an event
                    pos += len(raw)
                    if index not in self.done:
                        try:
                            stream, key, value = orjson.loads(raw)
                            out.append((index, stream, key, value.encode(), pos))
                        except (orjson.JSONDecodeError, ValueError, AttributeError):
                            log.error("corrupt spool line skipped")
                            self.done.add(index)
                    if len(out) >= limit:
                        break
            if not out:
                if any(n > self.segment for n in self.segments()):
                    self._advance_segment()
                    continue
                if self.done:
                    self.offset = pos
                    self.done.clear()
                    self._save_cursor()
                return out
        return out

    def _advance_segment(self) -> None:
        old = self._seg_path(self.segment)
        later = [n for n in self.segments() if n > self.segment]
        self.segment = later[0]
        self.offset = 0
        self.done.clear()
        self._save_cursor()
        with contextlib.suppress(FileNotFoundError):
            old.unlink()

    def commit(self, entries: list[tuple[int, str, str | None, bytes, int]], ok: list[bool]) -> None:
        """Mark delivered entries: the cursor moves past the delivered prefix; delivered
        entries after the first failure are remembered so they are not sent again."""
        moved = 0
        prefix_end: int | None = None
        for entry, good in zip(entries, ok, strict=True):
            if not good:
                break
            prefix_end = entry[4]
            moved += 1
        later = [e[0] for e, g in zip(entries[moved:], ok[moved:], strict=True) if g]
        if prefix_end is not None:
            base = entries[moved - 1][0] + 1
            self.offset = prefix_end
            self.done = {i - base for i in self.done | set(later) if i >= base}
        else:
            self.done |= set(later)
        self._save_cursor()
        with self._count_lock:
            self.pending_events = max(0, self.pending_events - sum(ok))
        self._gauges()

    def mark_uncertain(self, since: float) -> None:
        self.check_since = since if self.check_since is None else min(self.check_since, since)
        self._save_cursor()

    def clear_uncertain(self) -> None:
        if self.check_since is not None:
            self.check_since = None
            self._save_cursor()

    # -- retention
    def purge_before(self, cutoff: float) -> int:
        """Drop whole segments last written before `cutoff` (events never delivered)."""
        purged = 0
        segments = self.segments()
        for n in segments[:-1]:  # the last segment is still written to
            path = self._seg_path(n)
            if path.stat().st_mtime >= cutoff:
                break
            purged += path.read_bytes().count(b"\n")
            if n == self.segment:
                self.segment, self.offset = min(m for m in segments if m > n), 0
                self.done.clear()
                self._save_cursor()
            path.unlink()
        self._recount()
        return purged


class SpoolStore:
    """Retention of the spool: undelivered events older than the retention are dropped, whole
    segments at a time (a broker gone for longer than that is a data loss the operator chose)."""

    kind = "spool"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def purge(self, cutoff: float, holds: Holds) -> int:
        if not self.directory.is_dir():
            return 0
        return await asyncio.to_thread(EventSpool(self.directory).purge_before, cutoff)


# ---------------------------------------------------------------------------------------------
# Kafka


class KafkaEventSink:
    """aiokafka producer behind a bounded queue, with a disk spool for outages.

    Order: events leave in the order they were emitted. While anything is in the spool, newer
    events go behind it in the spool, so replay keeps the order. The queue overflowing also
    spills to the spool (never a drop)."""

    def __init__(self, cfg: KafkaSettings, spool_dir: Path) -> None:
        self.cfg = cfg
        self.topics = {"verdicts": cfg.topic_verdicts, "settings": cfg.topic_settings,
                       "feedback": cfg.topic_feedback, "dmarc": cfg.topic_dmarc}
        self.spool_dir = spool_dir
        self.spool: EventSpool | None = None
        self._queue: deque[tuple[str, str | None, bytes, float]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._closing = False
        self._oldest_spooled: float | None = None
        # popped from the queue but not yet acknowledged: spooled if the task is cancelled
        self._inflight: list[tuple[str, str | None, bytes, float]] = []
        self._inflight_since = 0.0
        self._uncertain = False
        self._check_failures = 0

    # -- emit (never blocks, never raises)
    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None:
        value = _encode(stream, key, event)
        if value is None:
            return
        _emitted(stream).inc()
        if len(self._queue) >= self.cfg.queue_size:
            self._spill([*self._queue, (stream, key, value, time.time())])
            self._queue.clear()
        else:
            self._queue.append((stream, key, value, time.time()))
        QUEUE_DEPTH.set(len(self._queue))
        self._wake.set()

    def _spill(self, items: list[tuple[str, str | None, bytes, float]]) -> None:
        spool = self._spool()
        try:
            spool.append((s, k, v) for s, k, v, _ in items)
        except OSError:
            log.exception("cannot write the event spool")
            for s, _, _, _ in items:
                EVENTS_DROPPED.labels(s, "disk").inc()
            return
        for s, _, _, ts in items:
            EVENTS_SPOOLED.labels(s).inc()
            if self._oldest_spooled is None:
                self._oldest_spooled = ts

    def _spool(self) -> EventSpool:
        if self.spool is None:
            self.spool = EventSpool(self.spool_dir)
            _LIVE_SPOOLS.add(self.spool)  # this sink's spool is what the gauges show
        return self.spool

    # -- producer
    def _client_kwargs(self) -> dict[str, Any]:
        c = self.cfg
        kw: dict[str, Any] = {"bootstrap_servers": c.bootstrap, "client_id": c.client_id,
                              "request_timeout_ms": c.request_timeout_ms,
                              "retry_backoff_ms": c.retry_backoff_ms,
                              "security_protocol": c.security_protocol}
        if c.sasl_mechanism:
            kw.update(sasl_mechanism=c.sasl_mechanism, sasl_plain_username=c.sasl_username,
                      sasl_plain_password=c.sasl_password)
        if c.ssl_cafile:
            import ssl

            kw["ssl_context"] = ssl.create_default_context(cafile=c.ssl_cafile)
        return kw

    def _producer_kwargs(self) -> dict[str, Any]:
        c = self.cfg
        return {
            **self._client_kwargs(),
            "acks": "all" if c.acks == "all" else int(c.acks),
            "enable_idempotence": c.enable_idempotence,
            "compression_type": None if c.compression in ("", "none") else c.compression,
            "linger_ms": c.linger_ms,
            "max_batch_size": c.max_batch_size,
        }

    async def _connect(self) -> bool:
        from aiokafka import AIOKafkaProducer

        if self._producer is not None:
            return True
        producer = AIOKafkaProducer(**self._producer_kwargs())
        try:
            await producer.start()
        except (Exception, asyncio.CancelledError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("kafka unreachable: %s", type(exc).__name__)
            return False
        self._producer = producer
        log.info("kafka producer connected")
        return True

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def _send(self, items: list[tuple[str, str | None, bytes]]) -> list[bool]:
        """Send in order; True for each event the broker acknowledged. `self._uncertain` is
        set when an event was handed to the broker but its delivery failed (it may be there)."""
        producer = self._producer
        futures: list[asyncio.Future[Any] | None] = []
        for stream, key, value in items:
            topic = self.topics.get(stream, f"mamori.{stream}")
            try:
                fut = await producer.send(topic, value=value,
                                          key=key.encode() if key else None)
            except Exception as exc:
                log.warning("kafka send failed: %s", type(exc).__name__)
                futures.extend([None] * (len(items) - len(futures)))
                break
            futures.append(fut)
        ok: list[bool] = []
        for (stream, _, _), fut in zip(items, futures, strict=True):
            if fut is None:
                ok.append(False)
                continue
            try:
                await fut
            except Exception as exc:
                log.warning("kafka delivery failed: %s", type(exc).__name__)
                self._uncertain = True
                ok.append(False)
            else:
                EVENTS_SENT.labels(stream).inc()
                ok.append(True)
        return ok

    async def _delivered_since(self, since: float, topics: set[str]) -> set[str]:
        """event_ids of the records written to `topics` since `since` (unix time)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False,
                                    **self._client_kwargs())
        ids: set[str] = set()
        try:
            await consumer.start()
            tps = []
            for topic in sorted(topics):
                parts = await self._producer.partitions_for(topic)
                tps += [TopicPartition(topic, p) for p in sorted(parts or ())]
            if not tps:
                return ids
            consumer.assign(tps)
            starts = await consumer.offsets_for_times({tp: int((since - 1.0) * 1000) for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                start = starts.get(tp)
                if start is None or start.offset >= ends[tp]:
                    continue
                consumer.seek(tp, start.offset)
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=self.cfg.request_timeout_ms)
                    if not batch:
                        raise TimeoutError("no records while checking the topic")
                    for rec in batch.get(tp, []):
                        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                            ids.add(orjson.loads(rec.value).get("event_id"))
        finally:
            await consumer.stop()
        return ids

    async def _replay_round(self, spool: EventSpool) -> bool:
        """Send one batch from the spool head; False when the broker failed."""
        entries = await asyncio.to_thread(spool.peek, self.cfg.replay_batch)
        if not entries:
            return True
        ok = [False] * len(entries)
        checked = False
        if spool.check_since is not None:
            topics = {self.topics.get(e[1], f"mamori.{e[1]}") for e in entries}
            try:
                there = await self._delivered_since(spool.check_since, topics)
            except Exception as exc:
                self._check_failures += 1
                log.warning("cannot check the topic for events already delivered: %s",
                            type(exc).__name__)
                if self._check_failures < 3:
                    return False
                log.error("replaying without the check: events may arrive twice")
                there = set()
            else:
                checked = True
            self._check_failures = 0
            for i, e in enumerate(entries):
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    if orjson.loads(e[3]).get("event_id") in there:
                        ok[i] = True
            if any(ok):
                log.info("events already on the broker were not sent again",
                         extra={"events": sum(ok)})
        todo = [i for i, good in enumerate(ok) if not good]
        self._uncertain = False
        started = time.time()
        sent = await self._send([(entries[i][1], entries[i][2], entries[i][3]) for i in todo])
        for i, good in zip(todo, sent, strict=True):
            ok[i] = good
        await asyncio.to_thread(spool.commit, entries, ok)
        if self._uncertain:
            await asyncio.to_thread(spool.mark_uncertain, started)
        elif checked or (spool.check_since is not None and all(ok)):
            # the head that may have been delivered is resolved; what follows was never sent
            await asyncio.to_thread(spool.clear_uncertain)
        return all(ok)

    async def _run(self) -> None:
        """The sender; an unexpected error is logged and the sender goes on (never a silent
        stop with events piling up)."""
        while True:
            try:
                await self._sender()
                return
            except Exception:
                log.exception("event sender failed; restarting it")
                if self._inflight:
                    self._queue.extendleft(reversed(self._inflight))
                    self._inflight = []
                await self._drop_producer()
                await self._sleep(1.0)

    async def _sender(self) -> None:
        backoff = 0.2
        while True:
            self._update_lag()
            spool = self.spool
            if spool is not None and len(spool) > 0:
                # behind the spool: keep order by queueing new events after it
                if self._queue:
                    self._spill(list(self._queue))
                    self._queue.clear()
                    QUEUE_DEPTH.set(0)
                if not await self._connect():
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self.cfg.max_backoff)
                    continue
                if not await self._replay_round(spool):
                    await self._drop_producer()
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self.cfg.max_backoff)
                else:
                    backoff = 0.2
                    if len(spool) == 0:
                        self._oldest_spooled = None
                        log.info("event spool replayed")
                continue
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.cfg.replay_batch))]
            QUEUE_DEPTH.set(len(self._queue))
            self._inflight = batch
            if not await self._connect():
                self._inflight = []
                self._spill(batch)
                continue
            self._uncertain = False
            self._inflight_since = time.time()
            ok = await self._send([(s, k, v) for s, k, v, _ in batch])
            self._inflight = []
            if not all(ok):
                # undelivered ones go to the spool, ahead of anything still queued
                self._spill([b for b, good in zip(batch, ok, strict=True) if not good])
                if self._uncertain:
                    self._spool().mark_uncertain(self._inflight_since)
                await self._drop_producer()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._closing:
                    await asyncio.sleep(0.05)

    def _update_lag(self) -> None:
        oldest = self._oldest_spooled
        if self._queue:
            head = self._queue[0][3]
            oldest = head if oldest is None else min(oldest, head)
        LAG_SECONDS.set(0 if oldest is None else max(0.0, time.time() - oldest))

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "spooled": len(self.spool) if self.spool else 0}

    async def start(self) -> None:
        if self._task is not None:
            return
        if any(self.spool_dir.glob("*.spool")):
            self._spool()  # replay what an earlier run left
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="kafka-event-sink")

    async def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or spooled (for tests and drain); False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._queue or self._inflight or (
                        self.spool is not None and len(self.spool) > 0):
                    self._wake.set()
                    await asyncio.sleep(0.05)
                return True
        return False

    async def close(self) -> None:
        """Send what the broker takes within `close_timeout`; spool the rest for next time."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.cfg.close_timeout)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        uncertain = bool(self._inflight)
        if self._inflight:  # these may have reached the broker: checked at the next replay
            self._queue.extendleft(reversed(self._inflight))
            self._inflight = []
        if self._queue:
            self._spill(list(self._queue))
            self._queue.clear()
            QUEUE_DEPTH.set(0)
            if uncertain:
                self._spool().mark_uncertain(self._inflight_since)
        await self._drop_producer()
        if self.spool is not None:  # a closed sink's spool is the next sink's to count
            _LIVE_SPOOLS.discard(self.spool)


def spool_dir(settings: Settings) -> Path:
    """Where the Kafka sink spools: MAMORI_KAFKA__SPOOL_DIR, default MAMORI_DATA_DIR/spool/events."""
    if settings.kafka.spool_dir:
        return Path(settings.kafka.spool_dir)
    return settings.data_dir / "spool" / "events"


def make_event_sink(settings: Settings) -> EventSink:
    """The sink the settings ask for: Kafka when MAMORI_KAFKA__BOOTSTRAP is set, else files."""
    if settings.kafka.bootstrap:
        return KafkaEventSink(settings.kafka, spool_dir(settings))
    return FileEventSink(settings.data_dir / "events")


def retainable_stores(settings: Settings) -> list[Any]:
    """The stores of this module, for retention: the daily event files and the spool."""
    stores: list[Any] = [EventFileStore(settings.data_dir / "events", s) for s in STREAMS]
    stores.append(SpoolStore(spool_dir(settings)))
    return stores
