"""The SMTP content filter over real sockets: smtplib client -> mamori -> aiosmtpd next hop."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer

from gateway.config import Settings
from gateway.events import MemorySink
from gateway.ingress import smtp as smtp_ingress
from gateway.policy import Policy
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore

HAM = (b"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
       b"Date: Thu, 26 Nov 2026 10:00:00 +0900\r\nMessage-ID: <1@example.org>\r\n\r\n"
       b"See you at noon.\r\n")


class LongLineSMTPServer(SMTPServer):
    line_length_limit = 64 * 1024  # like Postfix, the next hop takes long lines


@dataclass
class Sink:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 stored"


@dataclass
class Rig:
    gw: Gateway
    port: int
    sink: Sink
    sink_server: asyncio.base_events.Server


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    sink = Sink()
    sink_server = await loop.create_server(lambda: LongLineSMTPServer(sink), "127.0.0.1", 0)
    sink_port = sink_server.sockets[0].getsockname()[1]
    s = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
        "listen": "127.0.0.1:0", "next_hop": f"127.0.0.1:{sink_port}", "max_message_size": 200_000})})
    gw = Gateway.create(s, events=MemorySink(), policies=MemoryPolicyStore())
    await gw.start()
    svc = await smtp_ingress.start(gw)
    assert svc is not None
    yield Rig(gw, svc.port, sink, sink_server)
    await svc.stop()
    await gw.close()
    sink_server.close()


def send(port: int, data: bytes, rcpts: list[str], sender: str = "alice@example.org") -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        return c.sendmail(sender, rcpts, data)


async def test_ham_is_relayed_with_headers(rig: Rig) -> None:
    refused = await asyncio.to_thread(send, rig.port, HAM, ["bob@example.test"])
    assert refused == {}
    (mail_from, rcpts, data), = rig.sink.messages
    assert mail_from == "alice@example.org" and rcpts == ["bob@example.test"]
    assert b"X-Mamori-Action: accept" in data and b"X-Mamori-Score: " in data
    assert data.endswith(b"See you at noon.\r\n")
    stream, key, event = rig.gw.events.events[0]  # type: ignore[attr-defined]
    assert stream == "verdicts" and event["action"] == "accept"
    assert "bob@example.test" not in str(event) and key and key.startswith("h1:")


async def test_null_sender_bounce_is_relayed(rig: Rig) -> None:
    refused = await asyncio.to_thread(send, rig.port, HAM, ["bob@example.test"], "")
    assert refused == {}
    (mail_from, rcpts, data), = rig.sink.messages
    assert mail_from == "<>" and rcpts == ["bob@example.test"]
    assert b"X-Mamori-Action: accept" in data


async def test_blocked_sender_gets_5xx_and_is_not_relayed(rig: Rig) -> None:
    await rig.gw.policies.put(Policy(subscriber="bob@example.test",
                                     block=frozenset({"example.org"})))
    with pytest.raises(smtplib.SMTPDataError) as err:
        await asyncio.to_thread(send, rig.port, HAM, ["bob@example.test"])
    assert err.value.smtp_code == 550
    assert b"5.7.1" in err.value.smtp_error
    assert rig.sink.messages == []


async def test_recipients_with_different_policies_are_split(rig: Rig) -> None:
    await rig.gw.policies.put(Policy(subscriber="carol@example.test", youth=True))
    refused = await asyncio.to_thread(send, rig.port, HAM, ["bob@example.test", "carol@example.test"])
    assert refused == {"carol@example.test": (452, b"4.5.3 Recipient policy differs, send it in a separate transaction")}
    assert [m[1] for m in rig.sink.messages] == [["bob@example.test"]]
    await asyncio.to_thread(send, rig.port, HAM, ["carol@example.test"])
    assert [m[1] for m in rig.sink.messages] == [["bob@example.test"], ["carol@example.test"]]


async def test_next_hop_down_is_a_tempfail(rig: Rig) -> None:
    rig.sink_server.close()
    await rig.sink_server.wait_closed()
    with pytest.raises(smtplib.SMTPDataError) as err:
        await asyncio.to_thread(send, rig.port, HAM, ["bob@example.test"])
    assert err.value.smtp_code == 451


async def test_oversize_is_refused_with_552(rig: Rig) -> None:
    big = HAM + b"x" * 300_000 + b"\r\n"
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused,
                        smtplib.SMTPServerDisconnected)) as err:
        await asyncio.to_thread(send, rig.port, big, ["bob@example.test"])
    if isinstance(err.value, smtplib.SMTPDataError | smtplib.SMTPSenderRefused):
        assert err.value.smtp_code == 552
    assert rig.sink.messages == []


async def test_garbage_body_is_answered_not_crashed(rig: Rig) -> None:
    line = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"")[:200]
    garbage = (line + b"\r\n") * 20
    try:
        await asyncio.to_thread(send, rig.port, garbage, ["bob@example.test"])
        action = rig.gw.events.events[-1][2]["action"]  # type: ignore[attr-defined]
        # relayed, or held in quarantine (answered 250 once stored)
        assert len(rig.sink.messages) == (0 if action == "quarantine" else 1), action
    except smtplib.SMTPDataError as exc:  # or judged: a policy answer, never an internal failure
        assert exc.smtp_code == 550, exc
        assert rig.sink.messages == []
    # and the filter still serves
    await asyncio.to_thread(send, rig.port, HAM, ["bob@example.test"])
    assert rig.sink.messages[-1][1] == ["bob@example.test"]


async def test_switched_off_without_listen(settings: Settings) -> None:
    s = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"listen": ""})})
    gw = Gateway.create(s, events=MemorySink(), policies=MemoryPolicyStore())
    assert await smtp_ingress.start(gw) is None


async def test_long_lines_are_accepted(rig: Rig) -> None:
    long_line = HAM.replace(b"See you at noon.", b"word " * 1000)
    refused = await asyncio.to_thread(send, rig.port, long_line, ["bob@example.test"])
    assert refused == {}
    action = rig.gw.events.events[-1][2]["action"]  # type: ignore[attr-defined]
    assert len(rig.sink.messages) == (0 if action == "quarantine" else 1)
