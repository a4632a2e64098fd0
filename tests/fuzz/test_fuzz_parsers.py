"""Bounded fuzzing (hypothesis) of every parser that reads attacker-controlled bytes: milter
packets, SMPP PDUs, the SMTP dialogue, MIME and headers, URLs, the SMS hook's JSON. The same
targets run coverage-guided for longer under atheris: `scripts/fuzz.sh [SECONDS]`.
MAMORI_FUZZ_EXAMPLES bounds each test (default 300). Crashes found are in test_regressions.py."""

from __future__ import annotations

import json
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ingress import milter_codec as mc
from gateway.ingress import smpp_pdu as P
from tests.fuzz import targets

EXAMPLES = int(os.environ.get("MAMORI_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MILTER_CMDS = [mc.SMFIC_OPTNEG, mc.SMFIC_MACRO, mc.SMFIC_CONNECT, mc.SMFIC_HELO, mc.SMFIC_MAIL,
               mc.SMFIC_RCPT, mc.SMFIC_HEADER, mc.SMFIC_BODY, mc.SMFIC_BODYEOB, b"\xff"]
SMPP_CMDS = [P.BIND_TRANSMITTER, P.BIND_RECEIVER, P.BIND_TRANSCEIVER, P.SUBMIT_SM, P.DELIVER_SM,
             P.DATA_SM, P.QUERY_SM, P.CANCEL_SM, P.SUBMIT_SM_RESP, P.DATA_SM_RESP, 0x7FFFFFFF]


@st.composite
def milter_stream(draw: st.DrawFn) -> bytes:
    """Well-framed packets with hostile bodies (NULs, no NULs, short structs), plus junk."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        cmd = draw(st.sampled_from(MILTER_CMDS))
        body = draw(st.binary(max_size=120) | st.lists(
            st.binary(max_size=20), max_size=5).map(lambda xs: b"\0".join(xs)))
        out += mc.encode(cmd, body)
    return out + draw(st.binary(max_size=8))


@st.composite
def smpp_stream(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        cid = draw(st.sampled_from(SMPP_CMDS))
        fields = draw(st.lists(st.binary(max_size=30), max_size=12))
        body = b"\0".join(fields) + draw(st.binary(max_size=40))
        out += P.encode(cid, draw(st.integers(0, 2**31 - 1)), body)
    if draw(st.booleans()):  # a lying command_length
        out += struct.pack(">IIII", draw(st.integers(0, 2**32 - 1)), P.SUBMIT_SM, 0, 1)
    return out


@FUZZ
@given(st.binary(max_size=2048) | milter_stream())
def test_fuzz_milter_packets(data: bytes) -> None:
    targets.milter(data)


@FUZZ
@given(st.binary(max_size=2048) | smpp_stream())
def test_fuzz_smpp_pdus(data: bytes) -> None:
    targets.smpp(data)


smtp_cmds = st.sampled_from([b"EHLO x", b"HELO y", b"MAIL FROM:<a@b> SIZE=99999999", b"MAIL FROM:<>",
                             b"RCPT TO:<c@d>", b"RCPT TO:<\x00@\xff>", b"DATA", b".", b"..", b"RSET",
                             b"BDAT 5 LAST", b"AUTH LOGIN", b"STARTTLS", b"VRFY x", b"HELP", b"QUIT",
                             b"MAIL FROM:<" + b"x" * 3000 + b">", b"\r", b"\x00\x00"])


@settings(max_examples=max(EXAMPLES // 3, 20), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(smtp_cmds | st.binary(max_size=80), max_size=20).map(lambda xs: b"\r\n".join(xs)))
def test_fuzz_smtp_dialogue_in_process(data: bytes) -> None:
    targets.smtp(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_fuzz_mime_raw(data: bytes) -> None:
    targets.mime(data)


url_text = st.lists(st.sampled_from([
    "http://", "https://", "hxxp://", "www.", "[.]", ".", "/", "?", "#", "@", ":", "%", "%2e",
    "xn--", "\u3002", "\uff0e", "<a href=\"", "\">", "</a>", "example.com", "192.168.0.1", "0x7f",
    "[::1]", " ", "\n", "=\n", "\u200b", "\uff48\uff54\uff54\uff50", "日本.jp", "\x00"]) | st.text(max_size=6),
    max_size=40).map("".join)


@FUZZ
@given(st.binary(max_size=2048) | url_text.map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_fuzz_urls(data: bytes) -> None:
    targets.urls(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10)
sms_docs = st.fixed_dictionaries({}, optional={
    "sender": json_values, "recipient": json_values, "text": json_values,
    "payload": st.text("0123456789abcdefABCDEF=+/g", max_size=80) | json_values,
    "payload_encoding": st.sampled_from(["hex", "base64", "x"]), "data_coding": json_values,
    "esm_class": st.integers(-1, 300), "metadata": json_values, "subscriber": json_values})


@FUZZ
@given(st.binary(max_size=512) | sms_docs.map(lambda d: json.dumps(d).encode()))
def test_fuzz_sms_hook_json(data: bytes) -> None:
    targets.sms_json(data)
