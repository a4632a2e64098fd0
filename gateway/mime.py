"""Tolerant MIME helpers: text extraction that never raises on broken mail."""

from __future__ import annotations

import html
import re
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any

from gateway import limits

MAX_PARTS = 200  # defaults; MAMORI_LIMITS__MIME_MAX_PARTS and __MIME_MAX_DEPTH apply
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
    lim = limits.current()
    max_parts, max_depth = lim.mime_max_parts, lim.mime_max_depth
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and count < max_parts:
        part, depth = stack.pop()
        count += 1
        try:
            if part.is_multipart():
                if depth < max_depth:
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


# -- parsing policy --------------------------------------------------------------------------


_HEADER_CACHE: dict[tuple[str, str], object] = {}
# cleared when full at MAMORI_LIMITS__HEADER_CACHE_SIZE entries: each costs about 5 KB (the
# standard library builds a class per parsed header; the former bound of 20,000 let it reach
# ~100 MB before clearing, the soak's main memory growth)


class _CachingPolicy(EmailPolicy):
    """`email.policy.default`, except that a parsed header field is built once per distinct
    (name, raw value) instead of on every `msg.get(...)` (the standard library re-parses
    Content-Type for each `get_content_type()`, `get_param()`, ... of each part). Header objects
    are immutable, so sharing them changes nothing but the cost."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return value
        key = (name, value)
        hit = _HEADER_CACHE.get(key)
        if hit is None:
            hit = super().header_fetch_parse(name, value)
            if len(_HEADER_CACHE) >= limits.current().header_cache_size:
                _HEADER_CACHE.clear()
            _HEADER_CACHE[key] = hit
        return hit


PARSE_POLICY = _CachingPolicy()
