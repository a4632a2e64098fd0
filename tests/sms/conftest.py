"""Fixtures for the SMS tests: a minimal upstream SMSC (our codec, over real sockets) and a
running SMPP proxy in front of it."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ingress import smpp_pdu as P
from gateway.ingress.smpp import SmppProxy
from gateway.runtime import Gateway

ESME_ID = "esme1"
ESME_PW = "secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakeSmsc:
    """Accepts any bind, answers submit_sm with ids 'm1', 'm2', ...; can push deliver_sm."""

    port: int = 0
    submits: list[P.ShortMessage] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    deliver_resps: list[P.Pdu] = field(default_factory=list)
    binds: list[P.Bind] = field(default_factory=list)
    enquire_links: int = 0
    server: asyncio.Server | None = None
    ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.append(w)
        try:
            while True:
                head = await r.readexactly(16)
                length, cid, _st, seq = struct.unpack(">IIII", head)
                body = await r.readexactly(length - 16)
                if cid in P.BIND_COMMANDS:
                    self.binds.append(P.parse_bind(body))
                    w.write(P.encode(cid | P.RESP_BIT, seq, b"smsc\0"))
                elif cid == P.SUBMIT_SM:
                    self.submits.append(P.parse_short_message(body))
                    w.write(P.encode(P.SUBMIT_SM_RESP, seq, f"m{next(self.ids)}\0".encode()))
                elif cid == P.ENQUIRE_LINK:
                    self.enquire_links += 1
                    w.write(P.encode(P.ENQUIRE_LINK_RESP, seq))
                elif cid == P.QUERY_SM:
                    w.write(P.encode(P.QUERY_SM_RESP, seq, b"m1\0\0\x02\0"))
                elif cid == P.DATA_SM:
                    self.submits.append(P.parse_data_sm(body))
                    w.write(P.encode(P.DATA_SM_RESP, seq, f"d{next(self.ids)}\0".encode()))
                elif cid == P.CANCEL_SM:
                    w.write(P.encode(P.CANCEL_SM_RESP, seq))
                elif cid == P.UNBIND:
                    w.write(P.encode(P.UNBIND_RESP, seq))
                    await w.drain()
                    w.close()
                    return
                elif cid == P.DELIVER_SM_RESP:
                    self.deliver_resps.append(P.Pdu(cid, _st, seq, body))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if w in self.writers:
                self.writers.remove(w)
            w.close()

    def deliver(self, sm: P.ShortMessage, seq: int = 777) -> None:
        for w in self.writers:
            w.write(P.encode(P.DELIVER_SM, seq, P.encode_short_message(sm)))

    async def stop(self) -> None:
        for w in list(self.writers):
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    s = FakeSmsc()
    await s.start()
    yield s
    await s.stop()


def proxy_settings(settings: Settings, upstream_port: int, **smpp: Any) -> Settings:
    cfg = settings.smpp.model_copy(update={
        "listen": f"127.0.0.1:{free_port()}", "upstream": f"127.0.0.1:{upstream_port}",
        "upstream_system_id": "mamori", "upstream_password": "up", "accounts": {ESME_ID: ESME_PW},
        "concat_wait": 1.0, **smpp})
    return settings.model_copy(update={"smpp": cfg})


@pytest.fixture
async def make_proxy(settings: Settings, smsc: FakeSmsc) -> AsyncIterator[Any]:
    made: list[tuple[Gateway, SmppProxy]] = []

    async def make(**smpp: Any) -> SmppProxy:
        s = proxy_settings(settings, smsc.port, **smpp)
        gw = Gateway.create(s)
        await gw.start()
        proxy = SmppProxy(gw, s.smpp)
        await proxy.start()
        made.append((gw, proxy))
        return proxy

    yield make
    for gw, proxy in made:
        await proxy.stop()
        await gw.close()


class RawEsme:
    """A raw SMPP client over asyncio streams, for exact and adversarial PDUs."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w
        self.seq = itertools.count(1)

    @classmethod
    async def connect(cls, proxy: SmppProxy) -> RawEsme:
        r, w = await asyncio.open_connection(*proxy.listen)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.w.write(data)
        await self.w.drain()

    async def read(self, timeout: float = 5.0) -> P.Pdu:
        head = await asyncio.wait_for(self.r.readexactly(16), timeout)
        length, cid, st, seq = struct.unpack(">IIII", head)
        body = await asyncio.wait_for(self.r.readexactly(length - 16), timeout)
        return P.Pdu(cid, st, seq, body)

    async def request(self, cid: int, body: bytes = b"") -> P.Pdu:
        await self.send(P.encode(cid, next(self.seq), body))
        return await self.read()

    async def bind(self, cid: int = P.BIND_TRANSCEIVER, system_id: str = ESME_ID,
                   password: str = ESME_PW) -> P.Pdu:
        return await self.request(cid, P.encode_bind(P.Bind(system_id, password)))

    async def closed(self, timeout: float = 5.0) -> bool:
        try:
            data = await asyncio.wait_for(self.r.read(), timeout)
        except (ConnectionError, TimeoutError):
            self.w.close()
            return True
        self.w.close()
        return data == b"" or self.r.at_eof()

    def close(self) -> None:
        self.w.close()


def submit_body(text: bytes, *, source: str = "+819012345678", dest: str = "+818011112222",
                data_coding: int = 0, esm_class: int = 0, source_ton: int = 1,
                tlvs: dict[int, bytes] | None = None) -> bytes:
    return P.encode_short_message(P.ShortMessage(
        source_addr_ton=source_ton, source_addr_npi=1, source_addr=source, dest_addr_ton=1,
        dest_addr_npi=1, destination_addr=dest, esm_class=esm_class, data_coding=data_coding,
        registered_delivery=1, short_message=text, tlvs=tlvs or {}))
