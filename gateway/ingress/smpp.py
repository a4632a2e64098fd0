"""SMPP 3.4 firewall proxy.

ESMEs bind to mamori as if it were the SMSC (credentials from `MAMORI_SMPP__ACCOUNTS`); for
each ESME bind mamori binds upstream to the real SMSC (`MAMORI_SMPP__UPSTREAM`) with the same
bind type. MT `submit_sm` is reassembled when concatenated, scanned, and forwarded or refused;
`data_sm` MT is scanned the same way; `deliver_sm` (MO and delivery receipts) flows back
unchanged; `query_sm` and `cancel_sm` are validated and relayed; `enquire_link`, `unbind`,
`generic_nack`, windowing and throttling are answered here.

Hot path: protocol callbacks (no stream reader task per PDU), one task per event-loop turn
for the messages completed in it (`Gateway.process_many`), responses and relayed PDUs written
in one batch per event-loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, cast

from gateway.config import SmppSettings, parse_hostport
from gateway.errors import ConfigError
from gateway.ingress import smpp_pdu as P
from gateway.message import Message, Peer
from gateway.metrics import INFLIGHT, INGRESS_ERRORS
from gateway.runtime import Gateway
from gateway.sms.concat import Group, Reassembler
from gateway.sms.encoding import decode_payload, parse_udh
from gateway.verdict import Action, Verdict

log = logging.getLogger("mamori.smpp")

_ERR_FRAMING = INGRESS_ERRORS.labels("smpp", "framing")
_ERR_PDU = INGRESS_ERRORS.labels("smpp", "bad_pdu")
_ERR_UNKNOWN = INGRESS_ERRORS.labels("smpp", "unknown_command")
_ERR_THROTTLED = INGRESS_ERRORS.labels("smpp", "throttled")
_ERR_BIND = INGRESS_ERRORS.labels("smpp", "bind_refused")
_ERR_UPSTREAM = INGRESS_ERRORS.labels("smpp", "upstream")
_ERR_BUSY = INGRESS_ERRORS.labels("smpp", "busy")
_INFLIGHT = INFLIGHT.labels("smpp")

RESPONSE_OF = {P.SUBMIT_SM: P.SUBMIT_SM_RESP, P.QUERY_SM: P.QUERY_SM_RESP,
               P.CANCEL_SM: P.CANCEL_SM_RESP, P.REPLACE_SM: P.REPLACE_SM_RESP,
               P.SUBMIT_MULTI: P.SUBMIT_MULTI_RESP, P.DATA_SM: P.DATA_SM_RESP,
               P.DELIVER_SM: P.DELIVER_SM_RESP, P.ENQUIRE_LINK: P.ENQUIRE_LINK_RESP,
               P.UNBIND: P.UNBIND_RESP}
BIND_RESP = {P.BIND_TRANSMITTER: P.BIND_TRANSMITTER_RESP, P.BIND_RECEIVER: P.BIND_RECEIVER_RESP,
             P.BIND_TRANSCEIVER: P.BIND_TRANSCEIVER_RESP}
# the longest a judge waiting for I/O before its verdicts holds the next batch back (seconds)
JUDGE_HOLD = 0.001
RELAYED = frozenset({P.QUERY_SM, P.CANCEL_SM})
# content-changing or multi-recipient MT we do not scan: refused rather than let through
REFUSED = frozenset({P.REPLACE_SM, P.SUBMIT_MULTI})


def _seq_counter() -> Callable[[], int]:
    it = itertools.cycle(range(1, 0x7FFFFFFF))
    return it.__next__


class _Writer:
    """Batches writes to a transport: everything written in one loop turn goes out at once."""

    __slots__ = ("_buf", "_loop", "_scheduled", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buf: list[bytes] = []
        self._scheduled = False
        self.transport: asyncio.Transport | None = None

    def write(self, data: bytes) -> None:
        self._buf.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        buf = self._buf
        if buf and self.transport is not None and not self.transport.is_closing():
            self.transport.write(buf[0] if len(buf) == 1 else b"".join(buf))
        buf.clear()


# -- upstream (mamori as ESME towards the real SMSC) --------------------------------------


class UpstreamLink(asyncio.Protocol):
    def __init__(self, session: EsmeSession) -> None:
        loop = asyncio.get_running_loop()
        self.session = session
        self.out = _Writer(loop)
        self.decoder = P.FrameDecoder()
        self.next_seq = _seq_counter()
        self.pending: dict[int, tuple[Callable[[P.Pdu | None], None], float]] = {}
        self.bound: asyncio.Future[int] = loop.create_future()
        self.bind_seq = 0
        self.closed = False
        self.last_tx = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.out.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def bind(self, command_id: int, system_id: str, password: str) -> None:
        self.bind_seq = self.next_seq()
        body = P.encode_bind(P.Bind(system_id, password, "", P.INTERFACE_VERSION_34))
        self.out.write(P.encode(command_id, self.bind_seq, body))

    def request(self, pdu: P.Pdu, callback: Callable[[P.Pdu | None], None]) -> None:
        """Send a request upstream; `callback(response)` (None: no response, link lost)."""
        if self.closed:
            callback(None)
            return
        seq = self.next_seq()
        self.pending[seq] = (callback, time.monotonic())
        self.out.write(P.reframe(pdu, seq))
        self.last_tx = time.monotonic()

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.out.write(data)
            self.last_tx = time.monotonic()

    def data_received(self, data: bytes) -> None:
        try:
            pdus = self.decoder.feed(data)
        except P.PduError:
            log.warning("upstream sent an unframeable PDU; closing the link")
            self.close()
            return
        for pdu in pdus:
            self._dispatch(pdu)

    def _dispatch(self, pdu: P.Pdu) -> None:
        cid = pdu.command_id
        if cid & P.RESP_BIT:
            if pdu.sequence == self.bind_seq and cid in BIND_RESP.values() and not self.bound.done():
                self.bound.set_result(pdu.status)
                return
            entry = self.pending.pop(pdu.sequence, None)
            if entry is not None:
                entry[0](pdu)
            return
        if cid == P.DELIVER_SM:
            self.session.deliver_from_upstream(pdu)
        elif cid == P.ENQUIRE_LINK:
            self.send(P.encode(P.ENQUIRE_LINK_RESP, pdu.sequence))
        elif cid == P.UNBIND:
            self.send(P.encode(P.UNBIND_RESP, pdu.sequence))
            self.out.flush()
            self.close()
        elif cid in P.KNOWN_COMMANDS:
            resp = RESPONSE_OF.get(cid, P.GENERIC_NACK)
            self.send(P.encode(resp, pdu.sequence, status=P.ESME_RINVCMDID))
        else:
            self.send(P.encode(P.GENERIC_NACK, pdu.sequence, status=P.ESME_RINVCMDID))

    def enquire(self) -> None:
        self.request(P.Pdu(P.ENQUIRE_LINK, 0, 0), lambda _r: None)

    def expire(self, now: float, timeout: float) -> None:
        for seq, (cb, t) in list(self.pending.items()):
            if now - t > timeout:
                del self.pending[seq]
                cb(None)

    async def unbind(self, timeout: float = 2.0) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def answered(_r: P.Pdu | None) -> None:
            if not done.done():
                done.set_result(None)

        self.request(P.Pdu(P.UNBIND, 0, 0), answered)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, timeout)
        self.close()

    def close(self) -> None:
        if self.out.transport is not None:
            self.out.flush()
            self.out.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.bound.done():
            self.bound.set_result(P.ESME_RBINDFAIL)
        pending, self.pending = self.pending, {}
        for cb, _t in pending.values():
            cb(None)
        self.session.upstream_lost()


# -- ESME side (mamori as SMSC towards the client) ----------------------------------------


@dataclass(slots=True)
class _MtItem:
    session: EsmeSession
    pdu: P.Pdu
    sm: P.ShortMessage


@dataclass(slots=True)
class _Judging:
    """A message waiting for its verdict: its parts, decoded text, part count, group key."""

    items: list[_MtItem]
    text: str
    total: int
    key: Hashable | None


class EsmeSession(asyncio.Protocol):
    def __init__(self, proxy: SmppProxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.out = _Writer(self.loop)
        self.decoder = P.FrameDecoder()
        self.next_seq = _seq_counter()
        self.transport: asyncio.Transport | None = None
        self.peer = Peer()
        self.system_id = ""
        self.bind_type = 0
        self.binding = False
        self.upstream: UpstreamLink | None = None
        self.outstanding = 0
        self.deliver_map: dict[int, int] = {}  # our deliver_sm seq -> upstream's seq
        self.last_rx = time.monotonic()
        self.tokens = float(max(proxy.cfg.throttle_rate, 1.0))
        self.token_t = time.monotonic()
        self.closing = False
        self.discarding = False
        self.account = ""  # system_id of a bind in progress or done (bind limits)

    # connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        self.out.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = Peer(ip=str(peer[0]), port=int(peer[1]))
        if len(self.proxy.sessions) >= self.proxy.cfg.max_connections:
            _ERR_BUSY.inc()  # before a bind there is no PDU to refuse with: close at once
            self.closing = True
            transport.close()
            return
        self.proxy.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.proxy.sessions.discard(self)
        if self.upstream is not None:
            up, self.upstream = self.upstream, None
            self.proxy.spawn(up.unbind())

    @property
    def bound(self) -> bool:
        return self.bind_type != 0

    @property
    def can_submit(self) -> bool:
        return self.bind_type in (P.BIND_TRANSMITTER, P.BIND_TRANSCEIVER)

    def send(self, data: bytes) -> None:
        if not self.closing:
            self.out.write(data)

    def respond(self, command_id: int, sequence: int, status: int = P.ESME_ROK,
                body: bytes = b"") -> None:
        self.send(P.encode(command_id, sequence, body, status))

    def close(self) -> None:
        self.out.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    # receiving ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        self.last_rx = time.monotonic()
        try:
            pdus = self.decoder.feed(data)
        except P.PduError as e:
            # the stream cannot be resynchronised: generic_nack, then close (SMPP 3.4 2.8).
            # Half-close and drain what the peer still sends, so the nack is not lost to a RST.
            _ERR_FRAMING.inc()
            self.respond(P.GENERIC_NACK, 0, e.status)
            self.out.flush()
            self.discarding = True
            if self.transport is not None and self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(2.0, self.close)
            return
        for pdu in pdus:
            try:
                self._dispatch(pdu)
            except P.PduError as e:
                _ERR_PDU.inc()
                resp = P.GENERIC_NACK if e.nack else RESPONSE_OF.get(pdu.command_id, P.GENERIC_NACK)
                self.respond(resp, pdu.sequence, e.status)
            except Exception:
                log.exception("smpp: failed to handle %s", pdu.name)
                resp = RESPONSE_OF.get(pdu.command_id, P.GENERIC_NACK)
                self.respond(resp, pdu.sequence, P.ESME_RSYSERR)

    def _dispatch(self, pdu: P.Pdu) -> None:
        cid = pdu.command_id
        if cid not in P.KNOWN_COMMANDS:
            _ERR_UNKNOWN.inc()
            self.respond(P.GENERIC_NACK, pdu.sequence, P.ESME_RINVCMDID)
        elif cid in (P.SUBMIT_SM, P.DATA_SM):
            self._submit(pdu)
        elif cid == P.DELIVER_SM_RESP:
            up_seq = self.deliver_map.pop(pdu.sequence, None)
            if up_seq is not None and self.upstream is not None:
                self.upstream.send(P.reframe(pdu, up_seq))
        elif cid == P.ENQUIRE_LINK:
            self.respond(P.ENQUIRE_LINK_RESP, pdu.sequence)
        elif cid in BIND_RESP:
            self._bind(pdu)
        elif cid == P.UNBIND:
            self.respond(P.UNBIND_RESP, pdu.sequence)
            self.proxy.spawn(self._finish())
        elif cid & P.RESP_BIT:
            return  # enquire_link_resp, unbind_resp, generic_nack, ...: nothing to do
        elif not self.bound:
            self.respond(RESPONSE_OF.get(cid, P.GENERIC_NACK), pdu.sequence, P.ESME_RINVBNDSTS)
        elif cid in RELAYED and self.upstream is not None:
            P.VALIDATORS[cid](pdu.body)  # garbage is answered here, never relayed
            resp_id = RESPONSE_OF[cid]
            seq = pdu.sequence
            self.upstream.request(pdu, lambda r: self._relay_resp(resp_id, seq, r))
        elif cid in REFUSED:
            self.respond(RESPONSE_OF[cid], pdu.sequence, P.ESME_RINVCMDID)
        else:  # outbind, alert_notification, deliver_sm from an ESME: not ours to take
            self.respond(RESPONSE_OF.get(cid, P.GENERIC_NACK), pdu.sequence, P.ESME_RINVCMDID)

    def _relay_resp(self, resp_id: int, seq: int, r: P.Pdu | None) -> None:
        if r is None:
            self.respond(resp_id, seq, P.ESME_RSYSERR)
        else:
            self.send(P.reframe(r, seq))

    async def _finish(self) -> None:
        """After unbind: unbind upstream, then close (responses already flushed)."""
        self.out.flush()
        up, self.upstream = self.upstream, None
        self.bind_type = 0
        if up is not None:
            await up.unbind()
        self.close()

    # bind -------------------------------------------------------------------------------
    def _bind(self, pdu: P.Pdu) -> None:
        resp_id = BIND_RESP[pdu.command_id]
        if self.bound or self.binding:
            self.respond(resp_id, pdu.sequence, P.ESME_RALYBND)
            return
        b = P.parse_bind(pdu.body)
        want = self.proxy.cfg.accounts.get(b.system_id)
        if want is None:
            _ERR_BIND.inc()
            log.info("smpp bind refused: unknown system_id", extra={"peer": self.peer.ip})
            self.respond(resp_id, pdu.sequence, P.ESME_RINVSYSID)
            return
        if not hmac.compare_digest(want.encode(), b.password.encode()):
            _ERR_BIND.inc()
            log.info("smpp bind refused: bad password", extra={"system_id": b.system_id})
            self.respond(resp_id, pdu.sequence, P.ESME_RINVPASWD)
            return
        binds = sum(1 for s in self.proxy.sessions
                    if s.account == b.system_id and (s.bound or s.binding))
        if binds >= self.proxy.cfg.max_binds:
            _ERR_BIND.inc()
            log.info("smpp bind refused: too many binds", extra={"system_id": b.system_id})
            self.respond(resp_id, pdu.sequence, P.ESME_RBINDFAIL)
            return
        self.binding = True
        self.account = b.system_id
        self.proxy.spawn(self._bind_upstream(pdu.command_id, pdu.sequence, b.system_id))

    async def _bind_upstream(self, command_id: int, seq: int, system_id: str) -> None:
        resp_id = BIND_RESP[command_id]
        cfg = self.proxy.cfg
        status = P.ESME_RBINDFAIL
        link: UpstreamLink | None = None
        try:
            host, port = self.proxy.upstream_addr
            async with asyncio.timeout(cfg.upstream_timeout):
                _t, link = await self.loop.create_connection(lambda: UpstreamLink(self), host, port)
                link.bind(command_id, cfg.upstream_system_id, cfg.upstream_password)
                status = await link.bound
        except (OSError, TimeoutError) as exc:
            log.warning("smpp upstream bind failed: %s", type(exc).__name__)
        self.binding = False
        if self.closing:
            if link is not None:
                await link.unbind()
            return
        if status != P.ESME_ROK or link is None:
            if link is not None:
                link.close()
            _ERR_UPSTREAM.inc()
            log.warning("smpp upstream refused the bind", extra={"status": status})
            self.respond(resp_id, seq, P.ESME_RBINDFAIL)
            return
        self.upstream = link
        self.system_id = system_id
        self.bind_type = command_id
        log.info("smpp bound", extra={"system_id": system_id, "bind": P.COMMAND_NAMES[command_id]})
        self.respond(resp_id, seq, P.ESME_ROK, P.encode_bind_resp(self.proxy.smsc_system_id))

    def upstream_lost(self) -> None:
        if self.closing or self.upstream is None:
            return
        log.warning("smpp upstream link lost; unbinding the ESME", extra={"system_id": self.system_id})
        self.upstream = None
        self.bind_type = 0
        self.send(P.encode(P.UNBIND, self.next_seq()))
        self.loop.call_later(1.0, self.close)

    # MT -----------------------------------------------------------------------------------
    def _submit(self, pdu: P.Pdu) -> None:
        seq = pdu.sequence
        resp_id = RESPONSE_OF[pdu.command_id]
        if not self.bound or not self.can_submit:
            self.respond(resp_id, seq, P.ESME_RINVBNDSTS)
            return
        cfg = self.proxy.cfg
        if self.outstanding >= cfg.window:
            _ERR_THROTTLED.inc()
            self.respond(resp_id, seq, P.ESME_RTHROTTLED)
            return
        if cfg.throttle_rate > 0:
            now = time.monotonic()
            self.tokens = min(max(cfg.throttle_rate, 1.0),
                              self.tokens + (now - self.token_t) * cfg.throttle_rate)
            self.token_t = now
            if self.tokens < 1.0:
                _ERR_THROTTLED.inc()
                self.respond(resp_id, seq, P.ESME_RTHROTTLED)
                return
            self.tokens -= 1.0
        if pdu.command_id == P.DATA_SM:
            sm = P.parse_data_sm(pdu.body)
        else:
            sm = P.parse_short_message(pdu.body)
        self.outstanding += 1
        self.proxy.submit(_MtItem(self, pdu, sm))

    def answer(self, item: _MtItem, status: int, message_id: str = "") -> None:
        self.outstanding -= 1
        body = P.encode_message_id_resp(message_id) if status == P.ESME_ROK else b""
        if item.pdu.command_id == P.DATA_SM and not body:
            body = b"\0"  # data_sm_resp always carries a message_id field
        self.respond(RESPONSE_OF[item.pdu.command_id], item.pdu.sequence, status, body)

    def forward(self, item: _MtItem) -> None:
        if self.upstream is None:
            self.answer(item, self.proxy.tempfail_status)
            return

        def done(r: P.Pdu | None) -> None:
            self.outstanding -= 1
            if r is None:
                self.respond(RESPONSE_OF[item.pdu.command_id], item.pdu.sequence,
                             self.proxy.tempfail_status)
            else:
                self.send(P.reframe(r, item.pdu.sequence))

        self.upstream.request(item.pdu, done)

    # MO and receipts --------------------------------------------------------------------
    def deliver_from_upstream(self, pdu: P.Pdu) -> None:
        if self.closing or not self.bound:
            if self.upstream is not None:
                self.upstream.send(P.encode(P.DELIVER_SM_RESP, pdu.sequence, b"\0",
                                            P.ESME_RX_T_APPN))
            return
        seq = self.next_seq()
        self.deliver_map[seq] = pdu.sequence
        if len(self.deliver_map) > 100_000:  # an ESME that never answers: forget the oldest
            self.deliver_map.pop(next(iter(self.deliver_map)))
        self.send(P.reframe(pdu, seq))


# -- the proxy ----------------------------------------------------------------------------


def concat_info(sm: P.ShortMessage) -> tuple[int, int, int, bytes, int] | None:
    """(ref, total, seq, user data without UDH, shift table) of one part of a long SMS."""
    payload = sm.payload
    if sm.udhi:
        udh = parse_udh(payload)
        if udh is not None and udh.concat_ref is not None:
            return udh.concat_ref, udh.concat_total, udh.concat_seq, payload[udh.length:], \
                udh.shift_table
        return None
    ref = P.tlv_int(sm.tlvs, P.TLV_SAR_MSG_REF_NUM)
    total = P.tlv_int(sm.tlvs, P.TLV_SAR_TOTAL_SEGMENTS)
    seq = P.tlv_int(sm.tlvs, P.TLV_SAR_SEGMENT_SEQNUM)
    if ref is not None and total and seq and 1 <= seq <= total:
        return ref, total, seq, payload, 0
    return None


def user_text(sm: P.ShortMessage) -> str:
    payload = sm.payload
    shift = 0
    if sm.udhi:
        udh = parse_udh(payload)
        if udh is not None:
            payload, shift = payload[udh.length:], udh.shift_table
    return decode_payload(payload, sm.data_coding, shift_table=shift)


class SmppProxy:
    name = "smpp"

    def __init__(self, gw: Gateway, cfg: SmppSettings) -> None:
        if not cfg.upstream:
            raise ConfigError("MAMORI_SMPP__UPSTREAM is required when MAMORI_SMPP__LISTEN is set")
        self.gw = gw
        self.cfg = cfg
        self.upstream_addr = parse_hostport(cfg.upstream)
        self.listen = parse_hostport(cfg.listen)
        try:
            self.reject_status = P.status_value(cfg.reject_status)
            self.tempfail_status = P.status_value(cfg.tempfail_status)
        except ValueError as exc:
            raise ConfigError(f"MAMORI_SMPP__*_STATUS: {exc}") from None
        self.smsc_system_id = "mamori"
        self.sessions: set[EsmeSession] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.concat = Reassembler(wait=cfg.concat_wait, max_groups=cfg.concat_max_groups,
                                  max_bytes=cfg.concat_max_bytes)
        self.judged: OrderedDict[Hashable, tuple[Action, float]] = OrderedDict()
        self.server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._judging: list[_Judging] = []
        self._judge_scheduled = False
        self._judge_holder: list[_Judging] | None = None  # the batch whose judge computes

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.listen
        self.server = await loop.create_server(lambda: EsmeSession(self), host, port,
                                               reuse_address=True)
        self._ticker = asyncio.create_task(self._tick(), name="smpp-tick")
        log.info("smpp listening", extra={"listen": f"{host}:{port}"})

    def spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    # MT pipeline ------------------------------------------------------------------------
    def submit(self, item: _MtItem) -> None:
        info = concat_info(item.sm)
        if info is None:
            self._queue([item], user_text(item.sm), 1, None)
            return
        ref, total, seq, data, _shift = info
        sm = item.sm
        key = (item.session.system_id, sm.source_addr, sm.destination_addr, ref, total,
               sm.data_coding)
        prior = self.judged.get(key)
        if prior is not None:  # a late part of a group already judged: same decision
            self._apply([item], prior[0], None)
            return
        group, evicted = self.concat.add(key, total, seq, data, item)
        for g in evicted:
            self._judge_group(g)
        if group is not None:
            self._judge_group(group)

    def _judge_group(self, g: Group) -> None:
        parts = g.ordered()
        first: _MtItem = parts[0].item
        shift = (concat_info(first.sm) or (0, 0, 0, b"", 0))[4]
        text = decode_payload(g.payload(), first.sm.data_coding, shift_table=shift)
        self._queue([it for p in parts for it in p.items()], text, g.total, g.key)

    # Complete messages (from every session) are judged together, by one task per batch
    # (`Gateway.process_many`: no task per message, their quarantine copies in one group
    # commit); each is answered as soon as its own verdict is final.
    #
    # A batch is cut in the loop turn after its first message (by the first step of its
    # task) when no judge is computing; while one is (from its start until its first
    # verdicts are out, or it ends), messages wait for the next batch. At low load nothing waits; under load the batches grow with
    # it, and a batch costs about 1 ms of CPU besides its messages (`perf/sms_judge_bench.py
    # --batch`), so fewer, larger batches are most of the proxy's throughput. A judge waiting
    # for I/O holds the next batch back at most JUDGE_HOLD (policy reads of new subscribers
    # usually take less), and not at all after its verdicts (quarantine copies).

    def _queue(self, items: list[_MtItem], text: str, total: int, key: Hashable | None) -> None:
        self._judging.append(_Judging(items, text, total, key))
        if not self._judge_scheduled and self._judge_holder is None:
            self._judge_scheduled = True
            self.spawn(self._judge_next())

    async def _judge_next(self) -> None:
        """A judge task: its first step (next turn) takes what is queued by then; with
        MAMORI_SMPP__BATCH_WAIT, what is queued that much later (messages arriving meanwhile
        join the batch: fewer, larger batches for that much added latency)."""
        if self.cfg.batch_wait > 0:
            await asyncio.sleep(self.cfg.batch_wait)
        self._judge_scheduled = False
        if self._judge_holder is None and self._judging:
            batch, self._judging = self._judging, []
            self._judge_holder = batch
            await self._judge_many(batch)

    def _judge_queued(self) -> None:
        """Judge what is queued now, whether or not a judge computes (at stop)."""
        batch, self._judging = self._judging, []
        if batch:
            self._judge_holder = batch
            self.spawn(self._judge_many(batch))

    def _judge_free(self, batch: list[_Judging]) -> None:
        """The judge of `batch` is past its verdicts, waits or ended: the messages queued
        meanwhile go next (once per batch: a later call for an older batch does nothing)."""
        if self._judge_holder is batch:
            self._judge_holder = None
            if self._judging and not self._judge_scheduled:
                self._judge_scheduled = True
                self.spawn(self._judge_next())

    async def _judge_many(self, batch: list[_Judging]) -> None:
        loop = asyncio.get_running_loop()
        done = [False] * len(batch)
        hold = loop.call_later(JUDGE_HOLD, self._judge_free, batch)

        def decided(i: int, verdict: Verdict) -> None:
            if not hold.cancelled():  # after the rest of this step (its other verdicts)
                hold.cancel()
                loop.call_soon(self._judge_free, batch)
            done[i] = True
            self._decided(batch[i], verdict.action, verdict)

        _INFLIGHT.inc(len(batch))
        try:  # whatever fails, every message is answered and the next batch not held back
            msgs = [self._message(j) for j in batch]
            await self.gw.process_many(msgs, "smpp", on_verdict=decided)
        except Exception:
            log.exception("smpp: scan failed; answering a temporary failure")
        finally:
            hold.cancel()
            _INFLIGHT.dec(len(batch))
            try:
                for i, j in enumerate(batch):
                    if not done[i]:
                        self._decided(j, Action.SOFT_REJECT, None)
            finally:
                self._judge_free(batch)

    @staticmethod
    def _message(j: _Judging) -> Message:
        first = j.items[0]
        sm = first.sm
        proto = {"ton": str(sm.source_addr_ton), "npi": str(sm.source_addr_npi),
                 "dest_ton": str(sm.dest_addr_ton), "dest_npi": str(sm.dest_addr_npi),
                 "data_coding": str(sm.data_coding), "esm_class": str(sm.esm_class),
                 "system_id": first.session.system_id, "ingress": "smpp"}
        if j.total > 1:
            proto["parts"] = str(j.total)
            proto["parts_received"] = str(len(j.items))
        return Message.sms(j.text, sender=sm.source_addr, recipient=sm.destination_addr,
                           protocol=proto, peer=first.session.peer)

    def _decided(self, j: _Judging, action: Action, verdict: Verdict | None) -> None:
        if j.key is not None:
            self.judged[j.key] = (action, time.monotonic())
            while len(self.judged) > 50_000:
                self.judged.popitem(last=False)
        self._apply(j.items, action, verdict)

    def _apply(self, items: list[_MtItem], action: Action, verdict: Verdict | None) -> None:
        for it in items:
            s = it.session
            if s.closing:
                continue  # no answer: the ESME resubmits after it rebinds
            if action in (Action.ACCEPT, Action.TAG):
                s.forward(it)
            elif action is Action.QUARANTINE and self.cfg.quarantine_answer == "accept":
                s.answer(it, P.ESME_ROK, "q" + os.urandom(8).hex())
            elif action is Action.SOFT_REJECT:
                s.answer(it, self.tempfail_status)
            else:
                s.answer(it, self.reject_status)

    # housekeeping -----------------------------------------------------------------------
    async def _tick(self) -> None:
        cfg = self.cfg
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for g in self.concat.expired(now):
                self._judge_group(g)
            while self.judged:
                k, (_a, t) = next(iter(self.judged.items()))
                if now - t < max(cfg.concat_wait * 4, 60.0):
                    break
                del self.judged[k]
            for s in list(self.sessions):
                up = s.upstream
                if up is not None:
                    up.expire(now, cfg.response_timeout)
                    if now - up.last_tx > cfg.enquire_link_interval:
                        up.enquire()
                if cfg.idle_timeout > 0 and now - s.last_rx > cfg.idle_timeout and not s.closing:
                    s.send(P.encode(P.UNBIND, s.next_seq()))
                    self.spawn(s._finish())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._judge_queued()  # complete messages not yet handed to a judge
        for g in self.concat.drain():  # held parts: a temporary failure, the ESME retries
            for p in g.ordered():
                for it in p.items():
                    if not it.session.closing:
                        it.session.answer(it, self.tempfail_status)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5.0)
        sessions = list(self.sessions)
        for s in sessions:
            s.send(P.encode(P.UNBIND, s.next_seq()))
        await asyncio.gather(*(s._finish() for s in sessions), return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)


async def start(gw: Gateway) -> SmppProxy | None:
    cfg = gw.settings.smpp
    if not cfg.listen:
        return None
    proxy = SmppProxy(gw, cfg)
    await proxy.start()
    return proxy
