"""Event sink throughput: how long `emit` takes (what a scan pays) and how fast events reach
the file or the broker. Prints figures; asserts nothing.

    python perf/events_bench.py [--events 20000] [--kafka 127.0.0.1:19092]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from gateway.config import KafkaSettings
from gateway.events import FileEventSink, KafkaEventSink


def record(i: int) -> dict[str, object]:
    return {"message_id": f"m{i}", "time": "2026-01-01T00:00:00Z", "ingress": "bench",
            "channel": "sms", "action": "accept", "score": 0.5, "symbols": {"A_SYMBOL": 0.5},
            "failed_checks": [], "policy_version": 1, "model_version": "sms-1",
            "subscriber": "h1:" + "0" * 32, "sender": "h1:" + "1" * 32,
            "recipients": ["h1:" + "2" * 32], "size": 120, "elapsed_ms": 1.2}


async def bench(name: str, sink: FileEventSink | KafkaEventSink, n: int, wait: bool = True) -> None:
    await sink.start()
    events = [record(i) for i in range(n)]
    t0 = time.perf_counter()
    for i, ev in enumerate(events):
        sink.emit("verdicts", f"h1:{i % 64:032x}", ev)
    t_emit = time.perf_counter() - t0
    if isinstance(sink, KafkaEventSink) and wait:
        await sink.flush(300)
    await sink.close()
    t_all = time.perf_counter() - t0
    where = "spooled" if not wait else "delivered"
    print(f"{name:6s} {n} events: emit {t_emit / n * 1e6:.1f} us/event, "
          f"{where} in {t_all:.2f} s ({n / t_all:,.0f} events/s)")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--kafka", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bench("file", FileEventSink(Path(tmp) / "events"), args.events)
        if args.kafka:
            cfg = KafkaSettings(bootstrap=args.kafka,
                                topic_verdicts=f"mamori.bench-{uuid.uuid4().hex[:6]}")
            await bench("kafka", KafkaEventSink(cfg, Path(tmp) / "spool"), args.events)
            cfg2 = KafkaSettings(bootstrap="127.0.0.1:9", request_timeout_ms=500, close_timeout=0.5)
            await bench("spool", KafkaEventSink(cfg2, Path(tmp) / "spool2"), args.events, wait=False)


if __name__ == "__main__":
    asyncio.run(main())
