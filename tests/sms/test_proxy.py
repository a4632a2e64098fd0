"""The SMPP proxy over real sockets: binds, MT scan and forward/refuse, concatenation, MO and
receipts, enquire_link, unbind, windowing, throttling and adversarial PDUs."""

from __future__ import annotations

import asyncio
import struct

from gateway.ingress import smpp_pdu as P
from gateway.message import Message
from gateway.runtime import Gateway
from gateway.sms.encoding import concat_udh
from gateway.sms.registry import SenderIdEntry, registry_for
from gateway.verdict import Verdict

from .conftest import ESME_ID, FakeSmsc, RawEsme, proxy_settings, submit_body


def capture(proxy) -> list[Message]:  # type: ignore[no-untyped-def]
    seen: list[Message] = []

    async def hook(m: Message, v: Verdict, ingress: str) -> None:
        seen.append(m)

    proxy.gw.hooks.append(hook)
    return seen


def register_brand(proxy, sender: str = "MyBank", accounts=("bank-route",)) -> None:  # type: ignore[no-untyped-def]
    reg = registry_for(proxy.gw.env.resources, proxy.gw.settings.data_dir)
    reg.put(SenderIdEntry(sender, "My Bank", frozenset(accounts)))


async def test_bind_credentials(make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    r = await c.bind(password="wrong")
    assert r.command_id == P.BIND_TRANSCEIVER_RESP and r.status == P.ESME_RINVPASWD
    r = await c.bind(system_id="nobody")
    assert r.status == P.ESME_RINVSYSID
    r = await c.bind(P.BIND_TRANSMITTER)
    assert r.command_id == P.BIND_TRANSMITTER_RESP and r.status == P.ESME_ROK
    assert r.body.startswith(b"mamori\0")
    r = await c.bind()
    assert r.status == P.ESME_RALYBND
    c.close()


async def test_submit_before_bind_and_receiver_cannot_submit(make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    r = await c.request(P.SUBMIT_SM, submit_body(b"hello"))
    assert (r.command_id, r.status) == (P.SUBMIT_SM_RESP, P.ESME_RINVBNDSTS)
    assert (await c.bind(P.BIND_RECEIVER)).status == P.ESME_ROK
    r = await c.request(P.SUBMIT_SM, submit_body(b"hello"))
    assert r.status == P.ESME_RINVBNDSTS
    c.close()


async def test_ham_forwarded_with_upstream_message_id(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    seen = capture(proxy)
    c = await RawEsme.connect(proxy)
    await c.bind()
    r = await c.request(P.SUBMIT_SM, submit_body(b"See you at 7 tonight?"))
    assert r.status == P.ESME_ROK
    assert P.parse_message_id_resp(r.body) == "m1"
    assert smsc.submits[0].short_message == b"See you at 7 tonight?"
    assert smsc.binds[0].system_id == "mamori"
    assert seen[0].text == "See you at 7 tonight?"
    assert seen[0].protocol["system_id"] == ESME_ID
    assert seen[0].protocol["ton"] == "1"
    c.close()


async def test_spoofed_brand_refused_with_configured_status(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy(reject_status="ESME_RSUBMITFAIL")
    register_brand(proxy)
    c = await RawEsme.connect(proxy)
    await c.bind()
    r = await c.request(P.SUBMIT_SM, submit_body(b"Your account is locked", source="MyBank",
                                                 source_ton=5))
    assert r.status == P.ESME_RSUBMITFAIL
    assert smsc.submits == []
    c.close()


async def test_quarantine_answers_success_without_delivery(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    proxy.gw.pipeline.scores.force_actions["SMS_SENDER_LOOKALIKE"] = __import__(
        "gateway.verdict", fromlist=["Action"]).Action.QUARANTINE
    register_brand(proxy)
    # a look-alike without the subscriber's spoof block: quarantine
    from gateway.policy import Policy

    await proxy.gw.policies.put(Policy(subscriber="+818011112222", block_spoofed=False))
    c = await RawEsme.connect(proxy)
    await c.bind()
    r = await c.request(P.SUBMIT_SM, submit_body(b"hello", source="MYB4NK", source_ton=5))
    assert r.status == P.ESME_ROK and P.parse_message_id_resp(r.body).startswith("q")
    assert smsc.submits == []
    c.close()


async def test_udh_concatenated_ucs2_reassembled_and_judged_once(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    seen = capture(proxy)
    text = "明日の打ち合わせは午前十時から第三会議室で行います。よろしくお願いします。" * 5
    raw = text.encode("utf-16-be")
    chunks = [raw[i:i + 134] for i in range(0, len(raw), 134)]
    assert len(chunks) == 3
    c = await RawEsme.connect(proxy)
    await c.bind()
    for i, ch in enumerate(chunks):
        await c.send(P.encode(P.SUBMIT_SM, 10 + i, submit_body(
            concat_udh(0x42, 3, i + 1) + ch, data_coding=8, esm_class=P.ESM_UDHI)))
    resps = [await c.read() for _ in chunks]
    assert sorted(r.sequence for r in resps) == [10, 11, 12]
    assert all(r.status == P.ESME_ROK for r in resps)
    assert len(seen) == 1 and seen[0].text == text
    assert seen[0].protocol["parts"] == "3"
    assert len(smsc.submits) == 3
    c.close()


async def test_sar_tlv_concatenation_and_bounded_wait(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy(concat_wait=0.3)
    seen = capture(proxy)
    c = await RawEsme.connect(proxy)
    await c.bind()
    for seqn, part in ((1, b"Hello "), (2, b"world")):
        tlvs = {P.TLV_SAR_MSG_REF_NUM: b"\x00\x07", P.TLV_SAR_TOTAL_SEGMENTS: b"\x02",
                P.TLV_SAR_SEGMENT_SEQNUM: bytes((seqn,))}
        await c.send(P.encode(P.SUBMIT_SM, seqn, submit_body(part, tlvs=tlvs)))
    assert {(await c.read()).status for _ in range(2)} == {P.ESME_ROK}
    assert seen[0].text == "Hello world"
    # only one of three parts: judged on what arrived once the wait is over
    tlvs = {P.TLV_SAR_MSG_REF_NUM: b"\x00\x08", P.TLV_SAR_TOTAL_SEGMENTS: b"\x03",
            P.TLV_SAR_SEGMENT_SEQNUM: b"\x01"}
    r = await c.request(P.SUBMIT_SM, submit_body(b"lonely part", tlvs=tlvs))
    assert r.status == P.ESME_ROK
    assert seen[1].protocol["parts_received"] == "1"
    c.close()


async def test_mo_and_receipt_flow_back(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    await c.bind()
    await asyncio.sleep(0.05)
    receipt = P.ShortMessage(source_addr="+818011112222", destination_addr="+819012345678",
                             esm_class=P.ESM_DELIVERY_RECEIPT,
                             short_message=b"id:m1 sub:001 dlvrd:001 stat:DELIVRD err:000")
    smsc.deliver(receipt, seq=4242)
    pdu = await c.read()
    assert pdu.command_id == P.DELIVER_SM
    sm = P.parse_short_message(pdu.body)
    assert sm.is_receipt and sm.short_message.startswith(b"id:m1")
    await c.send(P.encode(P.DELIVER_SM_RESP, pdu.sequence, b"\0"))
    for _ in range(50):
        if smsc.deliver_resps:
            break
        await asyncio.sleep(0.02)
    assert smsc.deliver_resps[0].sequence == 4242
    c.close()


async def test_enquire_link_query_and_unbind(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    r = await c.request(P.ENQUIRE_LINK)  # allowed before bind
    assert (r.command_id, r.status) == (P.ENQUIRE_LINK_RESP, P.ESME_ROK)
    await c.bind()
    r = await c.request(P.QUERY_SM, b"m1\0\x01\x01+81\0")
    assert r.command_id == P.QUERY_SM_RESP and r.body.startswith(b"m1\0")
    r = await c.request(P.UNBIND)
    assert (r.command_id, r.status) == (P.UNBIND_RESP, P.ESME_ROK)
    assert await c.closed()


async def test_window_and_throttle(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy(window=2, concat_wait=30.0)
    c = await RawEsme.connect(proxy)
    await c.bind()
    # two held parts of a long message fill the window: the third submit is throttled
    for i in (1, 2):
        await c.send(P.encode(P.SUBMIT_SM, i, submit_body(
            concat_udh(9, 3, i) + b"part", esm_class=P.ESM_UDHI)))
    r = await c.request(P.SUBMIT_SM, submit_body(b"third"))
    assert r.status == P.ESME_RTHROTTLED
    c.close()

    proxy2 = await make_proxy(throttle_rate=2.0)
    c2 = await RawEsme.connect(proxy2)
    await c2.bind()
    statuses = [(await c2.request(P.SUBMIT_SM, submit_body(b"hi"))).status for _ in range(5)]
    assert P.ESME_RTHROTTLED in statuses and statuses[0] == P.ESME_ROK
    c2.close()


async def test_unknown_command_id_gets_generic_nack(make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    await c.bind()
    await c.send(P.encode(0x00000777, 55))
    r = await c.read()
    assert (r.command_id, r.status, r.sequence) == (P.GENERIC_NACK, P.ESME_RINVCMDID, 55)
    r = await c.request(P.ENQUIRE_LINK)  # the session goes on
    assert r.command_id == P.ENQUIRE_LINK_RESP
    c.close()


async def test_bad_command_length_nacks_and_closes(make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    for length in (8, 10_000_000):
        c = await RawEsme.connect(proxy)
        await c.send(struct.pack(">IIII", length, P.ENQUIRE_LINK, 0, 1))
        r = await c.read()
        assert (r.command_id, r.status) == (P.GENERIC_NACK, P.ESME_RINVCMDLEN)
        assert await c.closed()


async def test_missing_nul_and_truncated_body(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    # bind whose system_id has no NUL at all: generic_nack (invalid command length)
    await c.send(P.encode(P.BIND_TRANSCEIVER, 3, b"esme1"))
    r = await c.read()
    assert (r.command_id, r.status, r.sequence) == (P.GENERIC_NACK, P.ESME_RINVCMDLEN, 3)
    await c.bind()
    # source_addr longer than 21 octets: the field's own error in submit_sm_resp
    body = b"\0\x01\x01" + b"9" * 40 + b"\0" + b"\x01\x01123\0" + b"\0" * 20
    r = await c.request(P.SUBMIT_SM, body)
    assert (r.command_id, r.status) == (P.SUBMIT_SM_RESP, P.ESME_RINVSRCADR)
    # truncated after the addresses
    r = await c.request(P.SUBMIT_SM, submit_body(b"x")[:30])
    assert r.command_id == P.GENERIC_NACK and r.status == P.ESME_RINVCMDLEN
    assert smsc.submits == []
    r = await c.request(P.ENQUIRE_LINK)
    assert r.command_id == P.ENQUIRE_LINK_RESP
    c.close()


async def test_huge_and_broken_tlvs(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    await c.bind()
    # a TLV claiming 65535 bytes but carrying 10
    body = submit_body(b"hi") + struct.pack(">HH", 0x1400, 0xFFFF) + b"x" * 10
    r = await c.request(P.SUBMIT_SM, body)
    assert r.command_id == P.SUBMIT_SM_RESP and r.status == P.ESME_RINVPARLEN
    # a real 60 KiB message_payload is accepted and scanned
    big = ("a" * 60_000).encode()
    r = await c.request(P.SUBMIT_SM, submit_body(b"", tlvs={P.TLV_MESSAGE_PAYLOAD: big}))
    assert r.status == P.ESME_ROK
    # more than the PDU limit: generic_nack and close
    await c.send(P.encode(P.SUBMIT_SM, 99, submit_body(b"", tlvs={0x1401: b"z" * 65_000}) * 2))
    r = await c.read()
    assert r.command_id == P.GENERIC_NACK
    assert await c.closed()
    assert len(smsc.submits) == 1


async def test_upstream_down_fails_bind(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    await smsc.stop()
    c = await RawEsme.connect(proxy)
    r = await c.bind()
    assert r.status == P.ESME_RBINDFAIL
    c.close()


async def test_duplicate_part_is_answered_too(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    c = await RawEsme.connect(proxy)
    await c.bind()
    for seq, part in ((1, 1), (2, 1), (3, 2)):  # part 1 resubmitted before part 2
        await c.send(P.encode(P.SUBMIT_SM, seq, submit_body(
            concat_udh(5, 2, part) + b"chunk", esm_class=P.ESM_UDHI)))
    resps = [await c.read() for _ in range(3)]
    assert sorted(r.sequence for r in resps) == [1, 2, 3]
    assert all(r.status == P.ESME_ROK for r in resps)
    c.close()


async def test_serve_entry_point(settings, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    from gateway.ingress import smpp

    gw = Gateway.create(settings)
    assert await smpp.start(gw) is None  # no listen address: off
    await gw.close()
    s = proxy_settings(settings, smsc.port)
    gw = Gateway.create(s)
    await gw.start()
    svc = await smpp.start(gw)
    assert svc is not None and svc.name == "smpp"
    c = await RawEsme.connect(svc)
    assert (await c.bind()).status == P.ESME_ROK
    await svc.stop()  # unbinds the ESME
    pdu = await c.read()
    assert pdu.command_id == P.UNBIND
    c.close()
    await gw.close()


async def test_random_bodies_never_crash_the_session(make_proxy, smsc: FakeSmsc,
                                                     caplog) -> None:  # type: ignore[no-untyped-def]
    import random

    proxy = await make_proxy(window=1000)
    rnd = random.Random(1234)
    c = await RawEsme.connect(proxy)
    await c.bind()
    commands = [P.SUBMIT_SM, P.QUERY_SM, P.CANCEL_SM, P.DATA_SM, P.REPLACE_SM, P.DELIVER_SM,
                P.BIND_TRANSMITTER, P.OUTBIND, P.ALERT_NOTIFICATION, P.SUBMIT_MULTI, 0x1234]
    sent = 0
    for i in range(300):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 120)))
        if rnd.random() < 0.5:  # mostly-valid submit_sm with a mutated tail
            body = submit_body(b"fuzz %d" % i)[: rnd.randrange(0, 60)] + body
        await c.send(P.encode(rnd.choice(commands), 1000 + i, body))
        sent += 1
    answered = 0
    seen = set()
    try:
        for _ in range(sent):
            pdu = await c.read()
            assert pdu.command_id & P.RESP_BIT
            seen.add(pdu.sequence)
            answered += 1
    except TimeoutError:
        missing = sorted(set(range(1000, 1000 + sent)) - seen)
        raise AssertionError(f"unanswered: {missing[:10]}") from None
    r = await c.request(P.ENQUIRE_LINK)
    assert r.command_id == P.ENQUIRE_LINK_RESP
    assert answered == sent
    assert "failed to handle" not in caplog.text
    c.close()


def data_sm_body(text: bytes, source: str, ton: int = 1) -> bytes:
    return (b"\0" + bytes((ton, 1)) + source.encode() + b"\0" + b"\x01\x01+818011112222\0"
            + bytes((0, 1, 0)) + P.encode_tlv(P.TLV_MESSAGE_PAYLOAD, text))


async def test_data_sm_scanned_like_submit_sm(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy()
    register_brand(proxy)
    seen = capture(proxy)
    c = await RawEsme.connect(proxy)
    await c.bind()
    r = await c.request(P.DATA_SM, data_sm_body(b"lunch at noon?", "+819012345678"))
    assert (r.command_id, r.status) == (P.DATA_SM_RESP, P.ESME_ROK)
    assert P.parse_message_id_resp(r.body).startswith("d")
    r = await c.request(P.DATA_SM, data_sm_body(b"card locked", "MyBank", ton=5))
    assert (r.command_id, r.status) == (P.DATA_SM_RESP, P.ESME_RX_R_APPN)
    assert [m.text for m in seen] == ["lunch at noon?", "card locked"]
    assert len(smsc.submits) == 1
    c.close()


async def test_upstream_keepalive_and_idle_esme_unbound(make_proxy, smsc: FakeSmsc) -> None:  # type: ignore[no-untyped-def]
    proxy = await make_proxy(enquire_link_interval=0.2, idle_timeout=1.0)
    c = await RawEsme.connect(proxy)
    await c.bind()
    pdu = await c.read(timeout=5.0)  # the ESME stays silent: mamori unbinds it
    assert pdu.command_id == P.UNBIND
    assert smsc.enquire_links >= 1  # meanwhile mamori kept its upstream bind alive
    assert await c.closed()
