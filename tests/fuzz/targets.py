"""Fuzz targets: one function per parser that reads attacker-controlled bytes.

Each target takes arbitrary bytes and feeds them to the real parsing code the ingress uses.
Errors the parser raises on purpose for bad input (the ones the ingress maps to a protocol
reply) are expected; anything else escaping a target is a crash. The same targets run under
hypothesis (tests/fuzz/test_fuzz_parsers.py, bounded) and under atheris (scripts/fuzz.sh,
coverage-guided, `python -m tests.fuzz.atheris_main TARGET SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from fastapi import HTTPException
from pydantic import ValidationError

from gateway.checks.structure import EmailStructureCheck
from gateway.errors import InputError
from gateway.ingress import milter_codec as mc
from gateway.ingress import smpp_pdu as P
from gateway.message import Message, ScanContext, split_header_block
from gateway.policy import DEFAULT_POLICY
from gateway.urls.canon import UrlError, canonicalize
from gateway.urls.extract import extract_urls


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# -- milter ------------------------------------------------------------------------------

def milter(data: bytes) -> None:
    """Packets as the MTA sends them, each decoded the way MilterSession._dispatch does."""
    try:
        packets = mc.PacketDecoder(max_size=1 << 16).feed(data)
    except mc.MilterProtocolError:
        return
    for cmd, body in packets:
        try:
            if cmd == mc.SMFIC_OPTNEG:
                mc.parse_optneg(body)
            elif cmd == mc.SMFIC_MACRO:
                stage, macros = mc.parse_macros(body)
                assert isinstance(stage, bytes) and all(isinstance(v, str) for v in macros.values())
            elif cmd == mc.SMFIC_CONNECT:
                mc.parse_connect(body)
            elif cmd in (mc.SMFIC_HELO, mc.SMFIC_MAIL, mc.SMFIC_RCPT):
                for s in mc.split_strings(body):
                    mc.strip_angle(s)
            elif cmd == mc.SMFIC_HEADER:
                name, _value = mc.parse_header(body)
                assert name
        except InputError:  # MilterProtocolError: the session closes the connection
            continue


# -- SMPP --------------------------------------------------------------------------------

def smpp(data: bytes) -> None:
    """A PDU stream from an ESME or an SMSC, each PDU parsed as the proxy parses it."""
    from gateway.ingress.smpp import concat_info, user_text

    dec = P.FrameDecoder()
    try:
        pdus = dec.feed(data)
    except P.PduError:
        return
    for pdu in pdus:
        try:
            cid = pdu.command_id
            if cid in (P.BIND_TRANSMITTER, P.BIND_RECEIVER, P.BIND_TRANSCEIVER):
                P.parse_bind(pdu.body)
            elif cid in (P.SUBMIT_SM, P.DELIVER_SM, P.DATA_SM):
                sm = P.parse_data_sm(pdu.body) if cid == P.DATA_SM else P.parse_short_message(pdu.body)
                concat_info(sm)
                assert isinstance(user_text(sm), str)
                sm.is_receipt  # noqa: B018
            elif cid == P.QUERY_SM:
                P.validate_query_sm(pdu.body)
            elif cid == P.CANCEL_SM:
                P.validate_cancel_sm(pdu.body)
            elif cid in (P.SUBMIT_SM_RESP, P.DATA_SM_RESP):
                P.parse_message_id_resp(pdu.body)
            P.reframe(pdu, 1)
        except P.PduError:  # answered with the PDU's error status or generic_nack
            continue


# -- SMTP dialogue (aiosmtpd, the filter's own subclass, in process) ---------------------

_smtp_loop: asyncio.AbstractEventLoop | None = None


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _NullHandler:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 OK"


def smtp(data: bytes) -> None:
    """A client's side of an SMTP dialogue, in as many pieces as it has lines."""
    global _smtp_loop
    from gateway.ingress.smtp import _LimitedSMTP

    if _smtp_loop is None:
        _smtp_loop = asyncio.new_event_loop()
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd echoes bad commands
    loop = _smtp_loop

    async def session() -> None:
        proto = _LimitedSMTP(_NullHandler(), 10, data_size_limit=4096, enable_SMTPUTF8=True,
                             decode_data=False, hostname="fuzz", ident="mamori", timeout=5)
        t = _Transport()
        proto.connection_made(t)
        for line in data.split(b"\n"):
            proto.data_received(line + b"\n")
            await asyncio.sleep(0)
        proto.eof_received()
        for _ in range(3):
            await asyncio.sleep(0)
        task = proto._handler_coroutine
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        proto.connection_lost(None)
        # every reply is a well-formed SMTP reply line
        for reply in bytes(t.out).split(b"\r\n"):
            assert not reply or reply[:3].isdigit(), reply[:40]

    loop.run_until_complete(session())


# -- MIME and headers --------------------------------------------------------------------

def mime(data: bytes) -> None:
    split_header_block(data)
    ctx = ScanContext(Message.email(data), DEFAULT_POLICY)
    assert isinstance(ctx.text, str)
    assert isinstance(ctx.urls, tuple)
    EmailStructureCheck().run(ctx)


# -- URLs --------------------------------------------------------------------------------

def urls(data: bytes) -> None:
    """Text (first half) and HTML (second half) through extraction, then canonicalisation."""
    half = len(data) // 2
    for f in extract_urls(_text(data[:half]), html=_text(data[half:])):
        with contextlib.suppress(UrlError):
            canonicalize(f.url)
    try:
        c = canonicalize(_text(data))
        assert c.host == c.host.lower()
    except UrlError:
        pass


# -- HTTP SMS hook JSON ------------------------------------------------------------------

def sms_json(data: bytes) -> None:
    """A request body of POST /v1/sms/check: JSON, validated, payload decoded."""
    from gateway.api.sms import SmsIn, _text_of

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return  # 422
    try:
        sms = SmsIn.model_validate(doc)
    except ValidationError:
        return  # 422
    try:
        text = _text_of(sms)
    except HTTPException as exc:
        assert exc.status_code == 422
        return
    assert isinstance(text, str)
    Message.sms(text, sender=sms.sender, recipient=sms.recipient)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "milter": milter, "smpp": smpp, "smtp": smtp, "mime": mime, "urls": urls, "sms_json": sms_json,
}
