"""Unit tests: PDU codec, encodings, UDH, reassembly, sender types, registry, flood counters."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingress import smpp_pdu as P
from gateway.ingress.smpp import concat_info, user_text
from gateway.sms.concat import Reassembler
from gateway.sms.encoding import (
    Coding,
    classify,
    concat_udh,
    decode_gsm7,
    decode_payload,
    encode_gsm7,
    parse_udh,
    unpack_septets,
)
from gateway.sms.flood import MemoryCounter, text_fingerprint
from gateway.sms.registry import SenderIdEntry, SenderIdRegistry, skeleton
from gateway.sms.sender import SenderType, country_code, is_international, sender_type

# -- codec --------------------------------------------------------------------------------


def test_short_message_roundtrip() -> None:
    sm = P.ShortMessage(source_addr_ton=5, source_addr="MyBank", dest_addr_ton=1,
                        destination_addr="+818011112222", esm_class=0x40, data_coding=8,
                        registered_delivery=1, short_message=b"\x05\x00\x03\x01\x02\x01abc",
                        tlvs={P.TLV_USER_MESSAGE_REFERENCE: b"\x00\x07"})
    back = P.parse_short_message(P.encode_short_message(sm))
    assert back == sm


def test_frame_decoder_splits_and_joins() -> None:
    a = P.encode(P.ENQUIRE_LINK, 1)
    b = P.encode(P.SUBMIT_SM_RESP, 2, b"id\0")
    d = P.FrameDecoder()
    data = a + b
    out = []
    for i in range(len(data)):  # byte by byte
        out += d.feed(data[i:i + 1])
    assert [(p.command_id, p.sequence, p.body) for p in out] == [
        (P.ENQUIRE_LINK, 1, b""), (P.SUBMIT_SM_RESP, 2, b"id\0")]
    assert d.pending == 0
    with pytest.raises(P.PduError) as e:
        P.FrameDecoder().feed(struct.pack(">IIII", 15, 1, 0, 1))
    assert e.value.status == P.ESME_RINVCMDLEN and e.value.fatal


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_never_crash(body: bytes) -> None:
    for parse in (P.parse_short_message, P.parse_bind):
        try:
            parse(body)
        except P.PduError as e:
            assert e.status in P.STATUS_NAMES


def test_status_names() -> None:
    assert P.status_value("ESME_RX_R_APPN") == 0x102
    assert P.status_value("esme_rsubmitfail") == 0x45
    assert P.status_value("0x58") == P.ESME_RTHROTTLED
    with pytest.raises(ValueError):
        P.status_value("ESME_NOPE")
    assert P.COMMAND_NAMES[P.GENERIC_NACK] == "generic_nack"


# -- encodings ------------------------------------------------------------------------------


def test_gsm7_default_extension_and_shift() -> None:
    text = "Hello @£$ {}[]~€ ÄÖÑÜ"
    enc = encode_gsm7(text)
    assert enc is not None and decode_gsm7(enc) == text
    assert encode_gsm7("日本") is None
    assert decode_gsm7(bytes([0x1B, 0x47]), shift_table=1) == "Ğ"  # Turkish single shift
    assert decode_gsm7(bytes([0x41, 0x1B])) == "A"  # dangling escape dropped


def test_unpack_septets() -> None:
    # "hellohello" packed (3GPP 23.038 example)
    packed = bytes.fromhex("E8329BFD4697D9EC37")
    assert decode_gsm7(unpack_septets(packed, 10)) == "hellohello"


def test_data_codings() -> None:
    assert classify(0)[0] is Coding.GSM7
    assert classify(8)[0] is Coding.UCS2
    assert classify(3)[0] is Coding.LATIN1
    assert classify(4)[0] is Coding.BINARY
    assert classify(0xF4)[0] is Coding.BINARY and classify(0xF0)[0] is Coding.GSM7
    assert classify(0x18)[0] is Coding.UCS2  # general group, compressed bit off, UCS2
    assert decode_payload("こんにちは😀".encode("utf-16-be"), 8) == "こんにちは😀"
    assert decode_payload("café".encode("latin-1"), 3) == "café"
    assert decode_payload(b"\x01\x02", 4) == "0102"
    assert decode_payload("テスト".encode("shift_jis"), 5) == "テスト"


def test_udh_parsing() -> None:
    u = parse_udh(concat_udh(0x42, 3, 2) + b"rest")
    assert u is not None and (u.concat_ref, u.concat_total, u.concat_seq, u.length) == (0x42, 3, 2, 6)
    u16 = parse_udh(bytes([6, 8, 4, 0x12, 0x34, 2, 1]) + b"x")
    assert u16 is not None and (u16.concat_ref, u16.concat_total, u16.concat_seq) == (0x1234, 2, 1)
    assert parse_udh(bytes([9, 0, 3])) is None  # UDH longer than the data
    bad = parse_udh(bytes([5, 0, 3, 1, 2, 5]))  # seq > total: ignored
    assert bad is not None and bad.concat_ref is None


def test_concat_info_and_text() -> None:
    sm = P.ShortMessage(esm_class=P.ESM_UDHI, data_coding=8,
                        short_message=concat_udh(7, 2, 1) + "日本".encode("utf-16-be"))
    assert concat_info(sm) == (7, 2, 1, "日本".encode("utf-16-be"), 0)
    assert user_text(sm) == "日本"
    plain = P.ShortMessage(short_message=b"hi")
    assert concat_info(plain) is None and user_text(plain) == "hi"


def test_reassembler_bounds() -> None:
    now = [0.0]
    r = Reassembler(wait=5.0, max_groups=2, max_bytes=100, clock=lambda: now[0])
    assert r.add("a", 2, 1, b"x" * 10) == (None, [])
    done, ev = r.add("a", 2, 2, b"y")
    assert done is not None and done.payload() == b"x" * 10 + b"y" and ev == []
    r.add("b", 3, 1, b"1")
    r.add("c", 3, 1, b"2")
    _, ev = r.add("d", 3, 1, b"3")  # over max_groups: the oldest goes
    assert [g.key for g in ev] == ["b"]
    _, ev = r.add("e", 3, 1, b"z" * 99)  # over max_bytes
    assert ev and r.bytes <= 100
    now[0] = 10.0
    assert {g.key for g in r.expired()} == {"e"} | {k for k in ("c", "d") if k not in
                                                     {g.key for g in ev}}
    assert len(r) == 0


# -- sender types, registry, flood ----------------------------------------------------------


def test_sender_types() -> None:
    assert sender_type("MyBank", 5) is SenderType.ALPHANUMERIC
    assert sender_type("MyBank") is SenderType.ALPHANUMERIC
    assert sender_type("819012345678", 1) is SenderType.INTERNATIONAL
    assert sender_type("+447700900123") is SenderType.INTERNATIONAL
    assert sender_type("09012345678", 2) is SenderType.NATIONAL
    assert sender_type("12345", 3) is SenderType.SHORT_CODE
    assert sender_type("12345") is SenderType.SHORT_CODE
    assert is_international("+447700900123", None, "81")
    assert not is_international("+819012345678", None, "81")
    assert not is_international("09012345678", 2, "81")
    assert [country_code(n) for n in ("+447700900123", "+12025550123", "+8190", "+85291234567")] \
        == ["44", "1", "81", "852"]
    assert is_international("+85291234567", 1, "81")


def test_registry_lookalikes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reg = SenderIdRegistry(tmp_path / "r.sqlite3")
    reg.put(SenderIdEntry("PayPal", "PayPal", frozenset({"pp"})))
    assert skeleton("PAYPA1") == skeleton("Pay-Pal") == skeleton("ＰａｙＰａｌ") == "paypal"  # noqa: RUF001
    m = reg.lookup("paypal")
    assert m is not None and m.exact
    m = reg.lookup("PAYPA1")
    assert m is not None and not m.exact and m.entry.brand == "PayPal"
    assert reg.lookup("PayPay") is None


def test_memory_counter_window() -> None:
    now = [0.0]
    c = MemoryCounter(10.0, clock=lambda: now[0])
    assert [c.add("k", f"r{i}") for i in range(3)] == [1, 2, 3]
    assert c.add("k", "r0") == 3
    now[0] = 6.0  # next half-window: previous bucket still counts
    assert c.add("k", "r9") == 4
    now[0] = 30.0  # both buckets gone
    assert c.add("k", "r1") == 1


def test_fingerprint_near_identical() -> None:
    a = text_fingerprint("Your parcel 12345 is held: https://evil.example/a1b2 pay now!")
    b = text_fingerprint("your parcel 99881 is held https://evil.example/zz9 PAY NOW")
    c = text_fingerprint("your parcel is held https://other.example/ pay now")
    assert a == b != c
