"""The live backend (dnspython's asyncio resolver) over real UDP against a small DNS server
on loopback: answers with TTLs, multi-string TXT, CNAME chains, NXDOMAIN with the SOA
negative TTL, SERVFAIL and silence (temperror), and the whole SPF/DMARC path over it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from gateway.dns import CachingResolver, DnsPythonBackend, DnsTempError, MessageDns
from gateway.errors import ConfigError
from gateway.message import Message, Peer
from tests.auth.conftest import run_auth

RECORDS: dict[tuple[str, str], tuple[int, list[str]]] = {
    ("example.com.", "TXT"): (300, ['"v=spf1 ip4:192.0.2.10 " "-all"', '"unrelated"']),
    ("_dmarc.example.com.", "TXT"): (600, ['"v=DMARC1; p=reject"']),
    ("example.com.", "A"): (60, ["192.0.2.10"]),
    ("alias.example.com.", "CNAME"): (120, ["example.com."]),
}
SERVFAIL = {"broken.example.com."}
SILENT = {"silent.example.com."}


class Server(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dns.message.from_wire(data)
        question = q.question[0]
        name, rtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rtype))
        if name in SILENT:
            return
        resp = dns.message.make_response(q)
        if name in SERVFAIL:
            resp.set_rcode(dns.rcode.SERVFAIL)
        else:
            owner = name
            cname = RECORDS.get((owner, "CNAME"))
            if cname and rtype != "CNAME":
                resp.answer.append(dns.rrset.from_text(owner, cname[0], "IN", "CNAME", *cname[1]))
                owner = cname[1][0]
            got = RECORDS.get((owner, rtype))
            if got:
                resp.answer.append(dns.rrset.from_text(owner, got[0], "IN", rtype, *got[1]))
            elif not any(k[0] == owner for k in RECORDS):
                resp.set_rcode(dns.rcode.NXDOMAIN)
            if not got:
                resp.authority.append(dns.rrset.from_text(
                    "example.com.", 3600, "IN", "SOA", "ns.example.com. h.example.com. 1 7200 900 1209600 42"))
        self.transport.sendto(resp.to_wire(), addr)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        yield proto, f"127.0.0.1:{port}"
    finally:
        transport.close()


async def test_answers_ttls_and_strings(server: tuple[Server, str]) -> None:
    _proto, ns = server
    be = DnsPythonBackend(timeout=1.0, nameservers=[ns])
    ans = await be.query("Example.COM", "TXT")
    assert sorted(ans.txt()) == [b"unrelated", b"v=spf1 ip4:192.0.2.10 -all"] and ans.ttl == 300
    ans = await be.query("alias.example.com", "A")
    assert ans.values() == ["192.0.2.10"] and ans.values("CNAME") == ["example.com"]
    nx = await be.query("nothing.example.com", "TXT")
    assert nx.nxdomain and nx.ttl == 42  # min(SOA TTL, SOA minimum)
    nodata = await be.query("example.com", "MX")
    assert not nodata.nxdomain and nodata.empty and nodata.ttl == 42


async def test_servfail_and_silence_are_temp_errors(server: tuple[Server, str]) -> None:
    _proto, ns = server
    be = DnsPythonBackend(timeout=0.3, nameservers=[ns])
    for name in ("broken.example.com", "silent.example.com"):
        with pytest.raises(DnsTempError):
            await asyncio.wait_for(be.query(name, "TXT"), 3.0)


async def test_cache_in_front_of_the_wire(server: tuple[Server, str]) -> None:
    proto, ns = server
    r = CachingResolver(DnsPythonBackend(timeout=1.0, nameservers=[ns]))
    for _ in range(3):
        await MessageDns(r).query("example.com", "TXT")
    assert proto.queries.count(("example.com.", "TXT")) == 1


async def test_spf_and_dmarc_over_the_wire(server: tuple[Server, str]) -> None:
    _proto, ns = server
    r = CachingResolver(DnsPythonBackend(timeout=1.0, nameservers=[ns]))
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nhi\r\n"
    ok = dataclasses.replace(Message.email(raw, peer=Peer(ip="192.0.2.10", helo="mx")), sender="b@example.com")
    run = await run_auth(ok, r)
    assert run.result("spf").result == "pass" and run.result("dmarc").result == "pass"
    bad = dataclasses.replace(ok, peer=Peer(ip="203.0.113.9", helo="mx"))
    run = await run_auth(bad, r)
    assert run.result("spf").result == "fail" and "DMARC_POLICY_REJECT" in run.symbols


def test_nameserver_specs() -> None:
    DnsPythonBackend(nameservers=["192.0.2.53", "192.0.2.54:5353", "2001:db8::53", "[2001:db8::53]:53"])
    for bad in ("192.0.2.1:0", "192.0.2.1:x", "[2001:db8::1]:99999", "not-an-ip"):
        with pytest.raises(ConfigError):
            DnsPythonBackend(nameservers=[bad])

