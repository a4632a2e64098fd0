"""Tolerant MIME helpers: text extraction that never raises on broken mail."""

from __future__ import annotations

import html
import re
from email.message import EmailMessage, Message

MAX_PARTS = 200
MAX_DEPTH = 20
MAX_TEXT = 2_000_000

_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]{0,2000}>", re.S | re.I)
_WS_RE = re.compile(r"[ \t\r\f\v]+")


def html_to_text(markup: str) -> str:
    text = _TAG_RE.sub(" ", markup[:MAX_TEXT])
    text = html.unescape(text)
    return _WS_RE.sub(" ", text).strip()


def _decode_part(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken transfer encoding: take the raw payload
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("latin-1", "replace")


def extract_text(msg: EmailMessage) -> tuple[str, str]:
    """Return (plain text, html) of a message: subject and text/plain parts, and text/html parts.

    Bounded in depth, part count and size; malformed structure yields what could be read.
    """
    plain: list[str] = []
    htmls: list[str] = []
    try:
        subject = str(msg.get("Subject", "") or "")
    except Exception:
        subject = ""
    if subject:
        plain.append(subject)
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and count < MAX_PARTS:
        part, depth = stack.pop()
        count += 1
        try:
            if part.is_multipart():
                if depth < MAX_DEPTH:
                    payload = part.get_payload()
                    if isinstance(payload, list):
                        stack.extend(
                            (p, depth + 1) for p in reversed(payload) if isinstance(p, Message)
                        )
                continue
            ctype = part.get_content_type()
        except Exception:
            continue
        if ctype == "text/html":
            htmls.append(_decode_part(part))
        elif ctype.startswith("text/") or ctype == "message/rfc822":
            plain.append(_decode_part(part))
    return "\n".join(plain)[:MAX_TEXT], "\n".join(htmls)[:MAX_TEXT]
