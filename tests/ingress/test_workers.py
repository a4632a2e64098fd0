"""`MAMORI_WORKERS=2`: a real `mamori serve` with a supervisor and two pre-forked workers on
shared sockets (SMTP filter, milter over a unix socket, HTTP API): traffic is served by both,
a killed worker is replaced while the other serves, no message is lost, /metrics adds up the
workers, SIGTERM stops everything."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from perf.bench.milter import check as milter_check
from tests.faults.support import Serve, Sink, free_port, smtp_send


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wait_workers(pid: int, n: int, timeout: float = 60.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(pid)
        if len(kids) == n:
            return kids
        time.sleep(0.1)
    raise TimeoutError(f"expected {n} workers, have {children(pid)}")


def scanned_total(api_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=10).read().decode()
    return sum(float(m) for m in re.findall(
        r'^mamori_messages_scanned_total\{[^}]*channel="email"[^}]*\} (\S+)$', text, re.M))


async def deliver(port: int, n: int) -> int:
    """Send message n until the filter accepts it, as an MTA would (a 4xx or a dropped
    connection means: try again later). Returns how many tries it took."""
    for attempt in range(1, 50):
        try:
            code, _ = await smtp_send(port, n)
        except Exception:
            code = 0
        if code == 250:
            return attempt
        await asyncio.sleep(0.2)
    raise AssertionError(f"message {n} never accepted")


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_two_workers_share_sockets_survive_a_kill_and_stop(tmp_path: Path, event_loop: str) -> None:
    if event_loop == "uvloop":
        pytest.importorskip("uvloop")
    smtp_port, api_port = free_port(), free_port()
    sock = tmp_path / "milter.sock"
    with Sink() as sink:
        serve = Serve(tmp_path / "data", MAMORI_WORKERS="2", MAMORI_EVENT_LOOP=event_loop,
                      MAMORI_SMTP__LISTEN=f"127.0.0.1:{smtp_port}",
                      MAMORI_SMTP__NEXT_HOP=f"127.0.0.1:{sink.port}",
                      MAMORI_MILTER__LISTEN=f"unix:{sock}",
                      MAMORI_API__LISTEN=f"127.0.0.1:{api_port}",
                      MAMORI_AUTH__ZONE_FILE=str(tmp_path / "zone.json"))
        (tmp_path / "zone.json").write_text("{}")
        serve.start(smtp_port, api_port)
        try:
            first = wait_workers(serve.pid, 2)
            # the socket file is the supervisor's: present while workers come and go
            assert sock.exists()

            async def traffic() -> None:
                tries = await asyncio.gather(*(deliver(smtp_port, n) for n in range(20)))
                assert all(t >= 1 for t in tries)
                # kill one worker in the middle of a second batch
                batch = asyncio.gather(*(deliver(smtp_port, n) for n in range(20, 60)))
                await asyncio.sleep(0.3)
                os.kill(sorted(first)[0], signal.SIGKILL)
                await batch
                # the milter on the shared unix socket answers too
                raw = b"From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
                reader_ok = 0
                for _ in range(6):
                    for _attempt in range(20):
                        try:
                            out = await milter_check("", 0, raw, sender="a@example.org",
                                                      recipient="b@example.test", unix=str(sock))
                        except OSError:
                            await asyncio.sleep(0.2)
                            continue
                        assert out.final in ("accept", "reject", "discard", "replycode")
                        reader_ok += 1
                        break
                assert reader_ok == 6

            asyncio.run(traffic())
            after = wait_workers(serve.pid, 2)
            assert len(after - first) == 1, "the killed worker was replaced, the other kept"
            # every message accepted reached the next hop (a retry may add a copy, none lost)
            got = {re.search(rb"Message-ID: <fault-(\d+)@", m).group(1) for m in sink.messages}
            assert {str(n).encode() for n in range(60)} <= got
            # /metrics sums the workers (the dead one's counters stay): at least every message
            seen = max(scanned_total(api_port) for _ in range(4))
            assert seen >= 60 + 6
        finally:
            code = serve.stop()
        assert code == 0
        assert not sock.exists()
        for pid in first:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]




def test_a_worker_that_keeps_dying_at_start_stops_the_supervisor(tmp_path: Path) -> None:
    from gateway.config import Settings
    from gateway.workers import supervise

    settings = Settings(data_dir=tmp_path, hash_key="k" * 16, smtp={"listen": ""},
                        api={"listen": ""})

    def child(slot: int, _settings: Settings, _sockets: dict) -> int:
        return 3  # exits at once, like a worker with a bad configuration

    assert supervise(settings, 2, child=child) == 1
