"""Fault: the disk of MAMORI_DATA_DIR full (a real tmpfs of a few hundred KiB, filled up).

- the Kafka spool cannot be written (broker down too): mail keeps flowing, every message the
  client got 250 for is at the next hop; the events that could not be spooled are counted in
  mamori_events_dropped_total{reason="disk"} and logged; spooling resumes when space returns;
- the quarantine cannot be written: a message to be quarantined gets 451 (the client keeps it
  and retries), never 250; once space returns it is held and answered 250.
Needs root (mount); skipped otherwise."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gateway.config import Settings
from gateway.events import EventSpool
from gateway.ingress import smtp as smtp_ingress
from gateway.runtime import Gateway
from tests.faults.support import Sink, free_port, smtp_send

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "512k") -> Iterator[Path]:
    path.mkdir(parents=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       check=False, capture_output=True, text=True)
    if p.returncode != 0:  # root without CAP_SYS_ADMIN (some containers)
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler file (delete it to free space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def dropped() -> float:
    return REGISTRY.get_sample_value("mamori_events_dropped_total",
                                     {"stream": "verdicts", "reason": "disk"}) or 0.0


def base(settings: Settings, disk: Path, sink: Sink, **pipeline: object) -> Settings:
    return settings.model_copy(update={
        "data_dir": disk,
        "smtp": settings.smtp.model_copy(update={"listen": "127.0.0.1:0",
                                                 "next_hop": f"127.0.0.1:{sink.port}"}),
        "kafka": settings.kafka.model_copy(update={
            "bootstrap": f"127.0.0.1:{free_port()}", "request_timeout_ms": 500, "queue_size": 1,
            "max_backoff": 0.2, "close_timeout": 0.5, "enable_idempotence": False}),
        "pipeline": settings.pipeline.model_copy(update=pipeline),
    })


async def test_spool_disk_full_mail_flows(settings: Settings, tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk, Sink() as sink:
        gw = Gateway.create(base(settings, disk, sink))
        await gw.start()
        svc = await smtp_ingress.start(gw)
        assert svc is not None
        try:
            assert (await smtp_send(svc.port, 0))[0] == 250  # the store and spool exist now
            filler = fill(disk)
            before = dropped()
            # the spool's last page still has room for a few events: send until it is used up
            n = 1
            while dropped() == before and n < 80:
                assert (await smtp_send(svc.port, n))[0] == 250
                n += 1
            assert dropped() > before  # counted, not silent
            assert len(sink.messages) == n  # every 250 is at the next hop
            filler.unlink()  # space is back: events spool again
            assert (await smtp_send(svc.port, n))[0] == 250
        finally:
            await svc.stop()
            await gw.close()
        events = EventSpool(disk / "spool" / "events").peek(100)
        assert len(events) >= 1


async def test_quarantine_disk_full_answers_451_not_250(settings: Settings, tmp_path: Path) -> None:
    # every message is to be quarantined (threshold below any score)
    with tiny_disk(tmp_path / "disk", "2m") as disk, Sink() as sink:
        s = base(settings, disk, sink, thresholds={"tag": -100.0, "quarantine": -50.0})
        s = s.model_copy(update={"kafka": s.kafka.model_copy(update={"bootstrap": ""})})
        gw = Gateway.create(s)
        await gw.start()
        svc = await smtp_ingress.start(gw)
        assert svc is not None and gw.quarantine is not None
        try:
            assert (await smtp_send(svc.port, 0))[0] == 250  # held: the store works
            filler = fill(disk)
            codes = [(await smtp_send(svc.port, i))[0] for i in range(1, 4)]
            assert codes == [451] * 3  # the client keeps the message and retries
            filler.unlink()
            assert (await smtp_send(svc.port, 1))[0] == 250  # the retry succeeds
        finally:
            await svc.stop()
            await gw.close()
        assert sink.messages == []  # quarantined, never relayed
