"""Resource limits that earlier tests did not hit (see docs/reliability.md for the inventory):
SMTP recipients per transaction (452) and concurrent sessions (421); SMPP connections and binds
per system_id (ESME_RBINDFAIL); MIME depth and part count, URLs per message (scanning stops at
the bound, the message is still answered)."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from gateway.config import Settings
from gateway.ingress import smpp_pdu as P
from gateway.ingress import smtp as smtp_ingress
from gateway.ingress.smpp import SmppProxy
from gateway.message import Message, ScanContext
from gateway.mime import MAX_PARTS
from gateway.policy import DEFAULT_POLICY
from gateway.runtime import Gateway
from gateway.urls.extract import MAX_URLS
from tests.sms.conftest import FakeSmsc, RawEsme, proxy_settings


async def smtp_rig(settings: Settings, **smtp: object) -> tuple[Gateway, smtp_ingress.SmtpService]:
    s = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
        "listen": "127.0.0.1:0", "next_hop": "127.0.0.1:9", **smtp})})
    gw = Gateway.create(s)
    await gw.start()
    svc = await smtp_ingress.start(gw)
    assert svc is not None
    return gw, svc


async def test_smtp_recipient_limit_452(settings: Settings) -> None:
    gw, svc = await smtp_rig(settings, max_recipients=3)
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=svc.port, timeout=10) as c:
            await c.mail("a@example.org")
            codes = []
            for i in range(5):
                r = await c.execute_command(f"RCPT TO:<u{i}@example.test>".encode())
                codes.append(r.code)
        assert codes == [250, 250, 250, 452, 452]
    finally:
        await svc.stop()
        await gw.close()


async def test_smtp_connection_limit_421(settings: Settings) -> None:
    gw, svc = await smtp_rig(settings, max_connections=2)
    held = []
    try:
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", svc.port)
            assert (await r.readline()).startswith(b"220")
            held.append(w)
        r, w = await asyncio.open_connection("127.0.0.1", svc.port)
        assert (await asyncio.wait_for(r.readline(), 5)).startswith(b"421")
        w.close()
        held.pop().close()
        await asyncio.sleep(0.2)
        r, w = await asyncio.open_connection("127.0.0.1", svc.port)  # room again
        assert (await asyncio.wait_for(r.readline(), 5)).startswith(b"220")
        held.append(w)
    finally:
        for w in held:
            w.close()
        await svc.stop()
        await gw.close()


@pytest.fixture
async def fake_smsc() -> FakeSmsc:
    s = FakeSmsc()
    await s.start()
    yield s  # type: ignore[misc]
    await s.stop()


async def test_smpp_bind_and_connection_limits(settings: Settings, fake_smsc: FakeSmsc) -> None:
    s = proxy_settings(settings, fake_smsc.port, max_binds=2, max_connections=4)
    gw = Gateway.create(s)
    await gw.start()
    proxy = SmppProxy(gw, s.smpp)
    await proxy.start()
    clients: list[RawEsme] = []
    try:
        statuses = []
        for _ in range(3):
            c = await RawEsme.connect(proxy)
            clients.append(c)
            statuses.append((await c.bind()).status)
        assert statuses == [P.ESME_ROK, P.ESME_ROK, P.ESME_RBINDFAIL]
        clients.append(await RawEsme.connect(proxy))  # the 4th connection is allowed
        extra = await RawEsme.connect(proxy)  # the 5th is closed at once
        assert await extra.closed()
        clients[0].close()  # a bind ends: another one fits
        await asyncio.sleep(0.3)
        c = await RawEsme.connect(proxy)
        clients.append(c)
        assert (await c.bind()).status == P.ESME_ROK
    finally:
        for c in clients:
            c.close()
        await proxy.stop()
        await gw.close()


def test_mime_depth_and_part_count_are_bounded() -> None:
    deep = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for i in range(300):  # 300 levels of nesting
        deep = (f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
                + deep + f"\r\n--b{i}--\r\n".encode())
    many = b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n' + b"".join(
        b"--x\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(5000)) + b"--x--\r\n"
    for raw in (deep, many):
        ctx = ScanContext(Message.email(raw), DEFAULT_POLICY)
        assert isinstance(ctx.text, str)
    text = ScanContext(Message.email(many), DEFAULT_POLICY).text
    assert "part 0" in text and text.count("part ") <= MAX_PARTS


def test_url_count_is_bounded() -> None:
    body = " ".join(f"http://host{i}.example/p" for i in range(5000))
    ctx = ScanContext(Message.sms(body, sender="+819011112222", recipient="+818033334444"),
                      DEFAULT_POLICY)
    assert 0 < len(ctx.urls) <= MAX_URLS



def test_mime_parse_limit_bounds_the_scanned_bytes() -> None:
    from gateway.message import MIME_PARSE_LIMIT

    raw = (b"Subject: big\r\nContent-Type: text/plain\r\n\r\nstart http://first.example/ "
           + b"filler line\r\n" * (MIME_PARSE_LIMIT // 13 + 1000) + b"http://last.example/\r\n")
    ctx = ScanContext(Message.email(raw), DEFAULT_POLICY)
    hosts = {u.host for u in ctx.urls} if ctx.urls and hasattr(ctx.urls[0], "host") else set()
    assert "start" in ctx.text
    assert "last.example" not in ctx.text  # beyond the parse limit: not scanned
    assert "last.example" not in hosts
