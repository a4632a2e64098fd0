"""The SMTP filter's DATA reader (blocks, not lines) against the line-by-line reading of
aiosmtpd it replaces: the same message, the same end of data, the same errors."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingress.smtp import read_data

PIECES = [b"a", b"bc", b".", b"..", b"\r\n", b"\r", b"\n", b".\r\n", b"\r\n.", b"x" * 40, b" "]


def reference(stream: bytes, size_limit: int, line_limit: int) -> tuple[bytes, str | None, bytes]:
    """aiosmtpd 1.4's loop, lines split at CRLF: (content, error, what is left unread)."""
    lines, size, pos = [], 0, 0
    too_long = too_much = False
    while True:
        end = stream.index(b"\r\n", pos) + 2
        line, pos = stream[pos:end], end
        if line == b".\r\n":
            break
        size += len(line)
        if not (too_long or too_much) and size > size_limit:
            too_much = True
        if not (too_long or too_much) and len(line) > line_limit:
            too_long = True
        lines.append(line[1:] if line.startswith(b".") else line)
    if too_much:
        return b"", "552", stream[pos:]
    if too_long:
        return b"", "500", stream[pos:]
    return b"".join(lines), None, stream[pos:]


async def run(stream: bytes, size_limit: int, line_limit: int, limit: int) -> tuple[bytes, str | None, bytes]:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(stream)
    reader.feed_eof()
    content, error = await read_data(reader, size_limit, line_limit)
    return content, error[:3] if error else None, await reader.read()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40), st.sampled_from([16, 64, 1 << 16]),
       st.sampled_from([8, 30, 1 << 20]), st.sampled_from([10, 64, 1000]))
def test_same_as_line_by_line(pieces: list[bytes], limit: int, size_limit: int, line_limit: int) -> None:
    body = b"".join(pieces)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    stream = body + b".\r\nQUIT\r\n"  # what follows the end of data stays unread
    want = reference(stream, size_limit, line_limit)
    got = asyncio.run(run(stream, size_limit, line_limit, limit))
    if want[1] is None:
        assert got == want
    else:  # an error either way, after reading up to the end (which of 500/552 may differ
        # for data both too big and with a too long line)
        assert got[1] is not None and got[0] == b"" and got[2] == want[2]


@pytest.mark.parametrize(("stream", "content"), [
    (b".\r\n", b""),
    (b"a\r\n.\r\n", b"a\r\n"),
    (b"..\r\n...x\r\n.\r\n", b".\r\n..x\r\n"),
    (b"end.\r\nnext\r\n.\r\n", b"end.\r\nnext\r\n"),
])
def test_examples(stream: bytes, content: bytes) -> None:
    assert asyncio.run(run(stream, 1 << 20, 1000, 64)) == (content, None, b"")


ADDR_PIECES = ["<", ">", "a", "b.c", ".", "..", "@", "x.org", "[1.2.3.4]", '"q"', " ", "\t",
               "(c)", "SIZE=5", "BODY=8BITMIME", "\u00e9", "-", "_", "=", "+"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(ADDR_PIECES), max_size=12))
def test_address_fast_path_agrees_with_aiosmtpd(pieces: list[str]) -> None:
    from aiosmtpd.smtp import SMTP

    from gateway.ingress.smtp import _LimitedSMTP

    arg = "".join(pieces)
    ours = _LimitedSMTP.__new__(_LimitedSMTP)
    theirs = SMTP.__new__(SMTP)
    for o in (ours, theirs):
        o.local_part_limit = 0
    for a in (arg, "<" + arg + "@x.org> SIZE=1"):
        assert outcome(ours._getaddr, a) == outcome(theirs._getaddr, a)


def outcome(fn, arg: str) -> object:
    try:
        return fn(arg)
    except Exception as exc:  # aiosmtpd's parser has its own failures ("<" alone)
        return type(exc)
