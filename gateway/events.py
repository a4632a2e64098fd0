"""Event streams: verdicts, settings changes, feedback, DMARC data.

`emit` never blocks and never raises: a scan does not wait on the event transport. The file
sink (the embedded default when no Kafka broker is configured) appends JSON lines to
MAMORI_DATA_DIR/events/<stream>.jsonl from a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger("mamori.events")

STREAMS = ("verdicts", "settings", "feedback", "dmarc")
SCHEMA_VERSION = 1


class EventSink(Protocol):
    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


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


class FileEventSink:
    def __init__(self, directory: Path, *, flush_interval: float = 0.2, max_buffer: int = 10_000) -> None:
        self.directory = directory
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._buf: dict[str, list[bytes]] = {s: [] for s in STREAMS}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def emit(self, stream: str, key: str | None, event: dict[str, Any]) -> None:
        try:
            line = orjson.dumps({"schema": f"mamori.{stream}/v{SCHEMA_VERSION}", "key": key, **event})
        except TypeError:
            log.error("event for %s is not serialisable; dropped", stream)
            return
        buf = self._buf.setdefault(stream, [])
        buf.append(line + b"\n")
        if len(buf) >= self.max_buffer or self._task is None:
            self._wake.set()
            if self._task is None:
                self.flush()

    def flush(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for stream, buf in self._buf.items():
            if not buf:
                continue
            data = b"".join(buf)
            buf.clear()
            try:
                with open(self.directory / f"{stream}.jsonl", "ab") as fh:
                    fh.write(data)
            except OSError:
                log.exception("cannot write %s events", stream)

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
