"""DMARC: record parsing, organisational domain (PSL), alignment, p/sp/np, pct, errors,
forced actions, the subscriber's softening, trusted ARC sealers, report events."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dkim
import pytest

from gateway.checks.auth.dmarc import (
    DmarcRecordError,
    aligned,
    organisational_domain,
    parse_record,
)
from gateway.events import MemorySink
from gateway.message import Message, Peer
from gateway.policy import Policy
from gateway.verdict import Action
from tests.auth.conftest import auth_settings, run_auth, zone_resolver

KEY_TXT = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bd"
    "OKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVY"
    "LzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)


@pytest.fixture(scope="module")
def private_key(shared_data: Path) -> bytes:
    return (shared_data / "conformance" / "dkim" / "dkimpy-data" / "test.private").read_bytes()


def mail(from_addr: str, *, extra: str = "") -> bytes:
    return (
        f"{extra}From: Someone <{from_addr}>\r\nTo: you@example.net\r\nSubject: hello\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nHello there.\r\n"
    ).encode()


def signed(raw: bytes, domain: str, key: bytes) -> bytes:
    sig = dkim.sign(raw, b"sel", domain.encode(), key, include_headers=[b"from", b"subject", b"to"])
    return sig + raw


def base_zone(**records: Any) -> dict[str, Any]:
    zone: dict[str, Any] = {
        "sel._domainkey.example.com": [{"TXT": KEY_TXT}],
        "sel._domainkey.other.example": [{"TXT": KEY_TXT}],
        "sel._domainkey.other.example.co.uk": [{"TXT": KEY_TXT}],
        "sel._domainkey.list.example": [{"TXT": KEY_TXT}],
        "bounces.example.com": [{"TXT": "v=spf1 ip4:192.0.2.10 -all"}, {"A": "192.0.2.10"}],
        "example.com": [{"TXT": "v=spf1 ip4:192.0.2.10 -all"}, {"A": "192.0.2.10"}],
        "mail.example.com": [{"A": "192.0.2.10"}],
        "sub.example.com": [{"A": "192.0.2.11"}],
        "list.example": [{"TXT": "v=spf1 ip4:198.51.100.7 -all"}],
    }
    for name, value in records.items():
        zone[name.replace("__", ".").replace("_dot_", ".")] = value
    return zone


def dmarc_zone(record: str | list[str], at: str = "_dmarc.example.com", **more: Any) -> dict[str, Any]:
    zone = base_zone(**more)
    recs = record if isinstance(record, list) else [record]
    zone[at] = [{"TXT": r} for r in recs]
    return zone


PEER = Peer(ip="203.0.113.5", helo="mx.elsewhere.example")


async def dmarc_of(raw: bytes, zone: dict[str, Any], *, sender: str = "x@elsewhere.example",
                   peer: Peer = PEER, **kw: Any) -> Any:
    msg = dataclasses.replace(Message.email(raw, peer=peer), sender=sender)
    return await run_auth(msg, zone_resolver(zone), **kw)


# -- parsing -------------------------------------------------------------------------------


def test_parse_record_full() -> None:
    r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=none; adkim=s; aspf=r; pct=50; "
                     "rua=mailto:a@example.com,mailto:b@example.com; fo=1")
    assert (r.p, r.sp, r.np, r.adkim, r.aspf, r.pct) == ("reject", "quarantine", "none", "s", "r", 50)
    assert r.rua == ("mailto:a@example.com", "mailto:b@example.com")
    assert parse_record("v=DMARC1;p=none").p == "none"
    assert parse_record("v=DMARC1; rua=mailto:a@example.com").p == "none"  # RFC 7489 6.6.3 step 6


@pytest.mark.parametrize("text", [
    "v=DMARC1; p=bogus", "v=DMARC1; p=reject; pct=150", "v=DMARC1; p=reject; adkim=x",
    "v=DMARC1", "p=reject; v=DMARC1", "v=DMARC1; p=reject; p=none", "v=DMARC1; p=reject; garbage",
    "v=DMARC1; p=reject; sp=maybe", "v=DMARC1; p=reject; rua=", "v=DMARC1; p=none; pct=-1",
])
def test_parse_record_malformed(text: str) -> None:
    with pytest.raises(DmarcRecordError):
        parse_record(text)


def test_organisational_domain_from_the_psl() -> None:
    assert organisational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organisational_domain("Mail.Example.COM.") == "example.com"
    assert organisational_domain("example.com") == "example.com"
    assert organisational_domain("co.uk") == "co.uk"
    assert organisational_domain("foo.bar.github.io") == "bar.github.io"  # private section
    assert organisational_domain("x.city.kawasaki.jp") == "city.kawasaki.jp"  # exception rule


def test_alignment_modes() -> None:
    assert aligned("mail.example.com", "example.com", "r")
    assert not aligned("mail.example.com", "example.com", "s")
    assert aligned("example.com", "EXAMPLE.com", "s")
    assert not aligned("example.co.uk", "other.co.uk", "r")
    assert not aligned("", "example.com", "r")


# -- evaluation ---------------------------------------------------------------------------


async def test_dkim_relaxed_alignment_passes_and_strict_fails(private_key: bytes) -> None:
    raw = signed(mail("a@mail.example.com"), "example.com", private_key)
    run = await dmarc_of(raw, dmarc_zone("v=DMARC1; p=reject"))
    res = run.result("dmarc")
    assert res.result == "pass" and res.dkim_aligned and "DMARC_PASS" in run.symbols
    assert res.policy_domain == "example.com"  # found at the organisational domain
    run = await dmarc_of(raw, dmarc_zone("v=DMARC1; p=reject; adkim=s"))
    res = run.result("dmarc")
    assert res.result == "fail" and not res.dkim_aligned
    assert res.policy == "reject"  # sp defaults to p for a subdomain
    assert "DMARC_POLICY_REJECT" in run.symbols


async def test_unaligned_dkim_signature_does_not_pass(private_key: bytes) -> None:
    raw = signed(mail("a@example.com"), "other.example", private_key)
    run = await dmarc_of(raw, dmarc_zone("v=DMARC1; p=quarantine"))
    assert run.result("dkim")[0].result == "pass"
    assert run.result("dmarc").result == "fail"
    assert "DMARC_POLICY_QUARANTINE" in run.symbols


async def test_spf_relaxed_and_strict_alignment() -> None:
    raw = mail("a@example.com")
    peer = Peer(ip="192.0.2.10", helo="mx.example.com")
    run = await dmarc_of(raw, dmarc_zone("v=DMARC1; p=reject"), sender="b@bounces.example.com", peer=peer)
    assert run.result("spf").result == "pass"
    assert run.result("dmarc").result == "pass" and run.result("dmarc").spf_aligned
    run = await dmarc_of(raw, dmarc_zone("v=DMARC1; p=reject; aspf=s"), sender="b@bounces.example.com",
                         peer=peer)
    assert run.result("dmarc").result == "fail"
    run = await dmarc_of(raw, dmarc_zone("v=DMARC1; p=reject; aspf=s"), sender="b@example.com", peer=peer)
    assert run.result("dmarc").result == "pass"


async def test_spf_fail_is_not_a_dmarc_pass() -> None:
    run = await dmarc_of(mail("a@example.com"), dmarc_zone("v=DMARC1; p=reject"), sender="b@example.com")
    assert run.result("spf").result == "fail"
    assert run.result("dmarc").result == "fail"


async def test_p_sp_and_np() -> None:
    zone = dmarc_zone("v=DMARC1; p=reject; sp=quarantine; np=none")
    res = (await dmarc_of(mail("a@example.com"), zone)).result("dmarc")
    assert (res.result, res.policy) == ("fail", "reject")
    res = (await dmarc_of(mail("a@sub.example.com"), zone)).result("dmarc")
    assert (res.result, res.policy) == ("fail", "quarantine")  # sp= for an existing subdomain
    res = (await dmarc_of(mail("a@nonexistent.example.com"), zone)).result("dmarc")
    assert (res.result, res.policy) == ("fail", "none")  # np= (RFC 9091) for a non-existent one
    zone = dmarc_zone("v=DMARC1; p=none; sp=none; np=reject")
    run = await dmarc_of(mail("a@ghost.example.com"), zone)
    assert run.result("dmarc").policy == "reject" and "DMARC_POLICY_REJECT" in run.symbols
    run = await dmarc_of(mail("a@sub.example.com"), zone)
    assert run.result("dmarc").policy == "none" and "DMARC_POLICY_NONE" in run.symbols


async def test_subdomain_record_wins_over_the_organisational_one() -> None:
    zone = dmarc_zone("v=DMARC1; p=reject", **{"_dmarc.sub.example.com": [{"TXT": "v=DMARC1; p=none"}]})
    res = (await dmarc_of(mail("a@sub.example.com"), zone)).result("dmarc")
    assert (res.policy_domain, res.policy) == ("sub.example.com", "none")


async def test_org_domain_discovery_under_a_multi_label_suffix(private_key: bytes) -> None:
    zone = dmarc_zone("v=DMARC1; p=reject", at="_dmarc.example.co.uk")
    raw = signed(mail("a@deep.mail.example.co.uk"), "other.example.co.uk", private_key)
    res = (await dmarc_of(raw, zone)).result("dmarc")
    assert (res.result, res.org_domain, res.policy_domain) == ("pass", "example.co.uk", "example.co.uk")
    # co.uk itself is a public suffix: another registrant's signature does not align
    raw = signed(mail("a@example.co.uk"), "other.example", private_key)
    assert (await dmarc_of(raw, zone)).result("dmarc").result == "fail"


@pytest.mark.parametrize("record", ["v=DMARC1; p=bogus", "v=DMARC1; p=reject; pct=200"])
async def test_malformed_record_is_permerror_and_no_policy(record: str) -> None:
    run = await dmarc_of(mail("a@example.com"), dmarc_zone(record))
    assert run.result("dmarc").result == "permerror"
    assert "DMARC_PERMERROR" in run.symbols
    assert "dmarc=permerror" in run.header


async def test_no_record_several_records_and_not_dmarc() -> None:
    run = await dmarc_of(mail("a@example.com"), base_zone())
    assert run.result("dmarc").result == "none" and "DMARC_NONE" in run.symbols
    two = dmarc_zone(["v=DMARC1; p=reject", "v=DMARC1; p=none"])
    assert (await dmarc_of(mail("a@example.com"), two)).result("dmarc").result == "none"
    other = dmarc_zone(["v=spf1 -all", "v=DMARC1; p=quarantine"])
    assert (await dmarc_of(mail("a@example.com"), other)).result("dmarc").policy == "quarantine"


async def test_dns_timeout_is_temperror() -> None:
    zone = base_zone(**{"_dmarc.example.com": ["TIMEOUT"]})
    run = await dmarc_of(mail("a@example.com"), zone)
    assert run.result("dmarc").result == "temperror" and "DMARC_TEMPERROR" in run.symbols


async def test_pct_zero_samples_out_to_the_next_policy() -> None:
    run = await dmarc_of(mail("a@example.com"), dmarc_zone("v=DMARC1; p=reject; pct=0"))
    res = run.result("dmarc")
    assert (res.policy, res.disposition, res.overrides) == ("reject", "quarantine", ("sampled_out",))
    assert "DMARC_POLICY_QUARANTINE" in run.symbols


async def test_multiple_from_domains_take_the_strictest(private_key: bytes) -> None:
    two = mail("a@example.com").replace(b"From: Someone <a@example.com>",
                                        b"From: a@example.com, b@victim.example")
    raw = signed(two, "example.com", private_key)  # passes for example.com only
    zone = dmarc_zone("v=DMARC1; p=reject", **{"_dmarc.victim.example": [{"TXT": "v=DMARC1; p=reject"}]})
    run = await dmarc_of(raw, zone)
    assert run.result("dmarc").result == "fail" and run.result("dmarc").domain == "victim.example"


# -- policy, ARC, reports through the gateway ----------------------------------------------


def arc_sealed(private_key: bytes) -> bytes:
    """A mail from victim.example (p=reject) forwarded by list.example, which saw it pass and
    sealed it; the list's rewrite broke nothing but SPF, as forwarding does."""
    raw = mail("a@victim.example", extra=(
        "Authentication-Results: list.example; spf=pass smtp.mailfrom=victim.example; "
        "dkim=pass header.d=victim.example; dmarc=pass header.from=victim.example\r\n"))
    headers = dkim.arc_sign(raw, b"sel", b"list.example", private_key, b"list.example",
                            timestamp=1_700_000_000)
    return b"".join(headers) + raw


async def test_trusted_arc_sealer_overrides_a_dmarc_failure(private_key: bytes, tmp_path: Path) -> None:
    raw = arc_sealed(private_key)
    zone = dmarc_zone("v=DMARC1; p=reject", at="_dmarc.victim.example")
    list_peer = Peer(ip="198.51.100.7", helo="mail.list.example")
    run = await dmarc_of(raw, zone, sender="bounce@list.example", peer=list_peer)
    assert run.result("arc").result == "pass"
    assert "DMARC_POLICY_REJECT" in run.symbols  # not trusted: the policy stands
    settings = auth_settings(tmp_path, trusted_arc_sealers=["list.example"])
    run = await dmarc_of(raw, zone, sender="bounce@list.example", peer=list_peer, settings=settings)
    res = run.result("dmarc")
    assert "DMARC_ARC_OVERRIDE" in run.symbols and "DMARC_POLICY_REJECT" not in run.symbols
    assert res.disposition == "none" and "trusted_forwarder" in res.overrides
    # a broken chain does not vouch for anything
    broken = raw.replace(b"Hello there.", b"Hello there!")
    run = await dmarc_of(broken, zone, sender="bounce@list.example", peer=list_peer, settings=settings)
    assert run.result("arc").result == "fail" and "DMARC_POLICY_REJECT" in run.symbols


async def _gateway(tmp_path: Path, zone: dict[str, Any], **auth: Any) -> Any:
    import yaml

    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore
    from tests.conftest import MemoryQuarantine

    zone_file = tmp_path / "zone.yml"
    zone_file.write_text(yaml.safe_dump(zone))
    settings = auth_settings(tmp_path / "data", zone_file=str(zone_file), **auth)
    sink = MemorySink()
    gw = Gateway.create(settings, events=sink, policies=MemoryPolicyStore())
    gw.quarantine = MemoryQuarantine()
    await gw.start()
    return gw, sink


async def test_dmarc_reject_forces_the_action_unless_the_subscriber_softens_it(tmp_path: Path) -> None:
    gw, sink = await _gateway(tmp_path, dmarc_zone("v=DMARC1; p=reject; rua=mailto:d@example.com"),
                              reports=True)
    try:
        msg = dataclasses.replace(Message.email(mail("ceo@example.com"), peer=PEER),
                                  sender="x@elsewhere.example")
        v = await gw.process(msg, ingress="test")
        assert v.action is Action.REJECT and v.reason == "DMARC_POLICY_REJECT"
        assert any(n == "Authentication-Results" and "dmarc=fail (p=reject dis=reject)" in val
                   for n, val in v.headers)
        soft = await gw.process(msg, ingress="test", policy=Policy(honour_dmarc=False))
        assert soft.action is not Action.REJECT and "DMARC_POLICY_SOFTENED" in soft.symbols
        assert soft.symbols["DMARC_POLICY_SOFTENED"].score > 0
    finally:
        await gw.close()
    events = [e for s, _k, e in sink.events if s == "dmarc"]
    assert len(events) == 2
    ev = events[0]
    assert ev["header_from"] == "example.com" and ev["disposition"] == "reject"
    assert events[1]["reasons"] == [{"type": "local_policy"}]
    text = repr(events)
    assert "ceo@" not in text and "x@elsewhere" not in text and "Hello" not in text
    rows = (tmp_path / "data" / "dmarc-reports" / "records").glob("*.jsonl")
    assert sum(len(p.read_text().splitlines()) for p in rows) == 2


async def test_no_report_data_without_a_connecting_client(tmp_path: Path) -> None:
    gw, sink = await _gateway(tmp_path, dmarc_zone("v=DMARC1; p=reject"), reports=True)
    try:
        v = await gw.process(Message.email(mail("ceo@example.com")), ingress="test")  # a file, no peer
        assert v.action is Action.REJECT
    finally:
        await gw.close()
    assert not [e for s, _k, e in sink.events if s == "dmarc"]
    assert not (tmp_path / "data" / "dmarc-reports" / "records").exists()


async def test_quarantine_policy_quarantines(tmp_path: Path) -> None:
    gw, _sink = await _gateway(tmp_path, dmarc_zone("v=DMARC1; p=quarantine"))
    try:
        v = await gw.process(Message.email(mail("a@example.com"), peer=PEER,
                                           recipients=["bob@example.net"]), ingress="test")
        assert v.action is Action.QUARANTINE and v.reason == "DMARC_POLICY_QUARANTINE"
    finally:
        await gw.close()


async def test_rsa_sha1_signatures_are_not_accepted(private_key: bytes) -> None:
    raw = mail("a@example.com")
    sig = dkim.sign(raw, b"sel", b"example.com", private_key, signature_algorithm=b"rsa-sha1",
                    include_headers=[b"from", b"subject"])
    assert dkim.verify(sig + raw, dnsfunc=lambda name, timeout=5: KEY_TXT.encode())  # valid as such
    run = await dmarc_of(sig + raw, dmarc_zone("v=DMARC1; p=reject"))
    assert [r.result for r in run.result("dkim")] == ["permerror"]
    assert "RFC 8301" in run.result("dkim")[0].reason
    assert run.result("dmarc").result == "fail"


# -- authheaders' DMARC test messages (real signed fixtures) --------------------------------

AUTHHEADERS_ZONE = {
    "test._domainkey.example.com": [{"TXT": KEY_TXT}],
    "test._domainkey.example.biz": [{"TXT": KEY_TXT}],
    "_dmarc.example.com": [{"TXT": "v=DMARC1; p=none"}],
    "_dmarc.example.org": [{"TXT": "v=DMARC1; p=reject"}],
    "_dmarc.example.biz": [{"TXT": "v=DMARC1; p=reject; sp=quarantine"}],
    "_dmarc.example.net": [{"TXT": "v=DMARC1; p=reject; sp=quarantine; np=reject"}],
    "sub.example.net": [{"A": "192.0.2.40"}],
    "_dmarc.nop.example.org": [{"TXT": "v=DMARC1; pct=100"}],
}


@pytest.mark.parametrize(("name", "result", "symbol"), [
    ("test.message_signed", "pass", "DMARC_PASS"),
    ("testcomma.message", "pass", "DMARC_PASS"),  # a comma inside the display name
    # sub.example.biz signed by example.biz, but the fixture was edited after signing (dkimpy
    # agrees the signature is bad): no aligned pass, the organisational sp= applies
    ("test.message_np1", "fail", "DMARC_POLICY_QUARANTINE"),
    ("test.message", "fail", "DMARC_POLICY_NONE"),  # unsigned, p=none
    ("test.message_multi", "fail", "DMARC_POLICY_REJECT"),  # a spoofed second From domain
    ("test.message_multi2", "fail", "DMARC_POLICY_REJECT"),
    ("test.message_sub", "fail", "DMARC_POLICY_QUARANTINE"),  # signed by an unrelated domain: sp=
    ("test_nop.message", "permerror", "DMARC_PERMERROR"),  # record without p= or rua=
    ("test.nofrom.message", "none", "DMARC_NONE"),  # From without an address
])
async def test_authheaders_messages(dkim_data: Path, name: str, result: str, symbol: str) -> None:
    raw = (dkim_data / "authheaders-messages" / name).read_bytes()
    run = await dmarc_of(raw, AUTHHEADERS_ZONE)
    assert run.result("dmarc").result == result, run.result("dmarc")
    assert symbol in run.symbols


async def test_simple_canonicalization_survives_headers_without_space(private_key: bytes) -> None:
    """c=simple signs the header fields byte for byte: a field received as `Subject:hello`
    (no space after the colon) or with a tab must verify, so the message's original header
    block is what DKIM sees, not fields rebuilt as `Name: value`."""
    raw = (b"From: Someone <a@example.com>\r\nTo:you@example.net\r\nSubject:\thello  there\r\n"
           b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nHello there.\r\n")
    sig = dkim.sign(raw, b"sel", b"example.com", private_key, canonicalize=(b"simple", b"simple"),
                    include_headers=[b"from", b"subject", b"to"])
    run = await dmarc_of(sig + raw, dmarc_zone("v=DMARC1; p=reject"))
    assert run.result("dkim")[0].result == "pass"
    assert run.result("dmarc").result == "pass"
    # a message whose header fields were changed falls back to rebuilding them (and fails)
    msg = Message.email(sig + raw, peer=PEER)
    changed = dataclasses.replace(msg, headers=(*msg.headers[:-1], ("Message-ID", "<2@x>")))
    assert b"Message-ID: <2@x>" in changed.raw() and b"Subject:\thello  there" not in changed.raw()
    assert msg.raw() == sig + raw
