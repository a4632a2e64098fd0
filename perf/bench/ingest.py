"""Small helpers shared by the clients: split a raw message, find a header, pick the sender."""

from __future__ import annotations

import re

# one envelope recipient per benchmark client (the mamori sink maps it back to the message)
RCPT = "bench{cid}@example.test"

_HDR_END = re.compile(rb"\r?\n\r?\n")


def split_message(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """(header fields, body) of a raw RFC 5322 message; folded values keep their line breaks
    as CRLF, the body is returned with CRLF line endings (as an MTA hands it to a milter)."""
    m = _HDR_END.search(raw)
    head, body = (raw[: m.start()], raw[m.end():]) if m else (raw, b"")
    fields: list[tuple[str, str]] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        text = line.decode("utf-8", "surrogateescape")
        if text[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + text)
        elif ":" in text:
            name, _, value = text.partition(":")
            fields.append((name.strip(), value.lstrip(" ")))
        # a line that is neither (e.g. an mbox "From " line) is dropped, as an MTA would
    body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return fields, body


def envelope_sender(raw: bytes) -> str:
    """The Return-Path address of the message, '' when it has none."""
    for name, value in split_message(raw)[0]:
        if name.lower() == "return-path":
            return value.strip().strip("<>").strip()
    return ""


def header_value(data: bytes, name: str) -> str | None:
    """The first `name` header field of a raw message (unfolded), None if absent."""
    for n, v in split_message(data)[0]:
        if n.lower() == name.lower():
            return " ".join(v.split())
    return None
