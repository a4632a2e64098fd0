"""Message parsing on hostile input: never a traceback, always a clear result."""

from __future__ import annotations

import os

from gateway.message import Channel, Message, ScanContext, split_header_block
from gateway.policy import DEFAULT_POLICY


def test_split_headers_lf_crlf_folding_and_mbox() -> None:
    raw = b"From someone Thu\nSubject: a\n b\r\nFrom: x@y\r\n\r\nbody\r\n"
    headers, body = split_header_block(raw)
    assert headers == (("Subject", "a\r\n b"), ("From", "x@y"))
    assert body == b"body\r\n"


def test_garbage_and_empty() -> None:
    for raw in (b"", os.urandom(4096), b"\x00\xff" * 100, b":::\n\n", b"no colon here\n"):
        m = Message.email(raw)
        ctx = ScanContext(m, DEFAULT_POLICY)
        assert isinstance(ctx.text, str)
        assert isinstance(ctx.urls, tuple)


def test_broken_mime_still_gives_text() -> None:
    raw = (b"From: a@b\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
           b"--zz\r\nContent-Type: text/plain; charset=bogus-charset\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--zz\r\n"
           b"Content-Type: text/html\r\n\r\n<p>visit <a href='http://x.example/'>here</a></p>")
    ctx = ScanContext(Message.email(raw), DEFAULT_POLICY)
    assert "hi" in ctx.text
    assert "http://x.example/" in ctx.urls


def test_huge_message_is_parsed_in_bounded_form() -> None:
    raw = b"From: a@b\r\nSubject: big\r\n\r\n" + (b"A" * 76 + b"\r\n") * (50 * 1024 * 1024 // 78)
    ctx = ScanContext(Message.email(raw), DEFAULT_POLICY)
    assert ctx.text.startswith("big")
    assert ctx.data.get("mime_truncated") is True


def test_sms_defaults() -> None:
    m = Message.sms("こんにちは", sender="+8190", recipient="+8180")
    assert m.channel is Channel.SMS and m.subscriber == "+8180" and m.text == "こんにちは"


def test_lower_names_of_each_header_tuple() -> None:
    """`lower_names` remembers the last tuple only by identity: every tuple gets its own names."""
    from gateway.message import lower_names

    a = (("From", "x"), ("X-A", "y"), ("from", "z"))
    b = (("DKIM-Signature", "v=1"),)
    assert lower_names(a) == ("from", "x-a", "from")
    assert lower_names(a) is lower_names(a)
    assert lower_names(b) == ("dkim-signature",)
    assert lower_names(a) == ("from", "x-a", "from")
    assert lower_names(tuple(list(b))) == ("dkim-signature",)
    assert lower_names(()) == ()


def test_size_of_each_message() -> None:
    """`size` (its header part remembered for the last header tuple) is the body plus every
    "name: value\\r\\n" line, message after message and back."""
    import dataclasses

    def formula(m: Message) -> int:
        return len(m.body) + sum(len(n) + len(v) + 4 for n, v in m.headers)

    a = Message.email(b"From: a@x.com\r\nSubject: hi\r\n\r\nbody\r\n")
    b = Message.email(b"From: b@y.org\r\nX-Long: " + b"v" * 300 + b"\r\n\r\nother body")
    c = dataclasses.replace(a, headers=(*a.headers, ("X-Added", "1")))
    empty = Message.sms("text")
    for m in (a, b, a, c, a, empty, b, b):
        assert m.size == formula(m)
