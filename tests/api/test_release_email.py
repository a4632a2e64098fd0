"""Release of quarantined email re-injects it by SMTP (MAMORI_STORE__RELEASE_SMTP) into a real
SMTP server (aiosmtpd on loopback); a failed re-injection leaves it held."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from gateway.api.server import create_app
from gateway.config import Settings, load_settings
from gateway.message import Message

from .conftest import bearer, make_settings, open_gateway, token
from .server_thread import free_port

SUB = "mail-user-1"
RAW = (b"From: Parcel Service <notice@bad.example>\r\nTo: user@example.test\r\n"
       b"Subject: Your parcel\r\nMessage-ID: <abc@bad.example>\r\n\r\nPay the fee now.\r\n")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    yield sink, port
    ctl.stop()


async def quarantined_email(settings: Settings, release_smtp: str
                            ) -> tuple[Any, httpx.AsyncClient, str]:
    base = make_settings(settings, "")
    s = load_settings(**{**base.model_dump(), "store": {**base.store.model_dump(),
                                                        "release_smtp": release_smtp}})
    gw, _ = await open_gateway(s)
    assert gw.stores is not None
    from gateway.policy import Policy

    await gw.stores.policies.put(Policy(subscriber=SUB, block=frozenset({"bad.example"})))
    msg = Message.email(RAW, sender="bounce@bad.example", recipients=("user@example.test",),
                        subscriber=SUB)
    assert (await gw.process(msg, ingress="smtp")).action.blocks
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw)),
                               base_url="http://t")
    return gw, client, msg.id


async def test_release_reinjects_email(settings: Settings,
                                       smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    gw, client, mid = await quarantined_email(settings, f"127.0.0.1:{port}")
    try:
        item = (await client.get(f"/v1/subscribers/{SUB}/quarantine",
                                 headers=bearer(token(SUB)))).json()["items"][0]
        assert item["channel"] == "email" and item["preview"] == "Your parcel"
        r = await client.post(f"/v1/subscribers/{SUB}/quarantine/{mid}/release",
                              headers=bearer(token(SUB)))
        assert r.status_code == 200 and r.json()["redelivered"] is True
        [(mail_from, rcpts, content)] = sink.got
        assert mail_from == "bounce@bad.example" and rcpts == ["user@example.test"]
        assert b"Subject: Your parcel" in content and b"Pay the fee now." in content
        # released once: a second release delivers nothing more
        r = await client.post(f"/v1/subscribers/{SUB}/quarantine/{mid}/release",
                              headers=bearer(token(SUB)))
        assert r.status_code == 200 and r.json()["redelivered"] is False and len(sink.got) == 1
    finally:
        await client.aclose()
        await gw.close()


async def test_failed_reinjection_keeps_the_message(settings: Settings) -> None:
    gw, client, mid = await quarantined_email(settings, f"127.0.0.1:{free_port()}")  # closed
    try:
        r = await client.post(f"/v1/subscribers/{SUB}/quarantine/{mid}/release",
                              headers=bearer(token(SUB)))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "Traceback" not in r.text and "127.0.0.1" not in r.text
        assert gw.stores is not None
        item = await gw.stores.quarantine.get(SUB, mid)
        assert item is not None and item.status == "held"
    finally:
        await client.aclose()
        await gw.close()
