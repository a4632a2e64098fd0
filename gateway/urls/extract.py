"""URL extraction from text and HTML."""

from __future__ import annotations

import re
from dataclasses import dataclass

_URL_RE = re.compile(
    r"""(?ix)
    \b(?:(?:https?|ftp)://|www\.)[^\s<>"'`{}|\\^]+
    """
)
_HREF_RE = re.compile(r"""(?i)\bhref\s*=\s*["']?([^"'\s>]+)""")
MAX_URLS = 500


@dataclass(frozen=True, slots=True)
class FoundUrl:
    url: str
    source: str  # "text" or "html"


def extract_urls(text: str, *, html: str = "") -> list[FoundUrl]:
    seen: set[str] = set()
    out: list[FoundUrl] = []
    for source, blob, rx in (("text", text, _URL_RE), ("html", html, _HREF_RE)):
        for m in rx.finditer(blob):
            url = (m.group(1) if rx is _HREF_RE else m.group(0)).rstrip(".,;:!?)]")
            if url and url not in seen:
                seen.add(url)
                out.append(FoundUrl(url, source))
                if len(out) >= MAX_URLS:
                    return out
    return out
