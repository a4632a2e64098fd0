"""URL extraction from SMS text, email text and HTML, undoing the usual evasions.

Handled: a missing scheme (`evil.example/login`, `www.evil.example`), full-width characters
(NFKC), zero-width characters and soft hyphens, defanging (`hxxp`, `[.]`, `(.)`, `[dot]`,
`[:]`), line breaks and spaces inside a URL (an SMS split in the middle of a host, `evil . com`),
IDN (Unicode hosts become punycode; `xn--` hosts are kept), percent-encoding (in the host too)
and HTML entities (`&#46;`, `&period;`), and in HTML the href/visible-text mismatch (the text
shows one site, the link goes to another; after rspamd's phishing module).

`extract_urls(text, html=...)` returns `FoundUrl`s in order of appearance, deduplicated by
their canonical URL; `.url` is the normalised URL with a scheme. Each carries the evasion forms
that were undone to find it. Text with no URL costs a couple of regular-expression scans.
"""

from __future__ import annotations

import html as htmlmod
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from gateway import limits
from gateway.urls.canon import CanonicalUrl, UrlError, canonicalize
from gateway.urls.domains import RESERVED_TLDS, is_tld, known_tld, registered_domain

MAX_URLS = 500  # default; MAMORI_LIMITS__URLS_PER_MESSAGE applies
MAX_TEXT = 1_000_000  # characters of one text part examined

# Zero-width and invisible formatting characters used to break up URLs.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f"),
    None,
)
_INVISIBLE_RE = re.compile("[" + "".join(chr(c) for c in _INVISIBLE) + "]")
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e\u3002\uff61]")
_ENTITY_RE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?")
_DEFANG_RE = re.compile(
    r"(?i)\b(h(?:xx|\*\*|XX|tt)ps?)(?=\[?:)|"  # hxxp, h**p
    r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}|"
    r"\[:\]|\[://\]"
)
_SPACED_DOT_RE = re.compile(r"(?<=[A-Za-z0-9])[ \t]+\.[ \t]*(?=[A-Za-z0-9])")
_IDEO_DOT_RE = re.compile(r"(?<=[A-Za-z0-9-])[\u3002\uff61](?=[A-Za-z0-9])")

_STOP = "\\s<>\"'`{}|\\\\^\u3001\u3002\u300c\u300d\u300e\u300f\uff08\uff09\u3010\u3011"
_SCHEME_URL_RE = re.compile(
    rf"(?i)(?<![a-z0-9])(?:https?|ftp)://[^{_STOP}]+|(?<![a-z0-9.-])www\d{{0,3}}\.[^{_STOP}]+")
# Bare domains: labels of ASCII, Latin, Greek and Cyrillic letters (IDN homoglyphs), not CJK or
# kana, so that Japanese prose glued to a domain ("登録したAmazon.co.jpのアカウント") stays out.
_LABEL_CH = "a-z0-9\u00c0-\u024f\u0370-\u04ff"
_BARE_RE = re.compile(
    rf"(?i)(?<![{_LABEL_CH}@.\-/_])"
    rf"((?:[{_LABEL_CH}](?:[{_LABEL_CH}-]{{0,61}}[{_LABEL_CH}])?\.)+"
    r"(?:[a-z]{2,24}|xn--[a-z0-9-]{2,59}))"
    rf"(?![{_LABEL_CH}@_-])"
    rf"([/?#:][^{_STOP}]*)?"
)
_QUICK_RE = re.compile(r"(?i)[.:&\uff0e\u3002\uff61\uff1a]|[\[({]dot[\])}]")
_TRAIL = ".,;:!?)]}'\"*>\u3001\u3002\uff01\uff1f"
# TLDs that a bare host (no scheme, no path) may end in; file names (readme.txt, setup.py)
# and abbreviations are kept out this way.
_BARE_TLDS = frozenset(
    ["com", "net", "org", "info", "biz", "jp", "top", "xyz", "icu", "cn", "ru", "io", "co", "me", "us", "uk", "de", "fr", "it", "es", "nl", "be", "ch", "at", "se", "no", "dk", "fi", "pl", "cz", "hu", "ro", "gr", "pt", "ie", "eu", "ca", "au", "nz", "br", "mx", "ar", "cl", "kr", "tw", "hk", "sg", "my", "th", "vn", "id", "ph", "in", "pk", "bd", "app", "dev", "shop", "online", "site", "store", "club", "live", "life", "link", "click", "buzz", "cc", "tk", "ml", "ga", "cf", "gq", "work", "fun", "vip", "asia", "mobi", "tv", "ws", "pw", "su", "ua", "kz", "tr", "ir", "il", "sa", "ae", "za", "ng", "ke", "eg", "ma", "cyou", "sbs", "bond", "cfd", "lol", "monster", "rest", "mom", "one", "best", "today", "pro", "tech", "website", "space", "host", "fit", "ltd", "xin", "win", "bid", "loan", "men", "date", "party", "review", "trade", "racing", "cam", "gdn", "cloud", "page", "kim", "wang", "ink", "run", "digital", "email", "support", "services", "solutions", "network", "company", "center", "global", "world", "group", "market", "help", "tokyo", "osaka", "nagoya", "yokohama", "ooo"]
)
_SKIP_SCHEMES = ("mailto:", "tel:", "javascript:", "cid:", "data:", "sms:", "callto:", "#")


@dataclass(frozen=True, slots=True)
class FoundUrl:
    url: str  # normalised, with a scheme; what lists and lookalike checks examine
    source: str  # "text" or "html"
    host: str = ""  # canonical host (lower case, punycode)
    evasions: tuple[str, ...] = ()  # forms undone to find it: "defanged", "fullwidth", ...
    display_host: str = ""  # HTML: the host the visible link text shows, when it shows one
    canonical: CanonicalUrl | None = field(default=None, compare=False, repr=False)


def extract_urls(text: str, *, html: str = "") -> list[FoundUrl]:
    """URLs in `text` (SMS or plain email text) and `html`, in order, deduplicated."""
    if not html and (not text or not _maybe_url(text[:MAX_TEXT])):
        return []  # most SMS: no URL marker, nothing to set up
    seen: dict[str, FoundUrl] = {}
    if text:
        for f in _from_text(text[:MAX_TEXT], "text"):
            _add(seen, f)
    if html and len(seen) < limits.current().urls_per_message:
        for f in _from_html(html[:MAX_TEXT]):
            _add(seen, f)
    return list(seen.values())[:limits.current().urls_per_message]


def _add(seen: dict[str, FoundUrl], f: FoundUrl) -> None:
    old = seen.get(f.url)
    if old is None or (f.display_host and not old.display_host):
        seen[f.url] = f


def normalize_text(text: str) -> tuple[str, tuple[str, ...]]:
    """Undo text-level evasions; returns the text and which forms were found."""
    t, ev, _low = _normalize(text)
    return t, ev


def _normalize(text: str) -> tuple[str, tuple[str, ...], str | None]:
    """`normalize_text`, and the returned text's lower case when it was computed on the way
    (None otherwise): the scans that follow need it and need not lower the text again."""
    ev: list[str] = []
    t = text
    if "&" in t and _ENTITY_RE.search(t):
        t2 = htmlmod.unescape(t)
        if t2 != t:
            ev.append("entity")
            t = t2
    if not t.isascii():  # (every invisible character is outside ASCII)
        if _INVISIBLE_RE.search(t):
            ev.append("zero-width")
            t = t.translate(_INVISIBLE)
        if not t.isascii():
            if _FULLWIDTH_RE.search(t):
                ev.append("fullwidth")
            t = unicodedata.normalize("NFKC", t)
            # (the expression replaces one of these two: tried only when one is there)
            t2 = _IDEO_DOT_RE.sub(".", t) if "\u3002" in t or "\uff61" in t else t
            if t2 != t:
                if "fullwidth" not in ev:
                    ev.append("fullwidth")
                t = t2
    low = t.lower()
    changed = False  # (low is t's lower case until t changes below)
    if "[" in t or "(" in t or "{" in t or "xx" in low or "**" in t:
        t2, n = _subn_at(_DEFANG_RE, _undefang, t, _DEFANG_WORDS, low)  # one scan: find and undo
        if n:
            ev.append("defanged")
            changed = t2 is not t  # (`t` itself: low is still its lower case)
            t = t2
    if " ." in t or "\t." in t:
        t2 = _join_spaced_dots(t)
        if t2 != t:
            ev.append("split")
            t = t2
            changed = True
    return t, tuple(ev), None if changed else low


_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _join_spaced_dots(t: str) -> str:
    """`_SPACED_DOT_RE.sub(".", t)` from the places where a space or tab precedes a dot (each
    match holds one), not by trying the expression at every position: a match is the whole
    run of spaces and tabs before the dot, after a letter or digit, the dot, and the run after
    it, before a letter or digit."""
    n = len(t)
    spans: list[tuple[int, int]] = []
    for pair in (" .", "\t."):
        i = t.find(pair)
        while i != -1:
            a, b = i, i + 2
            while a > 0 and t[a - 1] in " \t":
                a -= 1
            while b < n and t[b] in " \t":
                b += 1
            if a > 0 and b < n and t[a - 1] in _ASCII_ALNUM and t[b] in _ASCII_ALNUM:
                spans.append((a, b))
            i = t.find(pair, i + 2)
    if not spans:
        return t
    spans.sort()
    out: list[str] = []
    last = 0
    for a, b in spans:
        out.append(t[last:a])
        out.append(".")
        last = b
    out.append(t[last:])
    return "".join(out)


def _undefang(m: re.Match[str]) -> str:
    g = m.group(0)
    if m.group(1):
        return "https" if g.lower().endswith("s") else "http"
    if "dot" in g.lower() or "." in g:
        return "."
    return g.strip("[]")


def _host_of(candidate: str) -> str:
    s = candidate.split("://", 1)[-1]
    for ch in "/?#\\":
        s = s.split(ch, 1)[0]
    return s.rsplit("@", 1)[-1].split(":", 1)[0]


def _host_complete(host: str) -> bool:
    if "." not in host.strip("."):
        return False
    tld = host.rstrip(".").rsplit(".", 1)[-1].lower()
    return known_tld(tld) or tld.startswith("xn--") or tld.isdigit() or not tld.isascii()


def _trim(url: str) -> str:
    while url and url[-1] in _TRAIL:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _cut_unicode_tail(url: str) -> str:
    """Japanese text glued to a URL: keep a Unicode host (IDN) but cut prose after it."""
    if url.isascii():
        return url  # (an ASCII host and tail are kept whole: the URL as it is)
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest, scheme = url, ""
    host = _host_of(rest)
    hend = rest.find(host) + len(host) if host else 0
    tail = rest[hend:]
    if not host.isascii():
        # "evil.comこちら": the ASCII part is a full host and the rest is prose
        i = next(i for i, ch in enumerate(host) if not ch.isascii())
        head = host[:i]
        if i and _host_complete(head) and (i == len(host) or host[i] != "."):
            return (scheme + sep if sep else "") + head
    if not tail.isascii():  # (an ASCII tail, the usual case, is kept whole)
        for i, ch in enumerate(tail):
            if not ch.isascii():
                tail = tail[:i]
                break
    return (scheme + sep if sep else "") + rest[:hend] + tail


_STOP_CHARS = frozenset(" \t\r\n\f\v<>\"'`{}|\\^\u3000\u3001\u3002\u300c\u300d\u300e\u300f"
                        "\uff08\uff09\u3010\u3011")


def _maybe_url(t: str) -> bool:
    """Cheap test (string methods only) whether `t` may hold a URL: the SMS path calls this
    for every message and most have none."""
    if "://" in t or "&" in t or "[" in t or "(" in t or "{" in t:
        return True
    if not t.isascii() and (_FULLWIDTH_RE.search(t) or _INVISIBLE_RE.search(t)):
        return True
    n = len(t)
    i = t.find(".")
    while i != -1:
        if 0 < i < n - 1:
            a, b = t[i - 1], t[i + 1]
            if b.isascii() and b.isalnum() and (a.isalnum() or a in "- \t"):
                return True
        i = t.find(".", i + 1)
    return False


# a dot between a letter or digit (or "-") and a letter or digit (str.isalnum is what \w
# matches, less "_"; the pattern starts with the dot, which the search looks for in C);
# a run of characters other than _STOP_CHARS
_DOT_RE = re.compile(r"\.(?<=[^\W_]\.|-\.)(?=[^\W_])")
_RUN_RE = re.compile("[^" + re.escape("".join(sorted(_STOP_CHARS))) + "]*")


def _dot_tokens(t: str) -> list[tuple[int, int]]:
    """Spans of the whitespace-delimited tokens that contain `x.y` (bare-domain candidates):
    from each such dot, the run of characters other than _STOP_CHARS around it (found back
    from the dot in the reversed text), then the next such dot after the token."""
    spans: list[tuple[int, int]] = []
    m = _DOT_RE.search(t)
    if m is None:
        return spans
    n = len(t)
    rev = t[::-1]  # (t[i - 1] is rev[n - i])
    while m is not None:
        i = m.start()
        a = i - (_RUN_RE.match(rev, n - i).end() - (n - i))  # type: ignore[union-attr]
        b = _RUN_RE.match(t, i).end()  # type: ignore[union-attr]
        if not spans or spans[-1][1] < a:
            spans.append((a, b))
        m = _DOT_RE.search(t, b)
    return spans


def _from_text(text: str, source: str) -> list[FoundUrl]:
    if not _maybe_url(text):
        return []
    t, ev, low = _normalize(text)
    out: list[FoundUrl] = []
    taken: list[tuple[int, int]] = []
    if low is None:
        low = t.lower()
    if "://" in t or "www" in low:
        for m in _finditer_at(_SCHEME_URL_RE, t, _SCHEME_WORDS, low):
            start, end = m.span()
            url = m.group(0)
            url, end, joined = _join_broken(t, url, end)
            taken.append((start, end))
            f = _make(url, source, text, (*ev, "split") if joined else ev)
            if f is not None:
                out.append(f)
                if len(out) >= limits.current().urls_per_message:
                    return out
    overlaps = _overlap_test(taken)
    for a, b in _dot_tokens(t):
        if overlaps(a, b):  # (a bare-domain token inside or across a URL found above)
            continue
        for m in _BARE_RE.finditer(t, a, b):
            host, path = m.group(1), m.group(2) or ""
            tld = host.rsplit(".", 1)[-1].lower()
            if not (tld in _BARE_TLDS or tld in RESERVED_TLDS
                    or (path.startswith("/") and is_tld(tld))
                    or (tld.startswith("xn--") and is_tld(tld))):
                continue
            if host.lower().startswith(("e.g", "i.e")):
                continue
            url, _, joined = _join_broken(t, host + path, m.end())
            f = _make(url, source, text,
                      (*ev, "no-scheme", "split") if joined else (*ev, "no-scheme"))
            if f is not None:
                out.append(f)
                if len(out) >= limits.current().urls_per_message:
                    return out
    return out


def _overlap_test(spans: list[tuple[int, int]]) -> Callable[[int, int], bool]:
    """For non-empty spans in order of their starts: whether a span (a, b) overlaps one of
    them (`x <= a < y or a <= x < b`, which for non-empty spans is x < b and a < y), by a
    bisection: of the spans starting before b, the furthest end is past a."""
    starts = [x for x, _y in spans]
    reach = list(accumulate((y for _x, y in spans), max))

    def overlaps(a: int, b: int) -> bool:
        i = bisect_left(starts, b)
        return i > 0 and reach[i - 1] > a

    return overlaps


def _finditer_at(pattern: re.Pattern[str], t: str, words: tuple[str, ...],
                 low: str | None = None) -> Iterator[re.Match[str]]:
    """`pattern.finditer(t)` for a pattern whose matches all begin with one of `words` (case
    insensitive): in ASCII text the pattern is tried only where `str.find` sees one of them,
    not at every position of the text. The same matches, in the same order. `low`: t.lower(),
    when the caller has it."""
    if low is None:
        low = t.lower()
    if not t.isascii():
        if len(low) != len(t):  # lower case of another length (U+0130): scan everywhere
            yield from pattern.finditer(t)
            return
        for odd, letter in _FOLD_TO_ASCII.items():  # (str.translate: a lookup per character)
            if odd in low:
                low = low.replace(odd, letter)
    starts: set[int] = set()
    for word in words:
        i = low.find(word)
        while i != -1:
            starts.add(i)
            i = low.find(word, i + 1)
    pos = 0
    for start in sorted(starts):
        if start < pos:
            continue  # inside the previous match
        m = pattern.match(t, start)
        if m is not None:
            yield m
            pos = m.end()


def _subn_at(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], t: str,
             words: tuple[str, ...], low: str | None = None) -> tuple[str, int]:
    """`pattern.subn(repl, t)` with the matches of `_finditer_at` (patterns that cannot
    match the empty string)."""
    out: list[str] = []
    last = 0
    same = True  # (every replacement so far is the text it replaces)
    for m in _finditer_at(pattern, t, words, low):
        out.append(t[last:m.start()])
        r = repl(m)
        same = same and r == m.group(0)
        out.append(r)
        last = m.end()
    if not out:
        return t, 0
    if same:  # the text as it is (an ordinary "http:" is such a match): `t` itself
        return t, len(out) // 2
    out.append(t[last:])
    return "".join(out), len(out) // 2


# the characters other than A-Z that IGNORECASE matches with an ASCII letter, as lower() leaves
# them (dotless i, long s; the Kelvin sign lower-cases to k, U+0130 to two characters)
_FOLD_TO_ASCII = {"\u0131": "i", "\u017f": "s"}
_SCHEME_WORDS = ("http", "ftp", "www")  # where a _SCHEME_URL_RE match can begin
_DEFANG_WORDS = ("hxx", "h**", "htt", "[", "(", "{")  # and a _DEFANG_RE match


_CONT_RE = re.compile(rf"[ \t]*\r?\n?[ \t]*([^{_STOP}]+)")


def _join_broken(t: str, url: str, end: int) -> tuple[str, int, bool]:
    """Join a URL broken by a line break or a space: the host is not complete yet, the URL
    ends with a joining character, or the continuation starts with `/`, `.` or `?`."""
    joined = False
    for _ in range(3):
        if end >= len(t) or t[end] not in " \t\r\n":
            break
        m = _CONT_RE.match(t, end)
        if m is None or ("\n" in t[end:m.start(1)] and t[end:m.start(1)].count("\n") > 1):
            break
        cont = _trim(m.group(1))
        if not cont:
            break
        host = _host_of(url)
        has_newline = "\n" in t[end:m.start(1)]
        incomplete = not _host_complete(host) and "/" not in url.split("://", 1)[-1]
        joiner = url[-1] in ".-=&%_" and has_newline
        continues = cont[0] in "/?.&=" and (has_newline or cont[0] in "/?")
        if incomplete and not (cont[0].isalnum() or cont[0] in ".-"):
            break
        if not (incomplete or joiner or continues):
            break
        if incomplete and not has_newline and not _host_complete(host + cont.split("/")[0]):
            break
        url += cont
        end = m.start(1) + len(cont)
        joined = True
    return url, end, joined


_HAS_SCHEME_RE = re.compile(r"(?i)(?:https?|ftp)://")


def _make(candidate: str, source: str, original: str, ev: tuple[str, ...],
          display_host: str = "") -> FoundUrl | None:
    url = _trim(_cut_unicode_tail(_trim(candidate)))
    if not url:
        return None
    if not _HAS_SCHEME_RE.match(url):
        url = "http://" + url
    try:
        c = canonicalize(url)
    except UrlError:
        return None
    if not c.is_ip and not _host_complete(c.host):
        return None
    evasions = list(ev)
    raw_host = _host_of(url)
    if "split" not in evasions and raw_host in original:
        # the URL stands in the text as it is: text-level evasions elsewhere are not its own
        evasions = [e for e in evasions if e == "no-scheme"]
    if "%" in raw_host:
        evasions.append("percent")
    if "xn--" in c.host or not raw_host.isascii():
        evasions.append("idn")
    return FoundUrl(c.url, source, c.host, tuple(dict.fromkeys(evasions)), display_host, c)


_ANCHOR_RE = re.compile(  # ("at": where its href attribute starts)
    r"""(?is)<a\b[^>]*?(?P<at>)\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>(.*?)</a\s*>"""
)
_ATTR_URL_RE = re.compile(
    r"""(?i)\b(?:href|src|action|background|formaction)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"""
)
_ATTR_WORDS = ("href", "src", "action", "background", "formaction")
_TAG_RE = re.compile(r"(?s)<[^>]*>")


def _from_html(html: str) -> list[FoundUrl]:
    out: list[FoundUrl] = []
    anchored: set[str] = set()
    # an anchor's href comes again in the attribute pass, and mail repeats its links: each
    # (href, shown) is examined once per message (`_href` depends on nothing else)
    memo: dict[tuple[str, str], FoundUrl | None] = {}

    def href_once(href: str, shown: str) -> FoundUrl | None:
        key = (href, shown)
        if key not in memo:
            memo[key] = _href(href, shown)
        return memo[key]

    # where the anchors' href attributes start: the attribute pass finds them again with the
    # same value, and adds nothing for them (the anchor's URL, or none, is already decided)
    anchor_hrefs: set[int] = set()
    for m in _ANCHOR_RE.finditer(html):
        anchor_hrefs.add(m.start("at"))
        href = htmlmod.unescape(m.group(2) or m.group(3) or m.group(4) or "").strip()
        if not href or href.lower().startswith(_SKIP_SCHEMES):
            continue
        visible = htmlmod.unescape(_TAG_RE.sub("", m.group(5)))
        shown = ""
        vis_urls = _from_text(visible, "html") if visible.strip() else []
        if vis_urls:
            shown = vis_urls[0].host
        f = href_once(href, shown)
        if f is not None:
            anchored.add(f.url)
            out.append(f)
        if len(out) >= limits.current().urls_per_message:
            return out
    for m in _finditer_at(_ATTR_URL_RE, html, _ATTR_WORDS):
        if m.start() in anchor_hrefs:
            continue
        href = htmlmod.unescape(m.group(1) or m.group(2) or m.group(3) or "").strip()
        if not href or href.lower().startswith(_SKIP_SCHEMES):
            continue
        f = href_once(href, "")
        if f is not None and f.url not in anchored:
            out.append(f)
            if len(out) >= limits.current().urls_per_message:
                break
    return out


def _href(href: str, shown: str) -> FoundUrl | None:
    low = href.lower()
    if not (low.startswith(("http:", "https:", "ftp:", "//", "www.")) or "://" in low[:12]):
        return None  # relative link: no host of its own
    if low.startswith("//"):
        href = "http:" + href
    t, ev = normalize_text(href)
    f = _make(t.strip(), "html", href, ev)
    if f is None:
        return None
    display = shown if shown and mismatch(shown, f.host) else ""
    if display:
        return FoundUrl(f.url, f.source, f.host, f.evasions, display, f.canonical)
    return f


def mismatch(shown_host: str, real_host: str) -> bool:
    """The visible link text names another site than the link goes to (by registered domain;
    `www.` and subdomains of the same site are not a mismatch)."""
    if shown_host == real_host:
        return False
    return registered_domain(shown_host) != registered_domain(real_host)
