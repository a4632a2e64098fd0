"""Flood counting shared across replicas through Redis (HyperLogLog per text and window).

Uses MAMORI_TEST_REDIS (redis://host:port) when a service script exports it; otherwise starts
a private redis-server on loopback if the binary is installed; otherwise skips."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import string
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.config import Settings
from gateway.message import Message
from gateway.runtime import Gateway


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url = os.environ.get("MAMORI_TEST_REDIS", "")
    if url:
        yield url if url.startswith("redis://") else f"redis://{url}"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no Redis: MAMORI_TEST_REDIS unset and redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                import time

                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def replicas(redis_url: str, settings: Settings) -> AsyncIterator[list[Gateway]]:
    s = settings.model_copy(update={
        "redis": settings.redis.model_copy(update={"url": redis_url}),
        "sms": settings.sms.model_copy(update={"flood_recipients": 6, "burst_recipients": 1000})})
    gws = []
    for i in range(2):  # two replicas, separate data dirs, one Redis
        si = s.model_copy(update={"data_dir": s.data_dir / f"r{i}"})
        g = Gateway.create(si)
        await g.start()
        gws.append(g)
    yield gws
    for g in gws:
        await g.close()


async def test_flood_counted_across_replicas(replicas: list[Gateway]) -> None:
    # unique per run in letters: the fingerprint drops digits, and the shared Redis keeps the
    # counts of earlier runs for the whole window
    tag = "".join(random.choice(string.ascii_lowercase) for _ in range(16))
    text = f"Refund pending {tag}: claim at https://refund-x.example/"
    verdicts = []
    for i in range(8):  # alternate replicas: neither alone sees 6 recipients
        g = replicas[i % 2]
        verdicts.append(await g.process(Message.sms(
            text, sender="+819012345678", recipient=f"+81800000{i:04d}"), "t"))
    assert [v.failed_checks for v in verdicts] == [()] * 8
    assert "SMS_FLOOD" not in verdicts[3].symbols
    assert "SMS_FLOOD" in verdicts[7].symbols
    await asyncio.sleep(0)
