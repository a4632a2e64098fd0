"""SMTP content filter (before-queue proxy) on aiosmtpd.

The MTA (or any client) hands mail to mamori on `MAMORI_SMTP__LISTEN`; mamori scans it during
the DATA phase and only then answers:
- accept / tag: relay to `MAMORI_SMTP__NEXT_HOP` with the `X-Mamori-*` headers added, and pass the
  next hop's answer back (250 only once the next hop has taken responsibility: nothing is lost);
- reject: 550 5.7.1; soft_reject: 451 4.7.1; quarantine: 250 once the copy is stored.
Failures of mamori itself answer 451 4.3.0 so the client retries.

Per-recipient policy: a transaction carries one DATA answer for all recipients, so a recipient
whose policy differs from the first one's is deferred at RCPT with 452 4.5.3; the client sends it
again in a transaction of its own (RFC 5321 section 4.5.3.1.10 permits this), and each message
is then judged by its recipient's own policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from gateway.config import parse_hostport
from gateway.errors import GatewayError
from gateway.ingress.authres import strip_forged
from gateway.ingress.headers import mamori_headers, render
from gateway.ingress.smtp_relay import RelayPool
from gateway.limits import header_over_limit, per_minute
from gateway.message import Message, Peer
from gateway.metrics import INFLIGHT, INGRESS_ERRORS
from gateway.runtime import Gateway
from gateway.verdict import Action

log = logging.getLogger("mamori.smtp")

SMTP_250_OK = "250 2.0.0 OK: queued"
SMTP_250_HELD = "250 2.0.0 OK: held"
SMTP_421_BUSY = "421 4.3.2 Service busy, try again later"
SMTP_421_RATE = "421 4.7.0 Too many connections from your address, try again later"
SMTP_450_RATE = "450 4.7.1 Too many messages from your address, try again later"
SMTP_451_TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
SMTP_451_SOFT_REJECT = "451 4.7.1 Message deferred, try again later"
SMTP_451_NEXT_HOP = "451 4.4.1 Next hop unavailable, try again later"
SMTP_452_TOO_MANY = "452 4.5.3 Too many recipients"
SMTP_452_POLICY = "452 4.5.3 Recipient policy differs, send it in a separate transaction"
SMTP_550_REJECT = "550 5.7.1 Message rejected as spam or fraud"
SMTP_552_SIZE = "552 5.3.4 Message size exceeds fixed maximum message size"
SMTP_552_HEADER = "552 5.3.4 Message header too big"
# aiosmtpd's own size answers, given their enhanced status code (RFC 3463 5.3.4)
_AIOSMTPD_552 = ("552 Error: Too much mail data",
                 "552 Error: message size exceeds fixed maximum message size")
SMTP_554_NEXT_HOP = "554 5.0.0 Next hop refused the message"

_POLICY_KEY = "mamori_policy_version"


class FilterHandler:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.settings = gw.settings.smtp
        self.next_host, self.next_port = parse_hostport(self.settings.next_hop)
        # per-client-IP rates (MAMORI_SMTP__RATE_LIMIT_PER_MINUTE, __MESSAGE_RATE_PER_MINUTE);
        # at most MAMORI_LIMITS__CLIENT_STATE_MAX clients are tracked (least recent dropped)
        self.authserv_id = gw.settings.auth.authserv_id or self.settings.hostname
        self.conn_rates = per_minute(self.settings.rate_limit_per_minute)
        self.msg_rates = per_minute(self.settings.message_rate_per_minute)
        self.relay = RelayPool(self.next_host, self.next_port,
                               timeout=self.settings.relay_timeout,
                               local_hostname=self.settings.hostname,
                               size=self.settings.relay_pool,
                               max_idle=self.settings.relay_idle)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.msg_rates is not None and self.msg_rates.take(_client_ip(session)):
            INGRESS_ERRORS.labels("smtp", "rate_limited").inc()
            return SMTP_450_RATE
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:  # RFC 5321 4.5.3.1.10
            return SMTP_452_TOO_MANY
        try:
            policy = await self.gw.policy_for(address.lower())
        except GatewayError:
            return SMTP_451_TEMPFAIL
        first = getattr(envelope, _POLICY_KEY, None)
        if first is not None and first != policy.version:
            return SMTP_452_POLICY
        setattr(envelope, _POLICY_KEY, policy.version)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        INFLIGHT.labels("smtp").inc()
        try:
            return await self._data(session, envelope)
        except Exception:
            INGRESS_ERRORS.labels("smtp", "internal").inc()
            log.exception("SMTP filter failed; answering tempfail")
            return SMTP_451_TEMPFAIL
        finally:
            INFLIGHT.labels("smtp").dec()

    async def _data(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if header_over_limit(raw):
            INGRESS_ERRORS.labels("smtp", "header_limit").inc()
            return SMTP_552_HEADER
        raw = strip_forged(raw, self.authserv_id)  # RFC 8601 section 5
        peer = session.peer if isinstance(session.peer, tuple) else (None, None)
        msg = Message.email(
            raw,
            sender=envelope.mail_from or "",
            recipients=[r.lower() for r in envelope.rcpt_tos],
            peer=Peer(ip=peer[0], port=peer[1], helo=session.host_name or None),
        )
        policy = await self.gw.policy_for(msg.subscriber)
        verdict = await self.gw.process(msg, "smtp", policy)
        action = verdict.action
        if action is Action.REJECT:
            return SMTP_550_REJECT
        if action is Action.SOFT_REJECT:
            return SMTP_451_SOFT_REJECT
        if action is Action.QUARANTINE:  # stored (or dropped by the subscriber's choice)
            return SMTP_250_HELD
        # accept or tag
        data = render(mamori_headers(verdict)) + raw
        return await self._relay(envelope, data)

    async def _relay(self, envelope: Envelope, data: bytes) -> str:
        # aiosmtplib.send() refuses an empty sender with raw bytes, but the null reverse-path
        # (MAIL FROM:<>, bounces and DSNs) must be relayed too: the pool uses the client directly.
        try:
            errors, _reply = await self.relay.sendmail(
                _reverse_path(envelope.mail_from), envelope.rcpt_tos, data
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                return SMTP_451_NEXT_HOP
            log.info("next hop refused message", extra={"code": exc.code})
            return SMTP_554_NEXT_HOP
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            INGRESS_ERRORS.labels("smtp", "next_hop").inc()
            return SMTP_451_NEXT_HOP
        if errors:  # some recipients refused by the next hop after we said 250 to them: defer all
            return SMTP_451_NEXT_HOP
        return SMTP_250_OK


def _client_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _reverse_path(mail_from: str | None) -> str:
    """aiosmtpd keeps MAIL FROM:<> as '<>'; aiosmtplib wants '' for the null reverse-path."""
    return "" if mail_from in (None, "", "<>") else mail_from


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(.*)",
                          re.S)


class _LimitedSMTP(SMTP):
    """aiosmtpd's SMTP with a cap on concurrent sessions (421 beyond it).

    Lines longer than RFC 5321's 1,000 octets are accepted (as Postfix does), up to a bound:
    refusing them permanently would bounce real mail (3 of 500 corpus messages have them)."""

    active = 0
    line_length_limit = 64 * 1024

    def __init__(self, handler: Any, limit: int, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        refusal = None
        if type(self).active >= self._limit:
            refusal, why = SMTP_421_BUSY, "busy"
        else:
            rates = getattr(self.event_handler, "conn_rates", None)
            peer = transport.get_extra_info("peername")
            if rates is not None and rates.take(str(peer[0]) if peer else ""):
                refusal, why = SMTP_421_RATE, "rate_limited"
        if refusal is not None:
            INGRESS_ERRORS.labels("smtp", why).inc()
            with contextlib.suppress(Exception):
                transport.write((refusal + "\r\n").encode())  # type: ignore[attr-defined]
            transport.close()
            return
        type(self).active += 1
        self._counted = True
        super().connection_made(transport)

    async def push(self, status: str) -> None:  # type: ignore[override]
        if status in _AIOSMTPD_552:
            status = SMTP_552_SIZE
        await super().push(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_counted", False):
            type(self).active -= 1
            self._counted = False
        super().connection_lost(exc)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing (the email package's header parser, costly), with a
        fast path for the usual `<local@domain> PARAMS` of plain ASCII atoms."""
        m = _SIMPLE_PATH.fullmatch(arg)
        if m is None or m.group(2).startswith("("):  # a comment after '>': the parser's job
            return super()._getaddr(arg)
        addr, rest = m.group(1), m.group(2)
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read in blocks (`read_data`) instead of one
        `readuntil` and one join per line: the same checks and replies as aiosmtpd 1.4."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, error = await read_data(self._reader, self.data_size_limit,
                                             self.line_length_limit)
        except asyncio.CancelledError:  # the connection was lost during DATA
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            self._writer.close()
            return
        if error is not None:
            await self.push(error)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


async def read_data(reader: asyncio.StreamReader, size_limit: int | None,
                    line_limit: int) -> tuple[bytes, str | None]:
    """The message after DATA up to the line with a single dot, dot-unstuffed (RFC 5321
    4.5.2); or an error reply once the end is read: 500 for a line (with its CRLF) longer than
    `line_limit`, 552 when the data exceed `size_limit` bytes (then nothing is kept).

    Read in blocks that end at ".\r\n" (the end-of-data line ends so, and otherwise only
    lines ending with a full stop): a handful of reads per message, not one per line."""
    blocks: list[bytes] = []
    size = 0
    tail = b"\r\n"  # the last bytes read: the DATA command's line ended with CRLF
    too_long = too_much = False
    while True:
        try:
            block = await reader.readuntil(b".\r\n")
        except asyncio.LimitOverrunError as exc:  # no ".\r\n" in the reader's buffer limit
            block = await reader.readexactly(exc.consumed)
        seen = tail + block
        if seen.endswith(b"\r\n.\r\n"):  # the end-of-data line
            block = block[:-3]
            done = True
        else:
            done = False
        size += len(block)
        if not (too_long or too_much):
            if size_limit and size > size_limit:
                too_much = True
                too_long = _has_long_line(blocks, line_limit)
                blocks = []
            else:
                blocks.append(block)
        if done:
            break
        tail = seen[-4:]
    if too_long:
        return b"", "500 Line too long (see RFC5321 4.5.3.1.6)"
    if too_much:
        return b"", "552 Error: Too much mail data"
    if _has_long_line(blocks, line_limit):
        return b"", "500 Line too long (see RFC5321 4.5.3.1.6)"
    data = b"".join(blocks)
    if b"\r\n." in data or data.startswith(b"."):
        data = (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:]  # undo dot-stuffing
    return data, None


def _has_long_line(blocks: list[bytes], line_limit: int) -> bool:
    """Whether a line of the data, with its CRLF, is longer than `line_limit`."""
    if sum(map(len, blocks)) <= line_limit - 2:
        return False
    return max(map(len, b"".join(blocks).split(b"\r\n"))) > line_limit - 2


class SmtpService:
    name = "smtp"

    def __init__(self, server: asyncio.base_events.Server, handler: FilterHandler | None = None
                 ) -> None:
        self.server = server
        self.handler = handler

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), timeout=10)
        if self.handler is not None:
            await self.handler.relay.close()


async def start(gw: Gateway) -> SmtpService | None:
    s = gw.settings.smtp
    if not s.listen:
        return None
    host, port = parse_hostport(s.listen)
    handler = FilterHandler(gw)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _LimitedSMTP(
            handler,
            s.max_connections,
            data_size_limit=s.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=s.hostname,
            ident="mamori",
            timeout=300,
        ),
        host,
        port,
    )
    svc = SmtpService(server, handler)
    log.info("smtp filter listening", extra={"listen": f"{host}:{svc.port}", "next_hop": s.next_hop})
    return svc
