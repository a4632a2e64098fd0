"""Every input limit is a setting and is answered with the protocol's own error (the table in
docs/reliability.md): MIME depth and parts, URLs per message, header count and size (SMTP 552
5.3.4, milter reply), SMTP message size (552 5.3.4), per-client rates on the SMTP filter (421
4.7.0 / 450 4.7.1) and the milter (451 4.7.1 by the connect macro's client address), the SMS
hook's body, batch and text sizes (413 / 422 with the shared error JSON), bounded per-client
state, and forged Authentication-Results claiming our authserv-id (RFC 8601 section 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiosmtplib
import httpx
import pytest

from gateway import caches, limits
from gateway.api.server import create_app
from gateway.config import LimitsSettings, Settings
from gateway.events import MemorySink
from gateway.ingress import milter_codec as mc
from gateway.ingress import smtp as smtp_ingress
from gateway.ingress.authres import authserv_id_of, strip_forged
from gateway.message import Message, ScanContext
from gateway.policy import DEFAULT_POLICY, Policy
from gateway.runtime import Gateway
from tests.faults.support import Sink
from tests.ingress.milter_support import HAM_BODY, HAM_HEADERS
from tests.ingress.milter_support import milter_rig as milter_rig


@pytest.fixture(autouse=True)
def default_limits() -> Iterator[None]:
    yield
    limits.apply(LimitsSettings())  # other tests scan with the defaults


def with_limits(settings: Settings, **lim: Any) -> Settings:
    return settings.model_copy(update={"limits": settings.limits.model_copy(update=lim)})


# -- content limits (no ingress of their own: scanning stops at the bound) -------------------


def test_mime_parts_and_depth_follow_the_settings() -> None:
    many = b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n' + b"".join(
        b"--x\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(50)) + b"--x--\r\n"
    limits.apply(LimitsSettings(mime_max_parts=6))
    assert ScanContext(Message.email(many), DEFAULT_POLICY).text.count("part ") == 5  # + the root
    limits.apply(LimitsSettings())
    assert ScanContext(Message.email(many), DEFAULT_POLICY).text.count("part ") == 50

    deep = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for i in range(10):
        deep = (f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
                + deep + f"\r\n--b{i}--\r\n".encode())
    assert "innermost" in ScanContext(Message.email(deep), DEFAULT_POLICY).text
    limits.apply(LimitsSettings(mime_max_depth=5))
    assert "innermost" not in ScanContext(Message.email(deep), DEFAULT_POLICY).text


def test_url_count_and_parse_bytes_follow_the_settings() -> None:
    body = " ".join(f"http://host{i}.example/p" for i in range(100))
    sms = Message.sms(body, sender="+819011112222", recipient="+818033334444")
    limits.apply(LimitsSettings(urls_per_message=7))
    assert len(ScanContext(sms, DEFAULT_POLICY).urls) == 7
    limits.apply(LimitsSettings())
    assert len(ScanContext(sms, DEFAULT_POLICY).urls) == 100

    raw = (b"Subject: big\r\n\r\nstart " + b"filler line\r\n" * 1000 + b"http://last.example/\r\n")
    limits.apply(LimitsSettings(mime_parse_bytes=4096))
    assert "last.example" not in ScanContext(Message.email(raw), DEFAULT_POLICY).text


def test_memo_caches_are_bounded_by_the_setting() -> None:
    from gateway.urls.domains import registered_domain

    limits.apply(LimitsSettings(memo_cache_size=50))
    for i in range(500):
        registered_domain(f"h{i}.example{i}.co.jp")
    assert registered_domain.cache_info().currsize == 50
    assert caches.sizes()["gateway.urls.domains.registered_domain"] == 50
    assert all(n <= 50 for n in caches.sizes().values())


def test_header_cache_is_bounded_by_the_setting() -> None:
    from gateway import mime

    limits.apply(LimitsSettings(header_cache_size=10))
    for n in range(50):  # unique Subject and Message-ID values
        raw = f"Subject: invoice {n}\r\nMessage-ID: <{n}@x.test>\r\n\r\nhi\r\n".encode()
        assert f"invoice {n}" in ScanContext(Message.email(raw), DEFAULT_POLICY).text
        assert len(mime._HEADER_CACHE) <= 10


def test_flood_counter_keeps_only_what_its_window_saw() -> None:
    from gateway.sms.flood import MemoryCounter

    now = [0.0]
    c = MemoryCounter(60.0, max_keys=1000, clock=lambda: now[0])
    for i in range(500):  # one text per key, a second apart: 8 minutes of distinct texts
        now[0] = float(i)
        assert c.add(f"t{i}", "r") == 1
        assert len(c) <= 61  # keys used in the current or the previous 30 s bucket
    assert c.add("t499", "r2") == 2  # a live key still counts its members
    many = MemoryCounter(1e9, max_keys=100, clock=lambda: 0.0)
    for i in range(1000):
        many.add(f"k{i}", "r")
    assert len(many) == 100  # and the hard bound holds within one window


def test_per_client_state_is_bounded() -> None:
    limits.apply(LimitsSettings(client_state_max=100))
    rates = limits.per_minute(2)
    assert rates is not None and limits.per_minute(0) is None
    for i in range(5000):  # address churn
        rates.take(f"192.0.2.{i}")
    assert len(rates._buckets) == 100
    assert rates.take("a") == 0.0 and rates.take("a") == 0.0 and rates.take("a") > 0


# -- SMTP filter ----------------------------------------------------------------------------


async def smtp_rig(settings: Settings, sink: Sink, **smtp: Any) -> tuple[Gateway, Any]:
    s = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
        "listen": "127.0.0.1:0", "next_hop": f"127.0.0.1:{sink.port}", **smtp})})
    gw = Gateway.create(s)
    await gw.start()
    svc = await smtp_ingress.start(gw)
    assert svc is not None
    return gw, svc


HAM = (b"From: a@example.org\r\nTo: user@example.test\r\nSubject: lunch\r\n"
       b"Message-ID: <1@example.org>\r\n\r\nSee you at 7\r\n")


async def send(port: int, raw: bytes) -> tuple[int, str]:
    try:
        _, reply = await aiosmtplib.send(raw, sender="a@example.org", recipients=["user@example.test"],
                                         hostname="127.0.0.1", port=port, timeout=20)
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return 250, reply


async def test_smtp_header_count_size_and_message_size(settings: Settings) -> None:
    s = with_limits(settings, header_max_count=20, header_max_bytes=2000)
    with Sink() as sink:
        gw, svc = await smtp_rig(s, sink, max_message_size=20_000)
        try:
            assert (await send(svc.port, HAM))[0] == 250
            many = b"".join(b"X-N%d: v\r\n" % i for i in range(30)) + HAM
            assert await send(svc.port, many) == (552, "5.3.4 Message header too big")
            big = b"X-Big: " + b"a" * 3000 + b"\r\n" + HAM
            assert await send(svc.port, big) == (552, "5.3.4 Message header too big")
            folded = b"X-Folded: a\r\n" + b" b\r\n" * 15 + HAM  # continuation lines are one field
            assert (await send(svc.port, folded))[0] == 250
            huge = HAM + b"x" * 30_000 + b"\r\n"
            code, text = await send(svc.port, huge)
            assert (code, text.split()[0]) == (552, "5.3.4")
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=svc.port, timeout=10) as c:
                r = await c.execute_command(b"MAIL FROM:<a@example.org> SIZE=99999")
                assert (r.code, r.message.split()[0]) == (552, "5.3.4")
            assert len(sink.messages) == 2  # only the two within the limits
        finally:
            await svc.stop()
            await gw.close()


async def test_smtp_per_client_connection_rate_421(settings: Settings) -> None:
    with Sink() as sink:
        gw, svc = await smtp_rig(settings, sink, rate_limit_per_minute=3)
        try:
            greetings = []
            for _ in range(5):
                r, w = await asyncio.open_connection("127.0.0.1", svc.port)
                greetings.append((await asyncio.wait_for(r.readline(), 5)).decode().strip())
                w.close()
            assert [g[:3] for g in greetings] == ["220", "220", "220", "421", "421"]
            assert greetings[3].startswith("421 4.7.0")
        finally:
            await svc.stop()
            await gw.close()


async def test_smtp_per_client_message_rate_450(settings: Settings) -> None:
    with Sink() as sink:
        gw, svc = await smtp_rig(settings, sink, message_rate_per_minute=2)
        try:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=svc.port, timeout=10) as c:
                codes = []
                for _ in range(4):
                    r = await c.execute_command(b"MAIL FROM:<a@example.org>")
                    codes.append((r.code, r.message.split()[0]))
                    await c.execute_command(b"RSET")
            assert codes == [(250, "OK"), (250, "OK"), (450, "4.7.1"), (450, "4.7.1")]
        finally:
            await svc.stop()
            await gw.close()


async def test_smtp_removes_forged_authentication_results(settings: Settings) -> None:
    forged = (b"Authentication-Results: mamori.localhost; spf=pass smtp.mailfrom=paypal.com;\r\n"
              b"  dkim=pass header.d=paypal.com\r\n"
              b"Authentication-Results: mx.other.example; spf=fail\r\n")
    with Sink() as sink:
        gw, svc = await smtp_rig(settings, sink)
        try:
            assert (await send(svc.port, forged + HAM))[0] == 250
            (relayed,) = sink.messages
            data = relayed if isinstance(relayed, bytes) else relayed[-1]
            assert b"smtp.mailfrom=paypal.com" not in data
            assert b"Authentication-Results: mx.other.example; spf=fail" in data
        finally:
            await svc.stop()
            await gw.close()


def test_authserv_id_parsing() -> None:
    assert authserv_id_of("mamori.localhost; spf=pass") == "mamori.localhost"
    assert authserv_id_of(" (forged) MAMORI.localhost 1 ; none") == "mamori.localhost"
    assert authserv_id_of("") == ""
    raw = b"Authentication-Results: MAMORI.LOCALHOST; spf=pass\nSubject: x\n\nbody\n"
    assert strip_forged(raw, "mamori.localhost") == b"Subject: x\n\nbody\n"
    assert strip_forged(raw, "other.example") == raw


# -- milter ---------------------------------------------------------------------------------


async def mail_reply(client: mc.MilterClient, sender: str) -> tuple[bytes, str]:
    client.writer.write(mc.encode_strings(mc.SMFIC_MAIL, [f"<{sender}>"]))
    await client.writer.drain()
    pkt = await mc.read_packet(client.reader)
    assert pkt is not None
    cmd, data = pkt
    return cmd, mc.split_strings(data)[0] if cmd == mc.SMFIR_REPLYCODE else ""


async def test_milter_per_client_rate_by_connect_macro(milter_rig) -> None:
    async with milter_rig(client_rate_per_minute=2) as rig:
        # one MTA connection carries SMTP sessions of two clients: counted apart by the macro
        client = await mc.MilterClient.open(rig.address)
        try:
            for addr, expect in (("198.51.100.1", [True, True, False]), ("198.51.100.2", [True])):
                await client.connect("mx.sender.test", "127.0.0.1", 40000,
                                     macros={"client_addr": addr, "j": "mx.example.test"})
                for ok in expect:
                    cmd, reply = await mail_reply(client, "a@sender.test")
                    if ok:
                        assert cmd == mc.SMFIR_CONTINUE, (addr, reply)
                        client.writer.write(mc.encode(mc.SMFIC_ABORT))
                    else:
                        assert cmd == mc.SMFIR_REPLYCODE and reply.startswith("451 4.7.1"), reply
        finally:
            await client.close()


async def test_milter_header_limits_reply_552(milter_rig, settings: Settings) -> None:
    limits.apply(LimitsSettings(header_max_count=10))
    async with milter_rig() as rig:
        limits.apply(LimitsSettings(header_max_count=10))  # the rig's gateway applied its own
        client = await mc.MilterClient.open(rig.address)
        try:
            await client.connect("mx.sender.test", "192.0.2.7", 40000)
            many = [*HAM_HEADERS, *((f"X-N{i}", "v") for i in range(20))]
            res = await client.message("a@sender.test", ["bob@example.test"], many, HAM_BODY)
            assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("552 5.3.4"), res
            res = await client.message("a@sender.test", ["bob@example.test"], HAM_HEADERS, HAM_BODY)
            assert res.final == mc.SMFIR_ACCEPT
        finally:
            await client.close()


async def test_milter_removes_forged_authentication_results(milter_rig) -> None:
    async with milter_rig() as rig:
        headers = [("Authentication-Results", "elsewhere.example; spf=pass"),
                   ("Authentication-Results", "mamori.localhost; spf=pass smtp.mailfrom=bank.test"),
                   *HAM_HEADERS,
                   ("Authentication-Results", "(x) Mamori.Localhost; dkim=pass")]
        client = await mc.MilterClient.open(rig.address)
        try:
            await client.connect("mx.sender.test", "192.0.2.7", 40000)
            res = await client.message("a@sender.test", ["bob@example.test"], headers, HAM_BODY)
        finally:
            await client.close()
        assert res.final == mc.SMFIR_ACCEPT
        assert res.changed_headers == [(3, "Authentication-Results", ""),
                                       (2, "Authentication-Results", "")]


# -- SMS HTTP hook --------------------------------------------------------------------------

SMS_KEY = "limits-sms-key"


@pytest.fixture
async def hook(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    s = with_limits(settings, sms_batch_max=3, sms_text_max=100, sms_body_max=4000)
    s = s.model_copy(update={"api": s.api.model_copy(update={"keys": {SMS_KEY: ["sms:check"]}})})
    gw = Gateway.create(s, events=MemorySink())
    await gw.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw)),
                                 base_url="http://testserver",
                                 headers={"Authorization": f"Bearer {SMS_KEY}"}) as c:
        yield c
    await gw.close()


async def test_sms_hook_batch_text_and_body_limits(hook: httpx.AsyncClient) -> None:
    one = {"sender": "+819011112222", "recipient": "+818033334444", "text": "See you at 7"}
    assert (await hook.post("/v1/sms/check-batch", json=[one] * 3)).status_code == 200
    r = await hook.post("/v1/sms/check-batch", json=[one] * 4)
    assert r.status_code == 422 and r.json() == {"detail": "at most 3 messages per batch"}
    r = await hook.post("/v1/sms/check", json={**one, "text": "x" * 101})
    assert r.status_code == 422 and r.json() == {"detail": "text longer than 100 characters"}
    r = await hook.post("/v1/sms/check", json={**one, "text": None, "payload": "41" * 101})
    assert r.status_code == 422 and r.json() == {"detail": "payload longer than 100 octets"}
    assert (await hook.post("/v1/sms/check", json={**one, "text": "x" * 100})).status_code == 200
    r = await hook.post("/v1/sms/check-batch", json=[{**one, "text": "y" * 90}] * 60)
    assert r.status_code == 413 and r.json()["detail"].startswith("request body larger than")


def test_token_cache_is_bounded_by_the_setting() -> None:
    from gateway.learn import features

    limits.apply(LimitsSettings(token_cache_size=10))
    features._TOKEN_IDS.clear()
    ids = [features._token_hash(f"token{i}") for i in range(100)]
    assert len(features._TOKEN_IDS) == 10
    assert ids == [features._token_hash(f"token{i}") for i in range(100)]  # same answers
    features._TOKEN_IDS.clear()


async def test_policy_cache_is_bounded_by_the_setting(settings: Settings) -> None:
    s = settings.model_copy(update={"store": settings.store.model_copy(
        update={"policy_cache_size": 5})})
    gw = Gateway.create(s)
    await gw.start()
    try:
        assert gw.stores is not None
        for i in range(20):  # stored policies are cached (the defaults need no entry)
            await gw.stores.policies.put(Policy(subscriber=f"+8180{i:08d}", youth=True))
        for i in range(20):
            assert (await gw.policy_for(f"+8180{i:08d}")).youth is True
        assert len(gw.stores.policies._cache) == 5
        await gw.policy_for("+818099999999")  # nothing stored: not cached
        assert len(gw.stores.policies._cache) == 5 and "+818099999999" not in gw.stores.policies._cache
    finally:
        await gw.close()
