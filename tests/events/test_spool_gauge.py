"""Why the spool gauge could read 0 while the sink's spool held events (docs/events.md), and
that it no longer does: the gauge was process-global and set by every EventSpool on each
change, so another spool in the process (retention's purge opens its own on the same
directory; a second or closed sink) overwrote it; and the count was updated from the event
loop (append) and a worker thread (commit) without a lock."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from prometheus_client import REGISTRY

from gateway.config import Settings
from gateway.events import EventSpool, KafkaEventSink, SpoolStore
from gateway.retention import Holds


def gauge() -> float | None:
    return REGISTRY.get_sample_value("mamori_events_spool_events")


def broker_down(settings: Settings) -> KafkaEventSink:
    cfg = settings.kafka.model_copy(update={"bootstrap": "127.0.0.1:9", "request_timeout_ms": 500,
                                            "queue_size": 5, "close_timeout": 1.0})
    return KafkaEventSink(cfg, settings.data_dir / "spool")


async def test_other_spools_in_the_process_do_not_overwrite_the_gauge(settings: Settings,
                                                                     tmp_path: Path) -> None:
    sink = broker_down(settings)
    await sink.start()
    try:
        for i in range(30):
            sink.emit("verdicts", "k", {"n": i})
            await asyncio.sleep(0.01)
        assert sink.stats()["spooled"] > 0 and gauge() == sink.stats()["spooled"]
        # retention's purge opens its own EventSpool on the same directory (nothing is old
        # enough to purge); an empty spool elsewhere is opened, as `mamori events` does
        assert await SpoolStore(settings.data_dir / "spool").purge(0.0, Holds()) == 0
        EventSpool(tmp_path / "elsewhere")
        assert gauge() == sink.stats()["spooled"] > 0  # read 0 before the fix
        # a second sink in the process (its spool empty) adds nothing and takes nothing away
        other = broker_down(settings.model_copy(update={"data_dir": tmp_path / "other"}))
        other.emit("verdicts", "k", {"n": -1})
        await other.close()
        assert other.stats()["spooled"] == 1  # it waits there for the next sink on that directory
        assert gauge() == sink.stats()["spooled"]  # not counted: only live sinks are
    finally:
        await sink.close()
    assert gauge() == 0.0  # nothing live: no sink is counted twice by a successor


def test_count_survives_append_and_commit_from_two_threads(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path / "spool")
    stop = threading.Event()
    committed = 0

    def committer() -> None:
        nonlocal committed
        while not stop.is_set() or len(spool):
            entries = spool.peek(50)
            if entries:
                spool.commit(entries, [True] * len(entries))
                committed += len(entries)

    t = threading.Thread(target=committer, daemon=True)
    t.start()
    for i in range(3000):  # the event loop's appends, while the worker commits
        spool.append([("verdicts", "k", b'{"n": %d}' % i)])
    stop.set()
    t.join(30)
    assert not t.is_alive(), f"the count never reached 0: {len(spool)} left, none on disk"
    assert committed == 3000
    assert len(spool) == 0 == len(EventSpool(tmp_path / "spool"))
