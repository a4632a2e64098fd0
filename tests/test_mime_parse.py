"""gateway.mime.PARSE_POLICY (shared header classes, unstructured fields parsed on first use
of more than their text) against the standard library's default policy: the same message
tree, header texts, parsed header attributes and defects, over the corpus and over generated
messages (line ends, folds, missing blank lines, multipart, encoded words). The same for
`parse_message`, which parses single-part mail by its header block."""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mime import PARSE_POLICY, parse_message

_HEADER_ATTRS = ("defects", "params", "content_type", "maintype", "subtype", "cte",
                 "content_disposition", "addresses", "datetime", "major", "minor", "version")


def _header_view(value: Any) -> tuple[Any, ...]:
    out: list[Any] = [str(value), type(value).__mro__[-3].__name__]
    for attr in _HEADER_ATTRS:
        try:
            got = getattr(value, attr)
        except AttributeError:
            out.append("-")
            continue
        if attr == "defects":
            got = [(type(d).__name__, str(d)) for d in got]
        elif attr == "params":
            got = dict(got)
        elif attr == "addresses":
            got = [str(a) for a in got]
        out.append(got)
    return tuple(out)


def _fetched(part: Message, name: str, raw: str) -> object:
    try:
        return _header_view(part.policy.header_fetch_parse(name, raw))
    except Exception as exc:  # (the standard library fails on some fields, both ways alike)
        return type(exc).__name__


def _view(msg: Message) -> list[Any]:
    """Everything a reader of the parsed message can see, part by part."""
    out: list[Any] = []
    for part in msg.walk():
        payload = part._payload
        out.append((
            part.get_unixfrom(), list(part._headers),
            [_fetched(part, name, raw) for name, raw in part._headers],
            payload if isinstance(payload, str) else len(payload or []),
            [(type(d).__name__, str(d)) for d in part.defects],
            part.preamble, part.epilogue, part.get_default_type(),
            part.get_content_type(), part.get_params(), part.get_boundary(),
            part.get_content_charset(), part.is_multipart(),
            part.get_payload(decode=True) if not part.is_multipart() else None,
        ))
    return out


def _flat(msg: Message, policy: Any) -> object:
    try:
        return msg.as_bytes(policy=policy)
    except Exception as exc:  # (the standard library cannot write some parsed mail back)
        return type(exc).__name__


def _same(raw: bytes) -> None:
    ours = email.message_from_bytes(raw, policy=PARSE_POLICY)
    theirs = email.message_from_bytes(raw, policy=email.policy.default)
    # (each message viewed once: decoding a payload adds its defects to the part)
    want = _view(theirs)
    assert _view(ours) == want
    assert _flat(ours, PARSE_POLICY) == _flat(theirs, email.policy.default)
    fast = parse_message(raw)  # (the header block parsed alone, parts without the parser)
    assert _view(fast) == want
    assert _flat(fast, PARSE_POLICY) == _flat(theirs, email.policy.default)


def test_corpus_sample_parses_the_same(shared_data: Path) -> None:
    from tests.digests import corpus_sample

    for path in corpus_sample(shared_data / "email" / "spamassassin", start=3, step=10, size=600):
        _same(path.read_bytes())


@pytest.mark.parametrize("raw", [
    b"Subject: hi\r\n\r\nbody\r\n",
    b"Subject: hi\n\nbody\n",
    b"Subject: hi\r\rbody\r",  # lone CR line ends
    b"Subject: hi\r\n\r\r\nbody",  # a lone CR blank line, then CRLF
    b"Subject: hi\r\nnot a header line\r\nbody\r\n",  # no blank line: a defect
    b"Subject: hi\r\n",  # no body
    b"Subject: hi",  # no line end
    b"",
    b"\r\n\r\nbody",
    b"From someone@example.com Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n",
    b"Subject: =?utf-8?q?caf=C3=A9?= and =?iso-8859-1?b?Y2Fm6Q==?=\r\n\r\nx",
    b"Subject: folded\r\n\tsecond line\r\n  third\r\n\r\nx",
    b"Subject: \xe3\x81\x82 raw utf-8\r\n\r\nx",
    b"Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n\r\ncaf\xc3\xa9",
    b"Content-Type: text/plain; charset*=utf-8''caf%C3%A9\r\n\r\nx",
    b"Content-Type: text/plain (comment); charset=us-ascii\r\n\r\nx",
    b"Content-Type: text/plain; name=\"a\\\"b\"\r\n\r\nx",
    b"Content-Type: text\r\n\r\nx",
    b"Content-Type: ;;\r\n\r\nx",
    b"Content-Type: text/plain; charset\r\n\r\nx",
    b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\npre\r\n--XX\r\nContent-Type: text/html\r\n\r\n"
    b"<b>x</b>\r\n--XX\r\n\r\nplain\r\n--XX--\r\nepilogue\r\n",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n",
    b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nAction: failed\r\n",
    b"Content-Type: MULTIPART/alternative; boundary=\"b\"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
    b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\nY2Fm6Q==\r\n",
    b"Subject: x\r\n: empty name\r\n\r\nbody",
    b"Subject: x\r\nFrom y\r\n\r\nbody",  # a "From " line last: the parser makes it body
    b"From a\nSubject: x\nFrom b\nTo: c\n\nbody",
    b" continuation first\r\nSubject: x\r\n\r\nbody",
    b"Subject: x\x0b\x0cy\r\n\r\nbody",
    b"Subject: \r\n\r\nbody",
    b"From: a@b.example\r\n\r\nLF body\nsecond\n\nthird",  # CRLF head, LF body
    b"From: a@b.example\nSubject: x\n\nLF mail\r\n\r\nwith a CRLF pair later\r\n",
    b"Subject: a\n\n\r\n\r\nan LF blank line first",
    b"Subject: a\r\r\n\r\nlone CR",
    b"Subject: x\r\nnot a header line\r\n\r\nbody\r\n",
    b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable"
    b"\r\n\r\ncaf=E9 =\r\nsoft \xff break\r\n",
    b"Content-Type: invalid\r\n\r\nbody\r\n",
    b"Subject:   \r\n continued\r\n\tagain \r\n\r\nbody",  # blank first line of a field
    b"Subject\t: x\r\n\r\nbody",  # a tab in the name: not a field
    b"Subject: x\r\n\r\n\r\n\r\nbody",
    b"A:\r\nB:b:c\r\n\r\n",
    b"Subject: x\r\nTo: y\n\r\n\r\nbody",  # an LF blank line before CRLF CRLF
    b"Subject: x\r\nFrom y: z\r\n\r\nbody",
    # multipart with a header block that is not plain fields: the parser reads it all
    b"Content-Type: multipart/mixed; boundary=b\r\nnot a field\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
    b"From a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\tfold\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
])
def test_edge_cases_parse_the_same(raw: bytes) -> None:
    _same(raw)


def test_plain_header_blocks_take_the_shortcut() -> None:
    """`_parse_head` reads plain header blocks (mixed line ends, folds), and leaves blocks with
    anything else to the feed parser (test_edge_cases_parse_the_same: the same result)."""
    from gateway.mime import _parse_head

    msg = _parse_head("Subject: a\r\n b\nX-Y:z\rTo: c\r\n\r\n")
    assert msg is not None
    assert msg._headers == [("Subject", "a\r\n b"), ("X-Y", "z"), ("To", "c")]
    for head in ("From a@b Mon\r\nSubject: a\r\n\r\n", "not a field\r\n\r\n",
                 " x\r\nSubject: a\r\n\r\n", ": a\r\n\r\n", "A: b\n\r\n\r\n"):
        assert _parse_head(head) is None, head


_LINE_ENDS = st.sampled_from(["\r\n", "\n", "\r"])
_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=1, max_codepoint=0x7f), max_size=40),
    st.sampled_from(["text/plain; charset=us-ascii", 'text/html; charset="iso-8859-1"',
                     "multipart/alternative; boundary=b1", "message/rfc822", "=?utf-8?q?a?=",
                     "text/plain;charset=utf-8;", 'a/b; x="y z"', "text/plain; q=\"\\\"\"",
                     "x/y; a=b (c)", "  text/plain  ;  charset = utf-8  "]),
    st.text(max_size=20),
)
_FIELDS = st.tuples(st.sampled_from(["Subject", "Content-Type", "From", "X-A", "To", "Date",
                                     "Content-Transfer-Encoding", "MIME-Version"]), _VALUES)
_LINES = st.one_of(
    _FIELDS.map(lambda f: f"{f[0]}: {f[1]}"),
    st.sampled_from(["From a@b.example Mon Jan  1 00:00:00 2024", " continued", "\tcontinued",
                     "not a field", ": no name", "Bad Name: x", ""]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, max_size=7), _LINE_ENDS, st.booleans(),
       st.text(st.characters(min_codepoint=1, max_codepoint=0x7f), max_size=60))
def test_generated_messages_parse_the_same(lines: list[str], eol: str,
                                           blank: bool, body: str) -> None:
    head = "".join(line + eol for line in lines)
    raw = (head + (eol if blank else "") + body).encode("utf-8", "surrogateescape")
    _same(raw)


_PART_LINES = st.sampled_from([
    "--b", "--b--", "--b \t", "--b-- ", "--bx", "--b-", "--c", "--c--", "--c--x", "", "text",
    " continued", "\tfolded", "From x", "not a field", ": no name", "Subject: s",
    "Content-Type: text/plain", "Content-Type: text/html; charset=utf-8",
    "Content-Type: multipart/alternative; boundary=c", "Content-Type: multipart/digest; boundary=c",
    "Content-Type: multipart/mixed", "Content-Type: message/rfc822",
    "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PART_LINES, max_size=25), st.sampled_from(["\r\n", "\n", "mixed", "\r"]),
       st.sampled_from(["", "Content-Transfer-Encoding: base64\r\n", "Subject: x\r\n"]),
       st.booleans())
def test_generated_multipart_parse_the_same(lines: list[str], eol: str, extra: str,
                                            last_eol: bool) -> None:
    """Multipart bodies (`_Multipart`, or the parser when it gives up) against the parser:
    boundaries repeated, nested, unclosed, with blanks after them, parts without headers,
    digests, message parts, mixed and lone CR line ends."""
    ends = [eol if eol != "mixed" else ("\r\n" if i % 3 else "\n") for i in range(len(lines))]
    body = "".join(line + end for line, end in zip(lines, ends, strict=True))
    if not last_eol and body:
        body = body[: -len(ends[-1])]
    raw = ("Content-Type: multipart/mixed; boundary=b\r\n" + extra + "\r\n" + body).encode()
    _same(raw)


def test_multipart_takes_the_shortcut() -> None:
    """A nested multipart message is read by `_Multipart` (not left to the parser)."""
    from gateway.mime import _Multipart, _parse_head

    body = ("preamble\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
            "--c\r\n\r\nplain\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--c--\r\n"
            "\r\n--b\r\nContent-Type: text/plain\r\n\r\nattached\r\n--b--\r\nepilogue\r\n")
    head = _parse_head("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
    assert head is not None
    _Multipart(body).body(head)
    assert [p.get_content_type() for p in head.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/plain"]
    _same(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body.encode())


@pytest.mark.parametrize("ctype", [
    None, "text/plain", 'text/plain; charset="UTF-8"', "text/plain; charset=iso-8859-1; format=flowed",
    "text/plain; charset*=utf-8''caf%C3%A9", "text/plain; charset*=us-ascii'en'us-ascii",
    "text/plain; charset=\u00e9", "text/plain; CHARSET=Big5", "text/plain; charset=", "text/plain;;",
    'text/plain; name="a;b"; charset=koi8-r', "text/plain; charset*0=utf; charset*1=-8",
])
def test_content_charset_as_the_standard_library(ctype: str | None) -> None:
    """`_content_charset` (remembered per Content-Type text) answers what
    `get_content_charset` answers, the first time and from memory."""
    from gateway.mime import _content_charset

    head = "" if ctype is None else f"Content-Type: {ctype}\r\n"
    for _ in range(2):
        part = parse_message((head + "Subject: x\r\n\r\nbody").encode("utf-8", "surrogateescape"))
        assert _content_charset(part) == part.get_content_charset()


def test_corpus_charsets_as_the_standard_library(shared_data: Path) -> None:
    from gateway.mime import _content_charset
    from tests.digests import corpus_sample

    for path in corpus_sample(shared_data / "email" / "spamassassin", start=5, step=10, size=600):
        for part in parse_message(path.read_bytes()).walk():
            assert _content_charset(part) == part.get_content_charset()


def test_many_parts_inside_an_outer_multipart() -> None:
    """Thousands of parts of an inner multipart, and a long outer part after them (each inner
    part's end is looked for once per boundary, not by searching the rest of the text)."""
    parts = "".join(f"--c\r\n\r\npart {i}\r\n" for i in range(2000))
    body = ("--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n" + parts
            + "--c--\r\n" + "x" * 100_000 + "\r\n--b--\r\n")
    _same(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body.encode())


@pytest.mark.parametrize("raw", [
    b"X" * 200_000 + b"\r\n\r\nbody",  # one long line that is not a field
    b"A: " + b"x" * 100_000 + b"\rX" * 1000 + b"\r\n\r\nbody",
    b"A:" + b"\r\n \t" * 20_000 + b"z\r\n\r\nbody",
])
def test_long_header_lines_parse_the_same(raw: bytes) -> None:
    """Long lines in the header block (`_FIELD_RE` rejects a long non-field line once, not
    from each of its characters)."""
    _same(raw)
