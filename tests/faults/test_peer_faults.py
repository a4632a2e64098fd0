"""Fault: the upstream SMSC or the next-hop MTA refusing or vanishing.

SMPP: an SMSC refusal is relayed to the ESME with the SMSC's own status; an SMSC that goes
silent or drops the link makes every outstanding submit_sm answer the temporary-failure status
(MAMORI_SMPP__TEMPFAIL_STATUS, ESME_RX_T_APPN), then the ESME is unbound so it rebinds. No
submit_sm is answered ESME_ROK unless the SMSC took it.
SMTP: a next hop that refuses temporarily, vanishes or never answers gives the client 451 (it
retries); a permanent refusal gives 554; 250 only when the next hop accepted the message."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ingress import smpp_pdu as P
from gateway.ingress import smtp as smtp_ingress
from gateway.ingress.smpp import SmppProxy
from gateway.runtime import Gateway
from tests.faults.support import Sink, free_port, smtp_send
from tests.sms.conftest import RawEsme, proxy_settings, submit_body


class FaultySmsc:
    """Binds anyone; answers submit_sm per `mode`: ok, refuse (ESME_RMSGQFUL), silent, vanish
    (the TCP link is dropped on the first submit_sm after `vanish_after` accepted ones)."""

    def __init__(self, mode: str = "ok", vanish_after: int = 0) -> None:
        self.mode = mode
        self.vanish_after = vanish_after
        self.accepted: list[bytes] = []
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> FaultySmsc:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.append(w)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length, cid, _st, seq = struct.unpack(">IIII", await r.readexactly(16))
                body = await r.readexactly(length - 16)
                if cid in P.BIND_COMMANDS:
                    w.write(P.encode(cid | P.RESP_BIT, seq, b"smsc\0"))
                elif cid == P.ENQUIRE_LINK:
                    w.write(P.encode(P.ENQUIRE_LINK_RESP, seq))
                elif cid == P.UNBIND:
                    w.write(P.encode(P.UNBIND_RESP, seq))
                elif cid == P.SUBMIT_SM:
                    sm = P.parse_short_message(body).short_message
                    if self.mode == "refuse":
                        w.write(P.encode(P.SUBMIT_SM_RESP, seq, status=P.ESME_RMSGQFUL))
                    elif self.mode == "silent":
                        pass
                    elif self.mode == "vanish" and len(self.accepted) >= self.vanish_after:
                        w.transport.abort()
                        return
                    else:
                        self.accepted.append(sm)
                        w.write(P.encode(P.SUBMIT_SM_RESP, seq, f"m{len(self.accepted)}\0".encode()))
                await w.drain()


async def run_proxy(settings: Settings, smsc: FaultySmsc, **smpp: Any) -> tuple[Gateway, SmppProxy]:
    s = proxy_settings(settings, smsc.port, **smpp)
    gw = Gateway.create(s)
    await gw.start()
    proxy = SmppProxy(gw, s.smpp)
    await proxy.start()
    return gw, proxy


async def submit_many(c: RawEsme, texts: list[bytes]) -> dict[int, P.Pdu]:
    """Pipeline every submit_sm, then collect the responses by sequence number."""
    seqs = {}
    for t in texts:
        seq = next(c.seq)
        seqs[seq] = t
        await c.send(P.encode(P.SUBMIT_SM, seq, submit_body(t)))
    out: dict[int, P.Pdu] = {}
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        while len(out) < len(seqs):
            pdu = await c.read(timeout=10)
            if pdu.command_id == P.SUBMIT_SM_RESP:
                out[pdu.sequence] = pdu
            elif pdu.command_id == P.UNBIND:
                await c.send(P.encode(P.UNBIND_RESP, pdu.sequence))
    return {seq: out[seq] for seq in seqs if seq in out}


@pytest.mark.parametrize("mode", ["refuse", "silent", "vanish"])
async def test_smsc_refusing_or_vanishing(settings: Settings, mode: str) -> None:
    smsc = await FaultySmsc(mode, vanish_after=3).start()
    gw, proxy = await run_proxy(settings, smsc, response_timeout=1.0)
    try:
        c = await RawEsme.connect(proxy)
        assert (await c.bind()).status == P.ESME_ROK
        texts = [f"See you at {7 + i} tonight".encode() for i in range(8)]
        resps = await submit_many(c, texts)
        c.close()
    finally:
        await proxy.stop()
        await gw.close()
        await smsc.stop()
    assert len(resps) == len(texts), "a submit_sm went unanswered"
    ok = [r for r in resps.values() if r.status == P.ESME_ROK]
    # nothing acknowledged is lost: every ESME_ROK is a message the SMSC took
    assert len(ok) == len(smsc.accepted)
    failed = {r.status for r in resps.values() if r.status != P.ESME_ROK}
    if mode == "refuse":
        assert failed == {P.ESME_RMSGQFUL} and not ok  # the SMSC's own answer
    elif mode == "silent":
        assert failed == {P.ESME_RX_T_APPN} and not ok
    else:
        assert len(ok) == 3 and failed == {P.ESME_RX_T_APPN}


@pytest.mark.parametrize(("fault", "code"), [("451", 451), ("554", 554), ("vanished", 451),
                                             ("silent", 451)])
async def test_next_hop_refusing_or_vanishing(settings: Settings, fault: str, code: int) -> None:
    silent: asyncio.Server | None = None
    held: list[asyncio.StreamWriter] = []
    sink = None
    if fault in ("451", "554"):
        sink = Sink(reply="451 4.3.0 busy" if fault == "451" else "554 5.7.1 no")
        sink.controller.start()
        hop = f"127.0.0.1:{sink.port}"
    elif fault == "vanished":
        hop = f"127.0.0.1:{free_port()}"
    else:  # accepts the TCP connection and never says a word
        silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
        hop = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    s = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
        "listen": "127.0.0.1:0", "next_hop": hop, "relay_timeout": 1.5})})
    gw = Gateway.create(s)
    await gw.start()
    svc = await smtp_ingress.start(gw)
    assert svc is not None
    try:
        codes = [(await smtp_send(svc.port, i))[0] for i in range(3)]
    finally:
        await svc.stop()
        await gw.close()
        if sink is not None:
            sink.controller.stop()
        if silent is not None:
            silent.close()
            for w in held:
                w.close()
            await silent.wait_closed()
    assert codes == [code] * 3
