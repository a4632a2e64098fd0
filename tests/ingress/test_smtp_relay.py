"""The SMTP filter's pool of next-hop sessions: reused, and never losing or duplicating a
message when a pooled session turns out to be dead."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer

from gateway.config import Settings
from gateway.events import MemorySink
from gateway.ingress import smtp as smtp_ingress
from gateway.ingress.smtp_relay import RelayPool
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore

HAM = (b"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
       b"Date: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <1@example.org>\r\n\r\n"
       b"See you at noon.\r\n")


@dataclass
class NextHop:
    """An aiosmtpd next hop whose misbehaviour the test chooses."""

    messages: list[bytes] = field(default_factory=list)
    sessions: int = 0
    refuse_reused_mail: bool = False  # 421 to MAIL on a session that already sent a message
    drop_after_data: bool = False  # take the message, then hang up without a reply
    _done: set[int] = field(default_factory=set)
    servers: list[SMTPServer] = field(default_factory=list)

    async def handle_MAIL(self, server: SMTPServer, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.refuse_reused_mail and id(session) in self._done:
            return "421 4.3.2 closing idle session"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        self._done.add(id(session))
        if self.drop_after_data:
            server.transport.close()
        return "250 2.0.0 stored"

    def factory(self) -> SMTPServer:
        self.sessions += 1
        srv = SMTPServer(self, decode_data=False)
        self.servers.append(srv)
        return srv


@pytest.fixture
async def hop() -> AsyncIterator[tuple[NextHop, int]]:
    h = NextHop()
    server = await asyncio.get_running_loop().create_server(h.factory, "127.0.0.1", 0)
    yield h, server.sockets[0].getsockname()[1]
    server.close()


def pool(port: int, size: int = 4) -> RelayPool:
    return RelayPool("127.0.0.1", port, timeout=10, local_hostname="test.localhost", size=size)


async def test_sessions_are_reused(hop: tuple[NextHop, int]) -> None:
    h, port = hop
    p = pool(port)
    for _ in range(5):
        errors, _ = await p.sendmail("a@example.org", ["b@example.test"], HAM)
        assert errors == {}
    await p.close()
    assert len(h.messages) == 5
    assert p.connects == 1 and p.reused == 4


async def test_size_zero_connects_per_message(hop: tuple[NextHop, int]) -> None:
    h, port = hop
    p = pool(port, size=0)
    for _ in range(3):
        await p.sendmail("a@example.org", ["b@example.test"], HAM)
    await p.close()
    assert len(h.messages) == 3 and p.connects == 3


async def test_stale_session_refused_before_data_is_retried_once(hop: tuple[NextHop, int]) -> None:
    h, port = hop
    h.refuse_reused_mail = True
    p = pool(port)
    await p.sendmail("a@example.org", ["b@example.test"], HAM)
    await p.sendmail("a@example.org", ["b@example.test"], HAM)  # pooled one says 421 to MAIL
    await p.close()
    assert len(h.messages) == 2  # delivered, exactly once each
    assert p.retries == 1 and p.connects == 2


async def test_session_closed_by_next_hop_is_not_used(hop: tuple[NextHop, int]) -> None:
    h, port = hop
    p = pool(port)
    await p.sendmail("a@example.org", ["b@example.test"], HAM)
    for srv in h.servers:  # the next hop's idle timeout
        srv.transport.close()
    await asyncio.sleep(0.05)
    await p.sendmail("a@example.org", ["b@example.test"], HAM)
    await p.close()
    assert len(h.messages) == 2 and p.connects == 2


async def test_failure_after_data_is_reported_not_retried(hop: tuple[NextHop, int]) -> None:
    h, port = hop
    p = pool(port)
    await p.sendmail("a@example.org", ["b@example.test"], HAM)
    h.drop_after_data = True
    with pytest.raises((aiosmtplib.SMTPException, ConnectionError)):
        await p.sendmail("a@example.org", ["b@example.test"], HAM)  # reused, dies after DATA
    await p.close()
    assert len(h.messages) == 2  # the next hop has it once; no second copy from a retry
    assert p.retries == 0 and p.connects == 1


# -- through the filter -------------------------------------------------------------------------


@pytest.fixture
async def rig(settings: Settings, hop: tuple[NextHop, int]) -> AsyncIterator[tuple[int, NextHop]]:
    h, port = hop
    s = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
        "listen": "127.0.0.1:0", "next_hop": f"127.0.0.1:{port}"})})
    gw = Gateway.create(s, events=MemorySink(), policies=MemoryPolicyStore())
    await gw.start()
    svc = await smtp_ingress.start(gw)
    assert svc is not None
    yield svc.port, h
    await svc.stop()
    await gw.close()


def send_many(port: int, n: int) -> list[Any]:
    out = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        for _ in range(n):
            try:
                out.append(c.sendmail("alice@example.org", ["bob@example.test"], HAM))
            except smtplib.SMTPDataError as exc:
                out.append(exc.smtp_code)
    return out


async def test_filter_reuses_next_hop_sessions(rig: tuple[int, NextHop]) -> None:
    port, h = rig
    assert await asyncio.to_thread(send_many, port, 4) == [{}] * 4
    assert len(h.messages) == 4 and h.sessions == 1
    assert all(b"X-Mamori-Action" in m for m in h.messages)


async def test_filter_tempfails_when_next_hop_hangs_up_after_data(rig: tuple[int, NextHop]) -> None:
    port, h = rig
    h.drop_after_data = True
    assert await asyncio.to_thread(send_many, port, 1) == [451]  # never a 250 without its 250
    assert len(h.messages) == 1
