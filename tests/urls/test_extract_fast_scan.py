"""`_finditer_at` and `_subn_at` (regular expressions tried only where their first word appears)
find exactly what `finditer` and `subn` find, for the patterns they speed up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.urls import extract as ex

PIECES = ["http", "https", "HTTP", "ftp", "sftp", "www", "WWW", "wwww", "www1", "://", ":/", ".",
          "a", "x", "-", "/", " ", "\n", "(", ")", "[.]", "href", "src", "formaction", "action",
          "background", "hxxp", "hXXps", "h**p", "[dot]", "(DOT)", "{.}", "[:]", "[://]", "=", '"', "'", ">", "<a ", "example", "com", "\u00e9", "\u017f", "\u212a", "\u00fc",  # é, long s, Kelvin, ü
          "\u0131", "\u0130", "\u017fRC", "act\u0131on", "HTTP\u017f", "\u3042"]  # dotless i, İ, あ


@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_same_matches_as_finditer(pieces: list[str]) -> None:
    t = "".join(pieces)
    for pattern, words in ((ex._SCHEME_URL_RE, ex._SCHEME_WORDS), (ex._ATTR_URL_RE, ex._ATTR_WORDS)):
        want = [(m.span(), m.groups()) for m in pattern.finditer(t)]
        got = [(m.span(), m.groups()) for m in ex._finditer_at(pattern, t, words)]
        assert got == want
    assert ex._subn_at(ex._DEFANG_RE, ex._undefang, t, ex._DEFANG_WORDS) == \
        ex._DEFANG_RE.subn(ex._undefang, t)


def test_examples() -> None:
    t = "see https://a.example/x, www.b.example and xhttp://c.example (ftp://d.example)"
    got = [m.group(0) for m in ex._finditer_at(ex._SCHEME_URL_RE, t, ex._SCHEME_WORDS)]
    assert got == ["https://a.example/x,", "www.b.example", "ftp://d.example)"]


def _normalize_text_before(text: str) -> tuple[str, tuple[str, ...]]:
    """normalize_text as it was before `_normalize` shared its lower-cased text (the reference)."""
    ev: list[str] = []
    t = text
    if "&" in t and ex._ENTITY_RE.search(t):
        t2 = ex.htmlmod.unescape(t)
        if t2 != t:
            ev.append("entity")
            t = t2
    if ex._INVISIBLE_RE.search(t):
        ev.append("zero-width")
        t = t.translate(ex._INVISIBLE)
    if not t.isascii():
        if ex._FULLWIDTH_RE.search(t):
            ev.append("fullwidth")
        t = ex.unicodedata.normalize("NFKC", t)
        t2 = ex._IDEO_DOT_RE.sub(".", t)
        if t2 != t:
            if "fullwidth" not in ev:
                ev.append("fullwidth")
            t = t2
    if "[" in t or "(" in t or "{" in t or "xx" in t.lower() or "**" in t:
        t2, n = ex._DEFANG_RE.subn(ex._undefang, t)
        if n:
            ev.append("defanged")
            t = t2
    if " ." in t or "\t." in t:
        t2 = ex._SPACED_DOT_RE.sub(".", t)
        if t2 != t:
            ev.append("split")
            t = t2
    return t, tuple(ev)


NORMALIZE_PIECES = [*PIECES, "&amp;", "&#46;", "&period;", "&", "\u200b", "\u00ad", "\uff0e",
                    "\u3002", "\uff41", " . ", "\t.", "xX", "**", "Xx", "\ufeff"]


@given(st.lists(st.sampled_from(NORMALIZE_PIECES), max_size=40))
def test_normalize_as_before(pieces: list[str]) -> None:
    t = "".join(pieces)
    got, ev, low = ex._normalize(t)
    assert (got, ev) == _normalize_text_before(t) == ex.normalize_text(t)
    assert low is None or low == got.lower()


def test_fold_table_is_complete() -> None:
    """Every character outside ASCII that IGNORECASE matches with an ASCII letter lower-cases
    to that letter, to two characters (then every position is scanned), or is in the table."""
    import re

    odd = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        pattern = re.compile("(?i)" + letter)
        for cp in range(0x80, 0x3000):  # (the matches are all below U+3000)
            ch = chr(cp)
            if pattern.match(ch) and len(ch.lower()) == 1 and ch.lower() != letter:
                odd[ch.lower()] = letter
    assert odd == ex._FOLD_TO_ASCII


@given(st.lists(st.sampled_from([" ", "\t", ".", "a", "Z", "0", "-", "\n", "\u00e9", " . ", "x .y"]),
                max_size=30))
def test_spaced_dots_as_the_expression(pieces: list[str]) -> None:
    t = "".join(pieces)
    assert ex._join_spaced_dots(t) == ex._SPACED_DOT_RE.sub(".", t)


def _dot_tokens_before(t: str) -> list[tuple[int, int]]:
    """`_dot_tokens` as it was, character by character (the reference)."""
    spans: list[tuple[int, int]] = []
    n = len(t)
    i = t.find(".")
    while i != -1:
        if 0 < i < n - 1 and t[i + 1].isalnum() and (t[i - 1].isalnum() or t[i - 1] == "-"):
            a = i
            while a > 0 and t[a - 1] not in ex._STOP_CHARS:
                a -= 1
            b = i
            while b < n and t[b] not in ex._STOP_CHARS:
                b += 1
            if not spans or spans[-1][1] < a:
                spans.append((a, b))
            i = t.find(".", b)
            continue
        i = t.find(".", i + 1)
    return spans


DOT_PIECES = ["a", "Z", "1", "_", "-", ".", "..", " ", "\t", "\n", "<", ">", '"', "|", "^", "\\",
              "\u3000", "\u3002", "\u00e9", "\u0663", "\u00b2", "\u2160", "\u3042", "x.y",
              "evil.example/login", "e.g.", "-.", "._", "\u00b2.\u00b2"]  # ², Roman one, あ


@given(st.lists(st.sampled_from(DOT_PIECES), max_size=30))
def test_dot_tokens_as_before(pieces: list[str]) -> None:
    t = "".join(pieces)
    assert ex._dot_tokens(t) == _dot_tokens_before(t)


def _cut_unicode_tail_before(url: str) -> str:
    """`_cut_unicode_tail` without its shortcut for ASCII URLs (the reference)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest, scheme = url, ""
    host = ex._host_of(rest)
    hend = rest.find(host) + len(host) if host else 0
    tail = rest[hend:]
    if not host.isascii():
        i = next(i for i, ch in enumerate(host) if not ch.isascii())
        head = host[:i]
        if i and ex._host_complete(head) and (i == len(host) or host[i] != "."):
            return (scheme + sep if sep else "") + head
    if not tail.isascii():
        for i, ch in enumerate(tail):
            if not ch.isascii():
                tail = tail[:i]
                break
    return (scheme + sep if sep else "") + rest[:hend] + tail


URL_PIECES = ["http://", "https://", "://", "a", "evil", ".", "com", "example", "/", "?", "#",
              "\\", "@", ":", "8080", "%2e", "-", " ", "\u3053\u3061\u3089", "\u00e9", "xn--"]


@given(st.lists(st.sampled_from(URL_PIECES), max_size=20))
def test_cut_unicode_tail_as_before(pieces: list[str]) -> None:
    url = "".join(pieces)
    assert ex._cut_unicode_tail(url) == _cut_unicode_tail_before(url)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 8)), max_size=6),
       st.integers(0, 40), st.integers(1, 10))
def test_overlap_test_as_the_pairwise_one(steps: list[tuple[int, int]], a: int, width: int) -> None:
    """`_overlap_test` (bisection over the spans' starts) answers the pairwise test for spans
    in order of start, overlapping each other or not, as URLs joined across lines can."""
    spans: list[tuple[int, int]] = []
    x = 0
    for gap, length in steps:
        x += gap + (1 if spans else 0)
        spans.append((x, x + length))
    b = a + width
    want = any(x <= a < y or a <= x < b for x, y in spans)
    assert ex._overlap_test(spans)(a, b) == want


def _from_html_before(html: str) -> list[ex.FoundUrl]:
    """`_from_html` as it was: every attribute match examined, anchors' hrefs included."""
    anchor_re = ex.re.compile(
        r"""(?is)<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>(.*?)</a\s*>""")
    out: list[ex.FoundUrl] = []
    anchored: set[str] = set()
    for m in anchor_re.finditer(html):
        href = ex.htmlmod.unescape(m.group(1) or m.group(2) or m.group(3) or "").strip()
        if not href or href.lower().startswith(ex._SKIP_SCHEMES):
            continue
        visible = ex.htmlmod.unescape(ex._TAG_RE.sub("", m.group(4)))
        vis_urls = ex._from_text(visible, "html") if visible.strip() else []
        f = ex._href(href, vis_urls[0].host if vis_urls else "")
        if f is not None:
            anchored.add(f.url)
            out.append(f)
    for m in ex._finditer_at(ex._ATTR_URL_RE, html, ex._ATTR_WORDS):
        href = ex.htmlmod.unescape(m.group(1) or m.group(2) or m.group(3) or "").strip()
        if not href or href.lower().startswith(ex._SKIP_SCHEMES):
            continue
        f = ex._href(href, "")
        if f is not None and f.url not in anchored:
            out.append(f)
    return out


HTML_PIECES = ['<a href="http://a.example/x">', "<a HREF=http://b.example>", "<a href='//c.example'>",
               '<a title="t" href="mailto:x@y.example">', "<a name=n>", '<a src=href="http://d.example">',
               "</a>", "</A >", "visit e.example", "http://f.example/login", "<b>", "</b>",
               '<img src="http://a.example/x">', "<img src=http://g.example/i.png>",
               '<form action="https://h.example/post">', "<area href=http://i.example>", " ", "\n",
               '<a href="http://a.example/x&amp;y">', "&#46;", "<a href=>", "<a\nhref = 'relative/p'>"]


@given(st.lists(st.sampled_from(HTML_PIECES), max_size=14))
def test_from_html_as_before(pieces: list[str]) -> None:
    html = "".join(pieces)
    assert ex._from_html(html) == _from_html_before(html)
