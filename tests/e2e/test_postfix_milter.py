"""mamori as the milter of a real Postfix (scripts/services/postfix.sh): ham is delivered with
mamori's headers, fraud is rejected with mamori's reply text, quarantined mail waits in the hold
queue, and two recipients of different policies are each treated by their own policy."""

from __future__ import annotations

import asyncio
import json
import smtplib
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.ingress.milter import MilterService
from gateway.policy import Policy
from gateway.runtime import Gateway
from gateway.verdict import Action
from tests.conftest import service_env
from tests.ingress.milter_support import (
    Captured,
    FailingPolicyStore,
    HeaderVerdictCheck,
    make_gateway,
)

pytestmark = pytest.mark.e2e

SENDER = "alice@sender.test"
FRAUDSTER = "billing@fraud.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
WAIT = 60.0  # upper bound for Postfix to finish a message (polling, not a timing assertion)


@dataclass
class PostfixRig:
    host: str
    port: int
    dir: Path
    captured: Captured
    gw: Gateway
    check: HeaderVerdictCheck

    @property
    def etc(self) -> str:
        return str(self.dir / "etc")


@pytest.fixture(scope="session")
def postfix_env() -> tuple[str, Path, str]:
    # read before the `settings` fixture clears MAMORI_* from the environment
    return (service_env("MAMORI_TEST_POSTFIX"), Path(service_env("MAMORI_TEST_POSTFIX_DIR")),
            service_env("MAMORI_TEST_POSTFIX_MILTER"))


@asynccontextmanager
async def running(postfix_env: tuple[str, Path, str], settings: Settings,
                  **milter: object) -> AsyncIterator[PostfixRig]:
    """mamori's milter on the socket the Postfix instance uses, with these milter settings."""
    addr, pdir, milter_addr = postfix_env
    ms = settings.milter.model_copy(update={"listen": milter_addr, "socket_mode": "0666", **milter})
    s = settings.model_copy(update={"milter": ms})
    gw, check, captured = make_gateway(s)
    await gw.start()
    service = MilterService(gw)
    await service.start()
    host, _, port = addr.rpartition(":")
    try:
        yield PostfixRig(host, int(port), pdir, captured, gw, check)
    finally:
        check.gate.set()
        await service.stop()
        await gw.close()


@pytest.fixture
async def postfix(postfix_env: tuple[str, Path, str], settings: Settings) -> AsyncIterator[PostfixRig]:
    async with running(postfix_env, settings) as rig:
        yield rig


def _raw(sender: str, rcpts: list[str], token: str, extra: str = "", subject: str = "hello") -> bytes:
    return (
        f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: <{token}@sender.test>\r\n{extra}\r\n"
        f"Hello,\r\nsee you on Friday. {token}\r\n"
    ).encode()


def _smtp(rig: PostfixRig, sender: str, rcpts: list[str], raw: bytes) -> tuple[int, str]:
    """One SMTP transaction; the reply to DATA (code, text)."""
    with smtplib.SMTP(rig.host, rig.port, timeout=WAIT) as smtp:
        smtp.ehlo("client.sender.test")
        code, _ = smtp.mail(sender)
        assert code == 250
        for r in rcpts:
            code, _ = smtp.rcpt(r)
            assert code == 250
        code, text = smtp.data(raw)
        return code, text.decode()


async def send(rig: PostfixRig, sender: str, rcpts: list[str], raw: bytes) -> tuple[int, str]:
    # Postfix calls back into our milter on this event loop: the SMTP client runs in a thread
    return await asyncio.to_thread(_smtp, rig, sender, rcpts, raw)


def _queue_id(text: str) -> str:
    assert "queued as" in text, text
    return text.rsplit("queued as", 1)[1].strip()


async def wait_removed(rig: PostfixRig, qid: str) -> None:
    """Until Postfix logs that the message left its queue (delivered to every recipient)."""
    log = rig.dir / "maillog"
    for _ in range(int(WAIT * 10)):
        if log.exists() and f"{qid}: removed" in log.read_text(errors="replace"):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"Postfix did not finish {qid}")


def delivered(rig: PostfixRig, token: str) -> list[str]:
    inbox = rig.dir / "vmail" / "inbox"
    out = []
    for sub in ("new", "cur"):
        for f in sorted((inbox / sub).glob("*")) if (inbox / sub).is_dir() else []:
            text = f.read_text(errors="replace")
            if token in text:
                out.append(text)
    return out


def header_of(text: str, name: str) -> list[str]:
    head = text.split("\n\n", 1)[0]
    return [line.split(":", 1)[1].strip() for line in head.splitlines()
            if line.lower().startswith(name.lower() + ":")]


def postqueue(rig: PostfixRig) -> list[dict[str, object]]:
    out = subprocess.run(["postqueue", "-c", rig.etc, "-j"], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


async def test_ham_is_delivered_with_mamori_headers(postfix: PostfixRig) -> None:
    token = uuid.uuid4().hex
    code, text = await send(postfix, SENDER, [BOB], _raw(SENDER, [BOB], token,
                                                         extra="X-Mamori-Action: accept\r\n"))
    assert code == 250
    await wait_removed(postfix, _queue_id(text))
    (mail,) = delivered(postfix, token)
    assert header_of(mail, "Delivered-To") == [BOB]
    # delivered (the classifier may tag a two-line mail with a random token: still delivered)
    assert header_of(mail, "X-Mamori-Action") in (["accept"], ["tag"])  # the spoofed one is gone
    assert header_of(mail, "X-Mamori-Score") == ["0.00"]
    assert header_of(mail, "X-Mamori-Symbols") == []  # no symbol hit
    (msg, verdict, _), = postfix.captured.verdicts
    assert verdict.action is Action.ACCEPT and msg.recipients == (BOB,)
    assert msg.protocol.get("i") == _queue_id(text)  # Postfix's queue id macro came through
    assert msg.peer.ip == "127.0.0.1" and msg.peer.helo == "client.sender.test"


async def test_a_body_of_many_chunks_is_scanned_up_to_the_limit_and_delivered_whole(
    postfix_env: tuple[str, Path, str], settings: Settings
) -> None:
    """Postfix sends a 300 KB body in 64 KB chunks without waiting for replies (NR_BODY):
    mamori keeps max_body_size of it for the scan, drops the rest, and the mail is delivered
    whole."""
    token = uuid.uuid4().hex
    line = ("lorem ipsum dolor sit amet " * 3 + "\r\n").encode()
    body = line * (300_000 // len(line)) + f"end {token}\r\n".encode()
    raw = _raw(SENDER, [BOB], token) + body
    async with running(postfix_env, settings, max_body_size=100_000) as rig:
        code, text = await send(rig, SENDER, [BOB], raw)
        assert code == 250
        await wait_removed(rig, _queue_id(text))
        (mail,) = delivered(rig, token)
        assert f"end {token}" in mail and mail.count("lorem ipsum") == 3 * (300_000 // len(line))
        (msg, _, _), = rig.captured.verdicts
        assert len(msg.body) == 100_000 and msg.protocol["truncated"] == "1"


async def test_fraud_is_rejected_with_mamori_reply(postfix: PostfixRig) -> None:
    await postfix.gw.policies.put(Policy(subscriber=BOB, block=frozenset({"fraud.test"})))
    token = uuid.uuid4().hex
    code, text = await send(postfix, FRAUDSTER, [BOB], _raw(FRAUDSTER, [BOB], token))
    assert code == 550
    assert "5.7.1 Message rejected as spam or fraud by mamori (ref " in text
    (_, verdict, _), = postfix.captured.verdicts
    assert verdict.action is Action.REJECT and "POLICY_BLOCKLIST" in verdict.symbols


async def test_quarantined_mail_waits_in_the_hold_queue(postfix: PostfixRig) -> None:
    token = uuid.uuid4().hex
    raw = _raw(SENDER, [CAROL], token, extra="X-Test-Verdict: quarantine\r\n")
    code, text = await send(postfix, SENDER, [CAROL], raw)
    assert code == 250
    qid = _queue_id(text)
    try:
        held = [e for e in postqueue(postfix) if e.get("queue_id") == qid]
        assert held and held[0]["queue_name"] == "hold"
        assert [r["address"] for r in held[0]["recipients"]] == [CAROL]  # type: ignore[index]
        shown = subprocess.run(["postcat", "-c", postfix.etc, "-hq", qid], capture_output=True,
                               text=True, check=True).stdout
        assert "X-Mamori-Action: quarantine" in shown
        assert "TEST_QUARANTINE(10.00)" in shown
        assert delivered(postfix, token) == []
    finally:
        subprocess.run(["postsuper", "-c", postfix.etc, "-d", qid, "hold"], capture_output=True)


async def test_two_recipients_each_by_their_own_policy(postfix: PostfixRig) -> None:
    """Bob blocks the sender, Carol does not: Carol gets the mail, Bob does not and his copy
    goes to the verdict hooks (the quarantine store) with his reject verdict."""
    await postfix.gw.policies.put(Policy(subscriber=BOB, block=frozenset({SENDER})))
    token = uuid.uuid4().hex
    bob = "Bob@Example.test"  # as a client may spell it: still Bob's policy, still removed
    code, text = await send(postfix, SENDER, [bob, CAROL], _raw(SENDER, [bob, CAROL], token))
    assert code == 250
    await wait_removed(postfix, _queue_id(text))
    mails = delivered(postfix, token)
    assert [header_of(m, "Delivered-To") for m in mails] == [[CAROL]]
    assert header_of(mails[0], "X-Mamori-Action") == ["accept"]
    verdicts = {m.recipients: v for m, v, _ in postfix.captured.verdicts}
    assert verdicts[(bob,)].action is Action.REJECT and verdicts[(bob,)].subscriber == BOB
    (kept, _), = postfix.gw.quarantine.items  # type: ignore[union-attr]
    assert kept.recipients == (bob,) and token.encode() in kept.body
    assert verdicts[(CAROL,)].action is Action.ACCEPT


async def test_mamori_failure_tempfails_the_client(postfix: PostfixRig) -> None:
    token = uuid.uuid4().hex
    rcpt = FailingPolicyStore.BROKEN
    code, text = await send(postfix, SENDER, [rcpt], _raw(SENDER, [rcpt], token))
    assert code == 451 and "4.3.0" in text


async def test_local_submission_goes_through_the_milter(postfix: PostfixRig) -> None:
    """non_smtpd_milters: mail from `sendmail` (pickup) is scanned too."""
    token = uuid.uuid4().hex
    raw = _raw(SENDER, [CAROL], token, extra="X-Test-Verdict: tag\r\n").replace(b"\r\n", b"\n")
    await asyncio.to_thread(
        subprocess.run, ["sendmail", "-C", postfix.etc, "-f", SENDER, CAROL], input=raw, check=True)
    for _ in range(int(WAIT * 10)):
        mails = delivered(postfix, token)
        if mails:
            break
        await asyncio.sleep(0.1)
    (mail,) = mails
    assert header_of(mail, "X-Mamori-Action") == ["tag"]
    assert "TEST_TAG(6.00)" in header_of(mail, "X-Mamori-Symbols")[0]


async def test_overloaded_mamori_tempfails_through_postfix(
    postfix_env: tuple[str, Path, str], settings: Settings
) -> None:
    """Back-pressure: with one scan slot busy, the next message is deferred with 451 4.3.2
    and the busy one is still delivered."""
    async with running(postfix_env, settings, max_inflight=1, queue_timeout=0.2) as rig:
        held = uuid.uuid4().hex
        first = asyncio.create_task(send(rig, SENDER, [BOB], _raw(SENDER, [BOB], held,
                                                                  extra="X-Test-Verdict: gate\r\n")))
        while rig.check.entered == 0:
            await asyncio.sleep(0.01)
        code, text = await send(rig, SENDER, [CAROL], _raw(SENDER, [CAROL], uuid.uuid4().hex))
        assert code == 451 and "4.3.2" in text
        rig.check.gate.set()
        code, text = await first
        assert code == 250
        await wait_removed(rig, _queue_id(text))
        assert len(delivered(rig, held)) == 1


async def test_connection_limit_tempfails_the_smtp_session(
    postfix_env: tuple[str, Path, str], settings: Settings
) -> None:
    """Over max_connections, the message is tempfailed unscanned: at end of data (mamori asks
    Postfix for no reply before it), or at MAIL when a client rate limit gives MAIL a reply."""
    raw = (f"From: <{SENDER}>\r\nTo: <{BOB}>\r\nSubject: busy\r\n"
           f"Date: {formatdate()}\r\n\r\nhello\r\n").encode()
    async with running(postfix_env, settings, max_connections=0) as rig:

        def whole() -> tuple[int, bytes]:
            with smtplib.SMTP(rig.host, rig.port, timeout=WAIT) as smtp:
                smtp.ehlo("client.sender.test")
                try:
                    smtp.sendmail(SENDER, [BOB], raw)
                except smtplib.SMTPDataError as exc:
                    return exc.smtp_code, exc.smtp_error
                return 250, b"accepted"

        code, text = await asyncio.to_thread(whole)
        assert code == 451 and b"4.3.2" in text
        assert rig.captured.verdicts == []
    async with running(postfix_env, settings, max_connections=0, client_rate_per_minute=100) as rig:

        def session() -> tuple[int, bytes]:
            with smtplib.SMTP(rig.host, rig.port, timeout=WAIT) as smtp:
                smtp.ehlo("client.sender.test")
                return smtp.mail(SENDER)

        code, text = await asyncio.to_thread(session)
        assert code == 451 and b"4.3.2" in text
        assert rig.captured.verdicts == []


async def test_installed_pipeline_adds_authentication_results(
    postfix_env: tuple[str, Path, str], settings: Settings, tmp_path: Path
) -> None:
    """`Gateway.create` with every installed check (the auth checks answer DNS from a zone
    file): the delivered mail carries Authentication-Results with the SPF result for the
    connecting IP that Postfix handed over, and the X-Mamori-* headers."""
    from gateway.events import MemorySink
    from gateway.store.policy import MemoryPolicyStore
    from tests.ingress.milter_support import MemoryQuarantine

    addr, pdir, milter_addr = postfix_env
    zone = tmp_path / "zone.yml"
    zone.write_text("zonedata:\n  sender.test:\n    - TXT: v=spf1 ip4:127.0.0.1 -all\n")
    s = settings.model_copy(update={
        "milter": settings.milter.model_copy(update={"listen": milter_addr, "socket_mode": "0666"}),
        "auth": settings.auth.model_copy(update={"zone_file": str(zone), "reports": False,
                                                 "authserv_id": "mx.example.test"}),
    })
    gw = Gateway.create(s, events=MemorySink(), policies=MemoryPolicyStore())
    gw.quarantine = MemoryQuarantine()
    await gw.start()
    service = MilterService(gw)
    await service.start()
    host, _, port = addr.rpartition(":")
    rig = PostfixRig(host, int(port), pdir, Captured(), gw, HeaderVerdictCheck())
    try:
        token = uuid.uuid4().hex
        code, text = await send(rig, SENDER, [BOB], _raw(SENDER, [BOB], token))
        assert code == 250
        await wait_removed(rig, _queue_id(text))
    finally:
        await service.stop()
        await gw.close()
    (mail,) = delivered(rig, token)
    (authres,) = header_of(mail, "Authentication-Results")
    assert authres.startswith("mx.example.test;") and "spf=pass" in authres
    # delivered (the classifier may tag a two-line mail with a random token: still delivered)
    assert header_of(mail, "X-Mamori-Action") in (["accept"], ["tag"])
