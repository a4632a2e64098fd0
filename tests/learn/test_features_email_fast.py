"""The shortcuts of the e3 featuriser (gateway/learn/features_email.py) give, bit for bit, what
the steps they stand for give (the corpus-wide check: perf/feature_rows.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.learn import features as f2
from gateway.learn import features_email as E

_PIECES = ["a", "Z", "0", "7", " ", "\n", "the", "WORD", "\u00e9", "\u6771\u4eac", "\udce9",
           "\U0001f600", "_", "-", "http://x.example/a?b=1", "\u0661"]


def _as_three_blocks(words: list[str], ctext: str, head: str) -> tuple[np.ndarray, np.ndarray]:
    wi, wv = f2._block(f2._word_ids(words), E.BLOCK_WEIGHTS["w"])
    ci, cv = f2._block(E._char_ids(ctext, (3, 4)), E.BLOCK_WEIGHTS["c"])
    ri, rv = f2._block(E._char_ids(head, (4,), E._R_SEED), E.BLOCK_WEIGHTS["r"])
    return np.concatenate((wi, ci, ri)), np.concatenate((wv, cv, rv))


def _check(words: list[str], ctext: str, head: str) -> None:
    cols, vals, kc, kr = E._hashed_blocks(words, ctext, head)
    ei, ev = _as_three_blocks(words, ctext, head)
    assert cols.dtype == np.int64 and vals.dtype == np.float64
    assert cols.tobytes() == ei.tobytes()
    assert vals.tobytes() == ev.tobytes()
    assert kc == f2._block(f2._word_ids(words), 1.0)[0].size
    assert cols.size - kr == f2._block(E._char_ids(head, (4,), E._R_SEED), 1.0)[0].size


@given(st.lists(st.sampled_from(_PIECES), max_size=40), st.lists(st.sampled_from(_PIECES),
                                                                  max_size=12))
def test_hashed_blocks_as_the_three_blocks(body: list[str], header: list[str]) -> None:
    text0, words = f2._text0_words("".join(body))
    _check(words, text0[:E.MAX_CHAR_CHARS], "".join(header).lower())


def test_hashed_blocks_of_short_long_and_repetitive_text() -> None:
    """Every length around the n-gram sizes, blocks left empty one by one, texts long enough
    for the sorted runs, and counts above the term-frequency table."""
    for n in range(7):
        t = "abcdefg"[:n]
        for words in ([], ["w"], ["w", "v"]):
            _check(words, t, t)
            _check(words, "", t)
            _check(words, t, "")
    rnd = random.Random(11)
    pool = "ab c\u00e9\u6771\udce9\U0001f600"
    for size in (100, 1000, 3000):
        t = "".join(rnd.choice(pool) for _ in range(size))
        words = t.split()
        _check(words, t[:E.MAX_CHAR_CHARS], t[:E.MAX_HEADER_CHARS])
    _check(["spam"] * 9000, "x" * 1000, "y" * 2000)  # counts of 9,000 and 1,000+


@given(st.lists(st.sampled_from(["a", "_", "1", " ", "<", "!", "-", ">", "<!--", "-->", "x" * 39,
                                 "\u00e9", "\u0661", "<!---->"]), max_size=14))
def test_comment_split_found_as_by_the_expression(pieces: list[str]) -> None:
    t = "".join(pieces)
    assert (E._COMMENT_SPLIT_AT_RE.search(t) is None) == (E._COMMENT_SPLIT_RE.search(t) is None)


@given(st.lists(st.sampled_from(["http://h.example/", "?", "&", "url", "goto", "=", "http", "%2f",
                                 "/", "a", "_", "x=1"]), max_size=10))
def test_redirect_prefilter_misses_no_match(pieces: list[str]) -> None:
    low = "".join(pieces)
    if E._REDIRECT_RE.search(low):
        assert "?" in low or "&" in low


@given(st.text(max_size=40) | st.lists(st.sampled_from(
    ["$", "5", " ", "%", "usd", "U\u017fD", "Pounds", "dollar", "\u5186", "\u00a3", "!", "?", "!?",
     "?!", "x", "A", "\u2160", "#", "^"]), max_size=12).map("".join))
def test_subject_tokens_as_the_plain_formulas(subj: str) -> None:
    """`_subject`'s shortcuts (letter counts, symbol counts, the non-ASCII test) give the
    tokens of the formulas they replace."""
    from collections import Counter

    out: Counter[str] = Counter()
    E._subject(subj, out)
    if not subj.strip():
        assert out == Counter({"m:subj_empty": 1})
        return
    letters = [ch for ch in subj if ch.isalpha()]
    caps = [t for t in out if t.startswith("m:subj_caps=")]
    if letters:
        want = sum(ch.isupper() for ch in letters) / len(letters)
        assert caps == [f"m:subj_caps={f2._bucket(want, (0.1, 0.3, 0.6))}"]
    else:
        assert caps == []
    sym = sum(ch in "!$%*@#?+=~^|" for ch in subj)
    assert [t for t in out if t.startswith("m:subj_sym=")] == (
        [f"m:subj_sym={f2._bucket(sym, (1, 3))}"] if sym else [])
    assert ("m:subj_nonascii" in out) == any(ord(ch) > 127 for ch in subj)
    assert ("m:subj_money" in out) == bool(E._MONEY_RE.search(subj) or E._PERCENT_RE.search(subj))
    assert ("m:subj_punct_run" in out) == bool(E._PUNCT_RUN_RE.search(subj))


@given(st.lists(st.sampled_from(["Call", "CAPS", "x", "1", "2", "-", " ", "555-123-4567", "\u00e9",
                                 "\u0661\u0662\u0663", "\n", "!", "\u00c9"]), max_size=20))
def test_body_caps_and_phone_as_the_plain_formulas(pieces: list[str]) -> None:
    from collections import Counter

    text = "".join(pieces)
    out: Counter[str] = Counter()
    E._body(text, out)
    if not text:
        return
    b = text.encode("ascii", "ignore")
    upper = sum(65 <= c <= 90 for c in b)
    lower = sum(97 <= c <= 122 for c in b)
    caps = [t for t in out if t.startswith("m:body_caps=")]
    assert caps == ([f"m:body_caps={f2._bucket(upper / (upper + lower), (0.05, 0.15, 0.3))}"]
                    if upper + lower else [])
    assert ("m:body_phone" in out) == (E._PHONE_ANY_RE.search(text) is not None)


def test_first_values_and_received_as_read_field_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each name's first field is its value (any case of the name); of the Received fields,
    the last (the earliest hop) is read."""
    from gateway.learn.features import Features
    from gateway.message import Channel

    headers = (("Received", "from a"), ("From", "x@a.example"), ("received", "from b"),
               ("FROM", "y@b.example"), ("Message-ID", "<1234567890@a.example>"),
               ("RECEIVED", "from c"))
    f = Features(Channel.EMAIL, "t", headers=headers, subject="s")
    toks = E.meta_tokens(f)
    assert "m:mid_other_domain" not in toks  # (against the second From's domain: there)
    seen: list[list[str]] = []
    monkeypatch.setattr(E, "_received", lambda values, out: seen.append(values))
    E.meta_tokens(f)
    assert seen == [["from c"]]


@given(st.lists(st.sampled_from(["<a ", "<a\n", "<a", "href", "=", '"', "'", "http://x.example",
                                 ">", "</a", "</a>", "text", " ", "<b>", "x" * 60, "<abbr>",
                                 "href=h", "\u00e9"]), max_size=24))
def test_anchors_as_the_expression(pieces: list[str]) -> None:
    low = "".join(pieces).lower()
    assert E._anchors(low) == E._HREF_RE.findall(low)[:E.MAX_URLS]


def test_anchors_stop_at_the_cap_and_read_200_characters() -> None:
    for gap in (199, 200, 201):
        low = ('<a href="h">' + "y" * gap + "</a>") * 50
        assert E._anchors(low) == E._HREF_RE.findall(low)[:E.MAX_URLS]


def test_only_a_matches_a_ignoring_case_in_lower_case_text() -> None:
    import re

    every = "".join(map(chr, range(0x110000))).lower()
    assert set(re.findall("(?i)a", every)) == {"a"}


@given(st.dictionaries(st.sampled_from(["m:a", "m:b", "h:s:w", "h:f:v", "m:c", "h:s:0", "m:d"]),
                       st.integers(min_value=1, max_value=4), max_size=7))
def test_meta_block_as_the_formula_token_by_token(counts: dict[str, int]) -> None:
    """`_meta_block` (remembered columns, the single-count shortcut): the columns of
    `_meta_col` and the values of the general formula (sub-linear count, each block's L2 norm
    summed in order, block weight), bit for bit."""
    import math
    from collections import Counter

    tokens = Counter(counts)
    norm = {"m": 0.0, "h": 0.0}
    for k, c in tokens.items():
        v = 1.0 + math.log(c) if c > 1 else float(c)
        norm[k[0]] += v * v
    scale = {k: E.BLOCK_WEIGHTS[k] / math.sqrt(n) if n else 0.0 for k, n in norm.items()}
    want = [(1.0 + math.log(c) if c > 1 else float(c)) * scale[k[0]] for k, c in tokens.items()]
    cols, vals = E._meta_block(tokens)
    assert cols == [f2._meta_col(k) for k in tokens]
    assert np.array(vals).tobytes() == np.array(want).tobytes()


def test_hidden_text_alternatives_are_the_expression() -> None:
    """`_hidden_text` tries `_HIDDEN_RE`'s alternatives one by one: the same four, in full."""
    parts = [E._HIDDEN_FONT_RE.pattern, E._HIDDEN_DISPLAY_RE.pattern,
             E._HIDDEN_VISIBILITY_RE.pattern, E._HIDDEN_SIZE_RE.pattern]
    assert E._HIDDEN_RE.pattern == "(?:" + "|".join(parts) + ")"


@given(st.lists(st.sampled_from(["font", "-size", " ", "=", ":", "size", "color", "'", '"', "#",
                                 "fff", "white", "0", "1", "px", ">", "display", "none",
                                 "visibility", "hidden", "x" * 50, "a"]), max_size=16))
def test_hidden_text_as_the_expression(pieces: list[str]) -> None:
    low = "".join(pieces)
    assert E._hidden_text(low) == (E._HIDDEN_RE.search(low) is not None)


@given(st.lists(st.sampled_from(["<p>", "</p>", "<!-- c -->", "<script>x</script>", " ", "  ", "\t",
                                 "\r\n", "\n", "\v", "\f", "&nbsp;", "&amp;", "\u00a0", "\u2003",
                                 "\x1c", "word", "<br/>", "\u00e9", "<style>a{}</style>"]),
                max_size=30))
def test_html_to_text_as_the_expression(pieces: list[str]) -> None:
    """`mime.html_to_text` (the text e3 reads of HTML-only mail) collapses whitespace as the
    one expression it replaced did."""
    import html
    import re

    from gateway.mime import _TAG_RE, html_to_text

    markup = "".join(pieces)
    want = re.sub(r"[ \t\r\f\v]+", " ", html.unescape(_TAG_RE.sub(" ", markup))).strip()
    assert html_to_text(markup) == want


@given(st.binary(max_size=40).map(lambda b: bytes(c & 0x7F for c in b))
       | st.lists(st.sampled_from([b"1", b"0", b"9", b"-", b" ", b"a", b"\n", b"+", b"\t"]),
                  max_size=30).map(b"".join))
def test_phone_classes_as_the_expression(raw: bytes) -> None:
    assert (E._PHONE_CLASS_RE.search(raw.translate(E._PHONE_CLASSES)) is None) == (
        f2._PHONE_ASCII_RE.search(raw) is None)


@given(st.one_of(st.integers(-5, 20_000), st.floats(-1.0, 1e6, allow_nan=False)),
       st.sampled_from([(0, 1, 3), (1, 3), (2, 10), (0.05, 0.15, 0.4), (0, 1, 2, 4, 9, 20),
                        (1, 2, 4), (0.1, 0.5, 2), (0.1, 0.3, 0.6), (10, 30, 60),
                        (100, 300, 1000, 3000, 10000), (0.05, 0.15, 0.3), (0, 2, 6)]))
def test_rank_is_the_bucket(x: float, edges: tuple[float, ...]) -> None:
    assert E._rank(edges, x) == f2._bucket(x, edges)
    for e in edges:  # (on the edges themselves: the bucket they close)
        assert E._rank(edges, e) == f2._bucket(e, edges)
