"""Fault: DNS timing out or answering garbage. The auth checks give temperror (never a hang,
never a crash), the message is scanned and delivered, the Authentication-Results header says
temperror, and the SMTP client gets 250 only once the next hop has the mail."""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ingress import smtp as smtp_ingress
from gateway.runtime import Gateway
from tests.faults.support import Sink, smtp_send


class BadDns(asyncio.DatagramProtocol):
    """A nameserver that misbehaves in one of several ways."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.transport: Any = None
        self.queries = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries += 1
        qid = data[:2]
        if self.mode == "silent":
            return
        if self.mode == "garbage":
            reply = os.urandom(64)
        elif self.mode == "wrong_id":
            reply = bytes([data[0] ^ 0xFF, data[1]]) + data[2:]
        elif self.mode == "truncated_header":
            reply = qid + b"\x81"
        elif self.mode == "bad_counts":  # a response claiming 500 answers it does not carry
            reply = qid + struct.pack(">HHHHH", 0x8180, 1, 500, 0, 0) + data[12:]
        elif self.mode == "loop_pointer":  # a compression pointer to itself
            reply = qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + data[12:] + b"\xc0\x0c" * 2
            reply = reply[:-2] + struct.pack(">H", 0xC000 | (len(reply) - 2))
        else:
            raise AssertionError(self.mode)
        self.transport.sendto(reply, addr)


@pytest.mark.parametrize("mode", ["silent", "garbage", "wrong_id", "truncated_header",
                                  "bad_counts", "loop_pointer"])
async def test_dns_fault_gives_temperror_and_mail_flows(settings: Settings, mode: str) -> None:
    loop = asyncio.get_running_loop()
    transport, dns = await loop.create_datagram_endpoint(lambda: BadDns(mode),
                                                         local_addr=("127.0.0.1", 0))
    ns = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    with Sink() as sink:
        s = settings.model_copy(update={
            "auth": settings.auth.model_copy(update={"nameservers": [ns], "dns_timeout": 0.3}),
            "smtp": settings.smtp.model_copy(update={"listen": "127.0.0.1:0",
                                                     "next_hop": f"127.0.0.1:{sink.port}"}),
        })
        gw = Gateway.create(s)
        await gw.start()
        svc = await smtp_ingress.start(gw)
        assert svc is not None
        try:
            codes = await asyncio.wait_for(
                asyncio.gather(*(smtp_send(svc.port, i) for i in range(3))), 60)
        finally:
            await svc.stop()
            await gw.close()
            transport.close()
    assert [c for c, _ in codes] == [250, 250, 250]
    assert dns.queries > 0, "the checks did not use the faulty nameserver"
    assert len(sink.messages) == 3
    for raw in sink.messages:
        head = raw.split(b"\r\n\r\n", 1)[0].decode()
        assert "Authentication-Results:" in head
        assert "spf=temperror" in head, head
