"""Milter ingress: mamori as a Sendmail/Postfix mail filter (milter protocol version 6).

The MTA connects over TCP (`MAMORI_MILTER__LISTEN=127.0.0.1:8891`) or a UNIX socket
(`unix:/run/mamori/milter.sock`), hands over connection, HELO, envelope, headers and body, and
at end of message gets the actions: header changes, recipient removals, quarantine, then one
final reply (accept, tempfail, or reject with our reply code).

Per-recipient policy (docs/milter.md explains the choice): every recipient's policy is looked
up; the checks run once per distinct set of check-relevant policy settings and the verdict is
decided per distinct policy. The transaction takes the mildest recipient action; recipients
whose own verdict is stricter are removed (SMFIR_DELRCPT) and their copy is kept in the
quarantine store (`Gateway.hold`), so nobody gets mail their policy blocks and nobody else
loses mail because of someone else's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway import limits
from gateway.config import MilterSettings, parse_hostport
from gateway.errors import ConfigError
from gateway.ingress import milter_codec as mc
from gateway.ingress.authres import claims_authserv_id
from gateway.ingress.headers import mamori_headers
from gateway.limits import per_minute
from gateway.message import Channel, Message, Peer, ScanContext
from gateway.metrics import INFLIGHT, INGRESS_ERRORS, SCAN_SECONDS, SCANNED
from gateway.policy import Policy
from gateway.runtime import Gateway
from gateway.verdict import Action, Verdict
from gateway.workers import inherited_socket

log = logging.getLogger("mamori.milter")

INGRESS = "milter"

# what we may do at end of message
WANTED_ACTIONS = mc.SMFIF_ADDHDRS | mc.SMFIF_CHGHDRS | mc.SMFIF_DELRCPT | mc.SMFIF_QUARANTINE
# Steps we never answer with anything but "continue" need no reply: each reply is a send and a
# round trip the MTA waits for (header fields come in many small packets). DATA, end of
# header and unknown commands carry nothing we use: the MTA need not send them at all.
# CONNECT needs no reply either: a busy client (over max_connections) is refused at the first
# step that has one (MAIL, else end of message). Body chunks need none: past max_body_size the
# rest is read and dropped (an MTA that sends body replies anyway may be told to skip it).
NO_REPLY_STEPS = (mc.SMFIP_NR_CONN | mc.SMFIP_NR_HDR | mc.SMFIP_NR_HELO | mc.SMFIP_NR_RCPT
                  | mc.SMFIP_NR_DATA | mc.SMFIP_NR_EOH | mc.SMFIP_NR_UNKN | mc.SMFIP_NR_BODY)
NOT_SENT_STEPS = mc.SMFIP_NODATA | mc.SMFIP_NOEOH | mc.SMFIP_NOUNKNOWN
# MAIL keeps its reply only with a client rate limit (a rate-limited client is refused there)
WANTED_PROTOCOL = NO_REPLY_STEPS | NOT_SENT_STEPS | mc.SMFIP_SKIP | mc.SMFIP_NR_MAIL


def wanted_protocol(settings: MilterSettings) -> int:
    """The protocol flags asked of the MTA: `WANTED_PROTOCOL`, less SMFIP_NR_MAIL when
    MAMORI_MILTER__CLIENT_RATE_PER_MINUTE is set (MAIL is where a client over it is refused)."""
    if settings.client_rate_per_minute > 0:
        return WANTED_PROTOCOL & ~mc.SMFIP_NR_MAIL
    return WANTED_PROTOCOL

# fixed replies (the peer never sees exception text)
SMTP_451_FAILURE = "451 4.3.0 Temporary failure in mail filter, try again later"
SMTP_451_BUSY = "451 4.3.2 Mail filter busy, try again later"
SMTP_451_RATE = "451 4.7.1 Too many messages from your address, try again later"
SMTP_552_HEADER = "552 5.3.4 Message header too big"
_BUSY = mc.reply_code(SMTP_451_BUSY)  # a busy session's tempfail, as a reply packet

HEADER_ACTION = "X-Mamori-Action"
OUR_HEADER_PREFIX = "x-mamori-"
# first characters of the header names the session looks at (X-Mamori-*, Authentication-Results)
_WATCHED_INITIALS = frozenset("aAxX")
MAX_HEADER_BYTES = 1024 * 1024  # default of MAMORI_LIMITS__HEADER_MAX_BYTES
READ_SIZE = 256 * 1024  # bytes taken from the socket at once (a body chunk is 64 KiB)
# the header field's path, the most frequent command (module names: no attribute lookups)
_HEADER, _NR_HDR, _CONTINUE, _parse_header = (mc.SMFIC_HEADER, mc.SMFIP_NR_HDR, mc.CONTINUE,
                                              mc.parse_header)
_INFLIGHT = INFLIGHT.labels(INGRESS)

# policy fields only `Pipeline.decide` reads: recipients whose policies differ in nothing
# else share one run of the checks (any other field, including ones added later, may be read
# by a check and so gets its own run)
DECIDE_ONLY_FIELDS = frozenset(
    {"subscriber", "updated_at", "protection", "strength", "youth", "weights", "on_block"}
)


def _checks_key(policy: Policy) -> tuple[object, ...]:
    def hashable(value: object) -> object:
        try:
            hash(value)
        except TypeError:
            return repr(value)
        return value

    return tuple(
        (f.name, hashable(getattr(policy, f.name)))
        for f in dataclasses.fields(policy)
        if f.name not in DECIDE_ONLY_FIELDS
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one group of recipients sharing a policy."""

    recipients: tuple[str, ...]
    policy: Policy
    verdict: Verdict


@dataclass
class Outcome:
    """What to send at end of message: modifications, then one final reply."""

    final: bytes  # SMFIR_ACCEPT, SMFIR_TEMPFAIL or SMFIR_REPLYCODE
    reply: str = ""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    delete_recipients: list[str] = dataclasses.field(default_factory=list)
    quarantine: str | None = None


class MilterService:
    name = "milter"

    def __init__(self, gw: Gateway, settings: MilterSettings | None = None) -> None:
        self.gw = gw
        self.settings = settings or gw.settings.milter
        self.server: asyncio.Server | None = None
        self.sessions: dict[asyncio.Task[None], Session] = {}
        self.scan_slots = asyncio.Semaphore(max(1, self.settings.max_inflight))
        self.buffered = 0  # bytes of headers and bodies held across all connections
        self.waiting = 0
        self.stopping = False
        # messages a minute per SMTP client address (MAMORI_MILTER__CLIENT_RATE_PER_MINUTE)
        self.client_rates = per_minute(self.settings.client_rate_per_minute)
        self.protocol = wanted_protocol(self.settings)
        self.authserv_id = (gw.settings.auth.authserv_id or gw.settings.smtp.hostname).lower()
        self._unix_path: Path | None = None

    @property
    def address(self) -> str:
        """The bound address (host:port, with the real port when 0 was asked, or unix:path)."""
        if self._unix_path is not None:
            return f"unix:{self._unix_path}"
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        for name, first in (("reject_reply", "5"), ("tempfail_reply", "4")):
            text = getattr(self.settings, name)
            try:
                mc.reply_code(text)
            except ValueError:
                raise ConfigError(f"MAMORI_MILTER__{name.upper()} must be an SMTP reply "
                                  f"'{first}NN X.Y.Z text'") from None
            if not text.startswith(first):
                raise ConfigError(f"MAMORI_MILTER__{name.upper()} must start with {first}")
        listen = self.settings.listen.strip()
        limit = mc.MAX_PACKET + 16
        if listen.startswith("unix:"):
            path = Path(listen[5:])
            if inherited_socket(listen) is not None:  # a worker: the supervisor bound it
                self.server = await asyncio.start_unix_server(self._handle, path=str(path),
                                                              limit=limit)
            else:
                if path.exists() or path.is_symlink():
                    if not stat.S_ISSOCK(path.lstat().st_mode):
                        raise ConfigError(f"milter socket path {path} exists and is not a socket")
                    path.unlink()  # stale socket of an earlier run
                try:
                    mode = int(self.settings.socket_mode, 8)
                except ValueError:
                    raise ConfigError(f"invalid milter socket_mode {self.settings.socket_mode!r}") from None
                self.server = await asyncio.start_unix_server(self._handle, path=str(path),
                                                              limit=limit)
                os.chmod(path, mode)
            self._unix_path = path
        else:
            host, port = parse_hostport(listen.removeprefix("inet:"))
            self.server = await asyncio.start_server(self._handle, host, port, limit=limit,
                                                     backlog=1024)
        if self.gw.pipeline.deadline >= self.settings.timeout:
            log.warning("the pipeline deadline is not below the milter timeout: slow checks "
                        "will tempfail mail instead of being cut by the deadline",
                        extra={"deadline": self.gw.pipeline.deadline, "timeout": self.settings.timeout})
        log.info("milter listening", extra={"address": self.address})

    async def stop(self) -> None:
        """Stop accepting; let messages being scanned get their answer (within the scan time
        limit), then close every connection. An MTA whose message gets no answer applies its
        milter_default_action, so nothing is lost either way."""
        self.stopping = True
        if self.server is not None:
            self.server.close()
        busy = [t for t, s in self.sessions.items() if s.scanning]
        for task, session in list(self.sessions.items()):
            if not session.scanning:
                task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=self.settings.queue_timeout + self.settings.timeout)
        for task in list(self.sessions):
            task.cancel()
        if self.sessions:
            await asyncio.gather(*self.sessions, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
        if self._unix_path is not None and inherited_socket(self.settings.listen) is None:
            with contextlib.suppress(FileNotFoundError):  # (a worker's socket is the parent's)
                self._unix_path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        session = Session(self, reader, writer)
        self.sessions[task] = session
        # a connection handler ends normally even when cancelled at shutdown: asyncio's
        # stream callback would otherwise report the cancellation as an error
        try:
            await session.run()
        except asyncio.CancelledError:
            pass
        finally:
            try:
                writer.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await writer.wait_closed()
            finally:
                self.sessions.pop(task, None)

    # -- back-pressure -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def scan_slot(self) -> AsyncIterator[None]:
        """A slot among `max_inflight` scans, waited for at most `queue_timeout` seconds;
        raises TimeoutError when none frees up (the caller tempfails)."""
        self.waiting += 1
        try:
            if self.scan_slots.locked():
                async with asyncio.timeout(self.settings.queue_timeout):
                    await self.scan_slots.acquire()
            else:  # a free slot: taken at once, no timer
                await self.scan_slots.acquire()
        finally:
            self.waiting -= 1
        inflight = _INFLIGHT
        inflight.inc()
        try:
            yield
        finally:
            inflight.dec()
            self.scan_slots.release()

    # -- scanning and deciding -----------------------------------------------------------

    async def decide(self, message: Message) -> list[Decision]:
        """Verdicts per distinct recipient policy; checks run once per check-relevant policy."""
        gw = self.gw
        rcpts = list(dict.fromkeys(message.recipients)) or [""]
        # subscribers are looked up by the lower-cased address; removals use the RCPT as sent
        if len(rcpts) == 1:  # the common case: no task for the one lookup (usually cached)
            policies = [await gw.policy_for(rcpts[0].lower() or None)]
        else:
            policies = await asyncio.gather(*(gw.policy_for(r.lower() or None) for r in rcpts))
        groups: dict[str, list[str]] = {}
        by_version: dict[str, Policy] = {}
        for rcpt, policy in zip(rcpts, policies, strict=True):
            groups.setdefault(policy.version, []).append(rcpt)
            by_version.setdefault(policy.version, policy)
        if len(groups) == 1:  # the common case: one policy for the whole transaction
            (version, members), = groups.items()
            verdict = await gw.process(message, INGRESS, by_version[version])
            return [Decision(tuple(r for r in members if r), by_version[version], verdict)]

        t0 = time.monotonic()
        contexts: dict[tuple[object, ...], ScanContext] = {}
        first: ScanContext | None = None
        for version in groups:
            policy = by_version[version]
            key = _checks_key(policy)
            if key in contexts:
                continue
            ctx = ScanContext(message, policy, deadline=t0 + gw.pipeline.deadline)
            if first is not None:  # share the parsed forms of the message
                for attr in ("mime", "text_parts", "urls"):
                    if attr in first.__dict__:
                        ctx.__dict__[attr] = first.__dict__[attr]
            await gw.pipeline.run_checks(ctx)
            first = first or ctx
            contexts[key] = ctx
        decisions: list[Decision] = []
        for n, (version, members) in enumerate(groups.items()):
            policy = by_version[version]
            ctx = contexts[_checks_key(policy)]
            verdict = gw.pipeline.decide(ctx, policy, elapsed=time.monotonic() - t0)
            # each group is its own copy of the message (own id, own recipients)
            copy = dataclasses.replace(message, id=f"{message.id}-{n}", recipients=tuple(members),
                                       subscriber=policy.subscriber or members[0] or None)
            verdict = dataclasses.replace(verdict, message_id=copy.id)
            # the copy of a recipient who will not get the message is kept in quarantine; a
            # quarantine verdict without a store becomes tag (delivered, marked), and a store
            # failure raises (the message is then tempfailed: nothing is lost)
            verdict = await gw.hold(copy, verdict, policy, INGRESS)
            SCANNED.labels(Channel.EMAIL.value, verdict.action.value).inc()
            SCAN_SECONDS.labels(Channel.EMAIL.value).observe(time.monotonic() - t0)
            await gw.report(copy, verdict, INGRESS)
            decisions.append(Decision(tuple(r for r in members if r), policy, verdict))
        return decisions

    def outcome(self, decisions: Sequence[Decision], actions: int, ref: str) -> Outcome:
        """Turn per-recipient decisions into milter actions (see the module docstring)."""
        s = self.settings
        mildest = min(decisions, key=lambda d: d.verdict.action.severity)
        action = mildest.verdict.action
        if action is Action.QUARANTINE and not actions & mc.SMFIF_QUARANTINE:
            action = Action.REJECT  # the MTA cannot hold mail: refuse rather than deliver
        stricter = [d for d in decisions if d.verdict.action.severity > action.severity]
        if action in (Action.REJECT, Action.SOFT_REJECT):
            code = s.reject_reply if action is Action.REJECT else s.tempfail_reply
            return Outcome(mc.SMFIR_REPLYCODE, reply=f"{code} (ref {ref})")
        if stricter and not actions & mc.SMFIF_DELRCPT:
            # cannot take single recipients out: let the client retry later rather than
            # deliver to someone whose policy blocks the message
            return Outcome(mc.SMFIR_REPLYCODE, reply=f"{s.tempfail_reply} (ref {ref})")
        # the verdict shown in the headers: the strictest among those who get the message
        shown = max((d for d in decisions if d.verdict.action.severity <= action.severity),
                    key=lambda d: d.verdict.action.severity)
        out = Outcome(mc.SMFIR_ACCEPT, headers=milter_headers(shown.verdict))
        out.delete_recipients = [r for d in stricter for r in d.recipients]
        if action is Action.QUARANTINE:
            out.quarantine = f"mamori quarantine ref {ref}"
        return out


def milter_headers(verdict: Verdict) -> list[tuple[str, str]]:
    """mamori's headers (shared with the SMTP filter), each value on one line: a folded value
    would reach the MTA with raw line breaks."""
    return [(n, " ".join(v.split())) for n, v in mamori_headers(verdict)]


class _Step(enum.Enum):
    """What the read loop does after one command."""

    NEXT = 1  # the next packet
    END_OF_MESSAGE = 2  # scan and answer
    QUIT = 3  # close the connection


class Session:
    """One MTA connection: negotiation, then any number of SMTP sessions and transactions."""

    def __init__(self, service: MilterService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.service = service
        self.settings = service.settings
        self.reader = reader
        self.writer = writer
        self.negotiated = False
        self.actions = 0
        self.protocol = 0
        self.refused = False  # over the connection limit: tempfail the SMTP session
        self.scanning = False  # between end of message and our answer
        self._out: list[bytes] = []  # replies to the packets of the current read
        self._reset_connection()

    # -- state ---------------------------------------------------------------------------

    def _reset_connection(self, *, keep_macros: bool = False) -> None:
        if not keep_macros:  # macros for CONNECT arrive just before it
            self.conn_macros: dict[str, str] = {}
        self.peer = Peer()
        self._reset_message()

    def _reset_message(self, *, keep_macros: bool = False) -> None:
        if not keep_macros:  # macros for MAIL arrive just before it
            self.msg_macros: dict[str, str] = {}
        self._release_buffer()
        self.sender = ""
        self.recipients: list[str] = []
        self.headers: list[tuple[str, str]] = []
        self.header_bytes = 0
        # fields and bytes of the header block not kept (past a limit); with those kept
        # (`headers`, `header_bytes`), the whole block's
        self.header_dropped = 0
        self.header_dropped_bytes = 0
        self.own_headers: dict[str, int] = {}  # X-Mamori-* fields the client sent, by lower name
        self.ar_count = 0  # Authentication-Results fields seen; those claiming our id:
        self.forged_ar: list[int] = []
        self.body = bytearray()
        self.truncated = False
        self.starved = False  # lost data to max_buffered: tempfail rather than scan a stub

    def _release_buffer(self) -> None:
        held = getattr(self, "header_bytes", 0) + len(getattr(self, "body", b""))
        self.service.buffered -= held

    def _take_buffer(self, wanted: int, limit: int) -> int:
        """How many of `wanted` bytes may be kept: within this message's `limit` and the
        service's `max_buffered` across all connections."""
        room = max(min(wanted, limit), 0)
        free = max(self.settings.max_buffered - self.service.buffered, 0)
        if free < room:  # the whole service is short of memory, not this message too big
            self.starved = True
            room = free
        self.service.buffered += room
        return room

    # -- I/O -----------------------------------------------------------------------------

    async def _send(self, *packets: bytes) -> None:
        self.writer.write(b"".join(packets))
        transport = self.writer.transport
        if not transport.is_closing() and transport.get_write_buffer_size() == 0:
            return  # all of it is in the socket already: nothing to wait for (the usual case)
        # an MTA that stops reading cannot hold the connection forever
        async with asyncio.timeout(self.settings.idle_timeout):
            await self.writer.drain()

    def _reply(self, cmd: bytes, packet: bytes = mc.CONTINUE) -> None:
        """Queue the reply to `cmd` unless the MTA wants none; `_flush` sends the queue."""
        flag = mc.NO_REPLY_FLAG.get(cmd)
        if flag and self.protocol & flag:
            return
        self._out.append(packet)

    async def _flush(self) -> None:
        """Send the replies queued while handling the packets of one read (one write)."""
        out, self._out = self._out, []
        await self._send(*out)

    def _error(self, kind: str) -> None:
        INGRESS_ERRORS.labels(INGRESS, kind).inc()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        decoder = mc.PacketDecoder()
        read = self.reader.read
        command = self._command
        watch = IdleWatch(loop, self.settings.idle_timeout)
        try:
            while True:
                # whatever the socket has: Postfix sends the header fields (no replies wanted)
                # and body chunks back to back, so one read serves many packets, handled
                # without a coroutine each and answered with one write
                watch.since = loop.time()
                try:
                    data = await read(READ_SIZE)
                except asyncio.CancelledError:
                    if watch.expired():
                        raise TimeoutError from None
                    raise
                watch.since = None
                if not data:
                    if decoder.pending:
                        raise mc.MilterProtocolError("stream ended inside a packet")
                    return
                for cmd, payload in decoder.feed(data):
                    try:
                        step = command(cmd, payload)
                    except mc.MilterProtocolError:
                        await self._flush_before_close()
                        raise
                    if step is _Step.NEXT:
                        continue
                    if self._out:
                        await self._flush()
                    if step is _Step.QUIT:
                        return
                    if not await self._eom():
                        return
                if self._out:
                    await self._flush()
                if decoder.error is not None:
                    await self._flush_before_close()
                    decoder.check()
        except mc.MilterProtocolError as exc:
            self._error("protocol")
            log.info("milter protocol error, closing", extra={"reason": str(exc)})
        except TimeoutError:
            self._error("idle")
            log.info("milter connection idle, closing")
        except (ConnectionError, OSError):
            self._error("disconnect")
        except Exception:
            # a bug of ours: close this connection (the MTA applies its default action)
            self._error("internal")
            log.exception("milter session failed")
        finally:
            watch.stop()
            self._release_buffer()
            self.header_bytes, self.body = 0, bytearray()

    async def _flush_before_close(self) -> None:
        """The replies to the good packets before a bad one still go out (best effort)."""
        if self._out:
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await self._flush()

    async def _eom(self) -> bool:
        """End of message: scan and answer; False ends the connection (at shutdown)."""
        self.scanning = True
        try:
            await self._end_of_message()
        finally:
            self.scanning = False
        self._reset_message()
        return not self.service.stopping

    def _command(self, cmd: bytes, data: bytes) -> _Step:
        """Handle one command, queueing its reply; end of message and quit are the caller's."""
        if cmd == _HEADER and self.negotiated:  # the most frequent command first
            name, value = _parse_header(data)
            self._header(name, value)
            if not self.protocol & _NR_HDR:
                self._out.append(_CONTINUE)
        elif cmd == mc.SMFIC_OPTNEG:
            self._optneg(data)
        elif not self.negotiated and cmd != mc.SMFIC_QUIT:
            raise mc.MilterProtocolError("command before option negotiation")
        elif cmd == mc.SMFIC_MACRO:
            stage, macros = mc.parse_macros(data)
            target = self.conn_macros if stage in (mc.SMFIC_CONNECT, mc.SMFIC_HELO) else self.msg_macros
            target.update(macros)
        elif cmd == mc.SMFIC_CONNECT:
            self._reset_connection(keep_macros=True)
            c = mc.parse_connect(data)
            self.peer = Peer(ip=c.address if c.family in (mc.FAMILY_INET, mc.FAMILY_INET6) else None,
                             port=c.port, hostname=c.hostname or None)
            self.refused = len(self.service.sessions) > self.settings.max_connections
            if self.refused:
                self._error("overloaded")
                # here when the MTA waits for a reply, else at the first step that has one
                self._reply(cmd, _BUSY)
            else:
                self._reply(cmd)
        elif cmd == mc.SMFIC_HELO:
            helo = mc.split_strings(data)
            self.peer = dataclasses.replace(self.peer, helo=helo[0] if helo else "")
            self._reply(cmd)
        elif cmd == mc.SMFIC_MAIL:
            self._reset_message(keep_macros=True)
            args = mc.split_strings(data)
            if not args:
                raise mc.MilterProtocolError("MAIL without a sender")
            self.sender = mc.strip_angle(args[0])
            rates = self.service.client_rates
            if self.refused:
                self._reply(cmd, _BUSY)
            elif rates is not None and rates.take(self.client_address()):
                self._error("rate_limited")
                self._out.append(mc.reply_code(SMTP_451_RATE))
            else:
                self._reply(cmd)
        elif cmd == mc.SMFIC_RCPT:
            args = mc.split_strings(data)
            if not args:
                raise mc.MilterProtocolError("RCPT without a recipient")
            self.recipients.append(mc.strip_angle(args[0]))
            self._reply(cmd)
        elif cmd in (mc.SMFIC_DATA, mc.SMFIC_EOH, mc.SMFIC_UNKNOWN):
            self._reply(cmd)
        elif cmd == mc.SMFIC_BODY:
            self._reply(cmd, self._body(data))
        elif cmd == mc.SMFIC_BODYEOB:
            self._body(data)
            return _Step.END_OF_MESSAGE
        elif cmd == mc.SMFIC_ABORT:
            self._reset_message()
        elif cmd == mc.SMFIC_QUIT_NC:  # the MTA reuses this connection for a new SMTP session
            self._reset_connection()
        elif cmd == mc.SMFIC_QUIT:
            return _Step.QUIT
        else:
            self._error("unknown_command")
            raise mc.MilterProtocolError(f"unknown command {cmd!r}")
        return _Step.NEXT

    def _optneg(self, data: bytes) -> None:
        offer = mc.parse_optneg(data)
        if offer.version < 2:
            raise mc.MilterProtocolError(f"milter protocol version {offer.version} is too old")
        self.actions = offer.actions & WANTED_ACTIONS
        self.protocol = offer.protocol & self.service.protocol
        if not self.actions & mc.SMFIF_ADDHDRS:
            log.warning("the MTA does not let the milter add headers")
        reply = mc.OptNeg(min(offer.version, mc.MILTER_VERSION), self.actions, self.protocol)
        self.negotiated = True
        self._out.append(reply.encode())

    def client_address(self) -> str:
        """The SMTP client's address: Postfix's {client_addr} connect macro, else the peer."""
        return self.conn_macros.get("client_addr") or self.peer.ip or ""

    def _header(self, name: str, value: str) -> None:
        if self.refused:  # tempfailed at the next reply: nothing to keep
            return
        if name[:1] in _WATCHED_INITIALS:  # (no other character lower-cases to a or x)
            lname = name.lower()
            if lname.startswith(OUR_HEADER_PREFIX):
                # the client's own X-Mamori-* fields are removed at end of message (no
                # spoofing); the MTA numbers occurrences of a name case-insensitively
                self.own_headers[lname] = self.own_headers.get(lname, 0) + 1
            elif lname == "authentication-results":
                self.ar_count += 1
                if claims_authserv_id(value, self.service.authserv_id):  # RFC 8601 section 5
                    self.forged_ar.append(self.ar_count)
        size = len(name) + len(value) + 4
        if not self.truncated:
            header_max = limits.current().header_max_bytes
            service = self.service
            if (self.header_bytes + size <= header_max
                    and service.buffered + size <= self.settings.max_buffered):
                service.buffered += size  # room in both: what _take_buffer would grant
                self.header_bytes += size
                self.headers.append((name, value))
                return
            granted = self._take_buffer(size, header_max - self.header_bytes)
            if granted == size:
                self.header_bytes += size
                self.headers.append((name, value))
                return
            self.service.buffered -= granted  # a field is kept whole or not at all
        self.truncated = True
        self.header_dropped += 1
        self.header_dropped_bytes += size

    def _body(self, chunk: bytes) -> bytes:
        if self.refused:  # nothing to keep: refused here when the MTA waits for a reply
            return _BUSY
        room = self._take_buffer(len(chunk), self.settings.max_body_size - len(self.body))
        self.body += chunk[:room]
        if room < len(chunk):
            self.truncated = True
            # (a reply only goes out without SMFIP_NR_BODY; with it the MTA sends the rest,
            # which is dropped here)
            return mc.SKIP if self.protocol & mc.SMFIP_SKIP else mc.CONTINUE
        return mc.CONTINUE

    def message(self) -> Message:
        macros = {**self.conn_macros, **self.msg_macros}
        protocol = {k: macros[k] for k in ("i", "j", "auth_authen", "auth_type", "daemon_name")
                    if macros.get(k)}
        if self.truncated:
            protocol["truncated"] = "1"
        return Message(
            channel=Channel.EMAIL,
            sender=self.sender,
            recipients=tuple(self.recipients),
            subscriber=self.recipients[0] if self.recipients else None,
            headers=tuple(self.headers),
            body=bytes(self.body),
            peer=self.peer,
            protocol=protocol,
        )

    async def _end_of_message(self) -> None:
        if self.refused or self.starved:
            if self.starved:
                self._error("overloaded")
            await self._send(_BUSY)
            return
        lim = limits.current()
        seen = len(self.headers) + self.header_dropped
        if seen > lim.header_max_count or self.header_bytes + self.header_dropped_bytes > lim.header_max_bytes:
            self._error("header_limit")
            await self._send(mc.reply_code(SMTP_552_HEADER))
            return
        service = self.service
        message = self.message()
        ref = message.id[:12]
        try:
            async with service.scan_slot():
                async with asyncio.timeout(self.settings.timeout):
                    decisions = await service.decide(message)
        except TimeoutError:
            # waited too long for a slot (back-pressure) or the scan overran its time
            self._error("overloaded")
            log.warning("milter scan slot or time limit reached", extra={"ref": ref})
            await self._send(_BUSY)
            return
        except Exception as exc:
            self._error("failure")
            log.error("milter scan failed", extra={"ref": ref, "error": type(exc).__name__})
            await self._send(*self._default_action())
            return
        await self._apply(service.outcome(decisions, self.actions, ref))

    def _default_action(self) -> list[bytes]:
        if self.settings.default_action == "accept":
            out = self._strip_own_headers()
            if self.actions & mc.SMFIF_ADDHDRS:
                out.append(mc.add_header(HEADER_ACTION, "unscanned"))
            return [*out, mc.ACCEPT]
        return [mc.reply_code(SMTP_451_FAILURE)]

    def _strip_own_headers(self) -> list[bytes]:
        """Delete the X-Mamori-* fields the client sent (nobody forges our verdict)."""
        if not self.actions & mc.SMFIF_CHGHDRS:
            return []
        # from the last occurrence of each name, so earlier indexes stay valid
        out = [mc.change_header(i, name, "") for name, count in self.own_headers.items()
               for i in range(count, 0, -1)]
        # Authentication-Results claiming our authserv-id came from outside (RFC 8601 5)
        out.extend(mc.change_header(i, "Authentication-Results", "")
                   for i in reversed(self.forged_ar))
        return out

    async def _apply(self, out: Outcome) -> None:
        packets: list[bytes] = []
        if out.final != mc.SMFIR_REPLYCODE:
            packets.extend(self._strip_own_headers())
            if self.actions & mc.SMFIF_ADDHDRS:
                packets.extend(mc.add_header(n, v) for n, v in out.headers)
            packets.extend(mc.delete_recipient(r) for r in out.delete_recipients)
            if out.quarantine is not None:
                packets.append(mc.quarantine(out.quarantine))  # before the final reply
            packets.append(mc.ACCEPT)
        else:
            packets.append(mc.reply_code(out.reply))
        await self._send(*packets)


async def start(gw: Gateway) -> MilterService | None:
    """`mamori serve` hook: the milter service, or None when MAMORI_MILTER__LISTEN is empty."""
    if not gw.settings.milter.listen.strip():
        return None
    service = MilterService(gw)
    await service.start()
    return service


class IdleWatch:
    """The idle limit of a connection's reads with one timer per `idle` seconds, not one per
    read: the reader sets `since` (loop time) before waiting and None after; the timer, when it
    finds a read waiting `idle` seconds, cancels the task (`expired()` then tells the
    cancellation apart from a shutdown's, as `asyncio.timeout` does), otherwise re-arms for
    the earliest moment a read could reach the limit."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_loop", "_task", "idle", "since")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle: float) -> None:
        task = asyncio.current_task(loop)
        assert task is not None
        self._loop, self._task, self.idle = loop, task, idle
        self._cancelling = task.cancelling()
        self._fired = False
        self.since: float | None = None
        self._handle: asyncio.TimerHandle | None = loop.call_at(loop.time() + idle, self._check)

    def _check(self) -> None:
        since = self.since
        now = self._loop.time()
        if since is not None and now >= since + self.idle:
            self._handle = None
            self._fired = True
            self._task.cancel()
            return
        self._handle = self._loop.call_at((now if since is None else since) + self.idle, self._check)

    def expired(self) -> bool:
        """After a CancelledError in a read: whether it is this watch's (the caller then
        raises TimeoutError) rather than someone else's."""
        return self._fired and self._task.uncancel() <= self._cancelling

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
