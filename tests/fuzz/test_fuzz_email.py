"""Bounded fuzzing of the parsers that read attacker-controlled mail (MIME, headers) and of
the SMTP dialogue. The longer job is `scripts/fuzz.sh` (see README)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.checks.structure import EmailStructureCheck
from gateway.message import Message, ScanContext, split_header_block
from gateway.pipeline import Pipeline, PolicyListsCheck
from gateway.policy import DEFAULT_POLICY

EXAMPLES = int(os.environ.get("MAMORI_FUZZ_EXAMPLES", "300"))

header_name = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                      min_size=1, max_size=20)
header_value = st.text(max_size=200)
boundary = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=10)


@st.composite
def mime_messages(draw: st.DrawFn) -> bytes:
    """Structured-but-hostile MIME: random headers, nested multiparts, bogus encodings."""
    b = draw(boundary)
    headers = draw(st.lists(st.tuples(header_name, header_value), max_size=8))
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        ctype = draw(st.sampled_from(["text/plain", "text/html", "multipart/alternative",
                                      "message/rfc822", "application/octet-stream", "text/x-\x00"]))
        cte = draw(st.sampled_from(["base64", "quoted-printable", "7bit", "x-uuencode", "bogus"]))
        charset = draw(st.sampled_from(["utf-8", "iso-2022-jp", "shift_jis", "bogus", ""]))
        body = draw(st.binary(max_size=300))
        parts.append(f"--{b}\r\nContent-Type: {ctype}; charset={charset}\r\n"
                     f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode("utf-8", "surrogatepass") + body)
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode("utf-8", "surrogatepass")
    head += f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'.encode()
    tail = draw(st.sampled_from([f"\r\n--{b}--\r\n".encode(), b"", b"\r\n--"]))
    return head + b"\r\n".join(parts) + tail


def _exercise(raw: bytes) -> None:
    split_header_block(raw)
    ctx = ScanContext(Message.email(raw), DEFAULT_POLICY)
    assert isinstance(ctx.text, str)
    assert isinstance(ctx.urls, tuple)
    EmailStructureCheck().run(ctx)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_raw_bytes(raw: bytes) -> None:
    _exercise(raw)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mime_messages())
def test_fuzz_structured_mime(raw: bytes) -> None:
    _exercise(raw)


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(st.text(max_size=500), st.text(max_size=40), st.text(max_size=40))
def test_fuzz_sms_through_pipeline(text: str, sender: str, recipient: str) -> None:
    p = Pipeline([PolicyListsCheck(), EmailStructureCheck()])
    v = asyncio.run(p.scan(Message.sms(text, sender=sender, recipient=recipient)))
    assert v.action is not None


# -- SMTP dialogue: hostile clients must not take the filter down ---------------------------

smtp_lines = st.lists(
    st.one_of(
        st.sampled_from([b"EHLO x", b"HELO", b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"DATA", b".",
                         b"RSET", b"NOOP", b"QUIT", b"BDAT 10", b"AUTH PLAIN", b"STARTTLS",
                         b"MAIL FROM:<" + b"a" * 5000 + b">", b"RCPT TO:<>"]),
        st.binary(max_size=200),
    ),
    max_size=15,
)


@settings(max_examples=max(EXAMPLES // 6, 20), deadline=None)
@given(smtp_lines)
def test_fuzz_smtp_dialogue(lines: list[bytes]) -> None:
    from tests.fuzz.smtp_rig import smtp_rig_port

    port = smtp_rig_port()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.recv(1024)
        for line in lines:
            try:
                s.sendall(line + b"\r\n")
            except OSError:
                break
        with contextlib.suppress(OSError):
            s.recv(65536)
    # the server still answers a well-formed client afterwards
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        assert s.recv(1024).startswith(b"220")
        s.sendall(b"NOOP\r\n")
        assert s.recv(1024).startswith(b"250")
