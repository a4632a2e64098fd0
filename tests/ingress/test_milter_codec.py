"""The milter codec: packets, option negotiation, command fields, replies."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ingress import milter_codec as mc


async def _read(data: bytes) -> tuple[bytes, bytes] | None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await mc.read_packet(reader)


async def test_packet_roundtrip() -> None:
    assert await _read(mc.encode(mc.SMFIC_BODY, b"hello\0world")) == (b"B", b"hello\0world")
    assert await _read(b"") is None


@pytest.mark.parametrize(
    "raw",
    [b"\0\0", b"\0\0\0\x05B", b"\0\0\0\0", b"\x7f\xff\xff\xffB"],
    ids=["short-length", "short-body", "zero", "oversized"],
)
async def test_bad_packets_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(mc.MilterProtocolError):
        await _read(raw)


def test_decoder_in_pieces() -> None:
    stream = mc.encode(mc.SMFIC_HELO, b"mx.test\0") + mc.encode(mc.SMFIC_DATA)
    dec = mc.PacketDecoder()
    got: list[tuple[bytes, bytes]] = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    assert got == [(b"H", b"mx.test\0"), (b"T", b"")]
    assert dec.pending == 0


@given(st.binary(max_size=200))
def test_decoder_never_fails_otherwise(data: bytes) -> None:
    dec = mc.PacketDecoder(max_size=64)
    try:
        for cmd, _ in dec.feed(data):
            assert len(cmd) == 1
    except mc.MilterProtocolError:
        pass


def test_optneg_roundtrip_with_macros() -> None:
    neg = mc.OptNeg(6, mc.SMFIF_ADDHDRS | mc.SMFIF_QUARANTINE, mc.SMFIP_NR_HDR,
                    {mc.SMFIM_CONNECT: "j _", mc.SMFIM_EOM: "i"})
    pkt = neg.encode()
    assert pkt[4:5] == mc.SMFIC_OPTNEG
    assert mc.parse_optneg(pkt[5:]) == neg
    with pytest.raises(mc.MilterProtocolError):
        mc.parse_optneg(b"\0\0\0\x06")


def test_connect_families() -> None:
    inet = mc.parse_connect(mc.encode_connect("mx.sender.test", "192.0.2.7", 2525)[5:])
    assert (inet.hostname, inet.family, inet.port, inet.address) == ("mx.sender.test", b"4", 2525, "192.0.2.7")
    v6 = mc.parse_connect(mc.encode_connect("h", "2001:db8::1", 25)[5:])
    assert v6.family == b"6" and v6.address == "2001:db8::1"
    unknown = mc.parse_connect(mc.encode_connect("localhost", None)[5:])
    assert unknown.address is None and unknown.port is None
    for bad in (b"", b"host", b"host\0", b"host\x004\0", b"host\0X\0\x19addr\0"):
        with pytest.raises(mc.MilterProtocolError):
            mc.parse_connect(bad)


def test_macros_and_headers() -> None:
    pkt = mc.encode_macros(mc.SMFIC_MAIL, {"i": "4F2AB", "auth_authen": "alice"})
    stage, macros = mc.parse_macros(pkt[5:])
    assert stage == mc.SMFIC_MAIL and macros == {"i": "4F2AB", "auth_authen": "alice"}
    assert mc.parse_header(b"Subject\0hi there\0") == ("Subject", "hi there")
    for bad in (b"Subject\0", b"\0value\0", b"a\0b\0c\0"):
        with pytest.raises(mc.MilterProtocolError):
            mc.parse_header(bad)
    assert mc.split_strings(b"<a@b>\0SIZE=10\0") == ["<a@b>", "SIZE=10"]
    assert mc.strip_angle(" <a@b> ") == "a@b" and mc.strip_angle("<>") == ""


def test_replies() -> None:
    assert mc.reply_code("550 5.7.1 no\r\n100% spam") == mc.encode(
        mc.SMFIR_REPLYCODE, b"550 5.7.1 no  100 spam\0")
    for bad in ("250 ok", "55 x", "550x5.7.1", "hello"):
        with pytest.raises(ValueError):
            mc.reply_code(bad)
    assert mc.delete_recipient("bob@example.test")[5:] == b"<bob@example.test>\0"
    assert mc.change_header(2, "X-Mamori-Action", "")[5:] == b"\0\0\0\x02X-Mamori-Action\0\0"
    assert mc.add_header("A\0B", "v")[5:] == b"AB\0v\0"
    assert mc.quarantine("")[5:] == b"mamori\0"


@given(st.lists(st.tuples(st.sampled_from([b"H", b"L", b"B", b"E", b"T"]),
                          st.binary(max_size=300)), max_size=8),
       st.lists(st.integers(min_value=0, max_value=3000), max_size=6))
def test_decoder_gives_the_same_packets_however_the_stream_is_cut(
        packets: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    stream = b"".join(mc.encode(c, d) for c, d in packets)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    dec = mc.PacketDecoder()
    got: list[tuple[bytes, bytes]] = []
    for a, b in itertools.pairwise(bounds):
        got += dec.feed(stream[a:b])
    assert got == packets
    assert dec.pending == 0


def test_decoder_returns_the_good_packets_before_a_bad_one() -> None:
    dec = mc.PacketDecoder(max_size=64)
    good = mc.encode(mc.SMFIC_HELO, b"mx\0")
    assert dec.feed(good + b"\0\0\0\0") == [(b"H", b"mx\0")]
    with pytest.raises(mc.MilterProtocolError):
        dec.check()


@given(st.binary(max_size=40))
def test_parse_header_agrees_with_split_strings(data: bytes) -> None:
    parts = mc.split_strings(data)
    if len(parts) == 2 and parts[0]:
        assert mc.parse_header(data) == (parts[0], parts[1])
    else:
        with pytest.raises(mc.MilterProtocolError):
            mc.parse_header(data)
