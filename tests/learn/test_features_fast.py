"""The shortcuts of the f2 featuriser give what the expressions they stand for give."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.learn import features as f2


@given(st.lists(st.sampled_from(["a", "Z", "0", "-", ".", " ", "com", "COM", ".co", ".info", "net",
                                 "x" * 30, "y" * 62, "_", "@", "/", ".jp", "bIz", "\n", "\u00e9"]),
                max_size=30))
def test_bare_domain_found_as_by_the_expression(pieces: list[str]) -> None:
    t = "".join(pieces)
    if t.isascii():
        assert f2._has_bare_domain(t, t.lower()) == (f2._BARE_DOMAIN_RE.search(t) is not None)


@given(st.lists(st.sampled_from(["+", "1", "0", "9", "-", " ", "a", "\u0661", "\n"]), max_size=30))
def test_phone_found_as_by_the_expression(pieces: list[str]) -> None:
    t = "".join(pieces)
    assert (f2._PHONE_ANY_RE.search(t) is None) == (f2._PHONE_RE.search(t) is None)


@given(st.lists(st.sampled_from(["http", "HTTP", "hTtPs", "://", "www.", "WWW.", "ww", "w.", "x",
                                 " ", "\u017f", "\u212a", "\u0131", "example.com"]), max_size=20))
def test_url_prefilter_finds_what_the_expression_finds(pieces: list[str]) -> None:
    t = "".join(pieces)
    assert f2._find_urls_any(t) == f2._find_urls(t)


def test_no_other_character_matches_the_url_words_ignoring_case() -> None:
    """The prefilter of `_find_urls_any` looks for "http" and "www." in the lower-cased text:
    no character outside ASCII matches h, t, p, w or "." ignoring case (U+3000 and above hold
    no case pairs of ASCII letters)."""
    for ch in "htpw.":
        pattern = re.compile("(?i)" + re.escape(ch))
        assert [cp for cp in range(0x80, 0x3000) if pattern.match(chr(cp))] == []


@given(st.lists(st.sampled_from(["a", "1", "\u0661", " ", "_", "\u00e9", "X"]), max_size=20))
def test_subject_words_zeroed_before_or_after_splitting(pieces: list[str]) -> None:
    t = f2.normalise("".join(pieces))
    assert f2._WORD_RE.findall(f2._zero_digits(t)) == [f2._DIGITS_RE.sub("0", w)
                                                        for w in f2._WORD_RE.findall(t)]


@given(st.text(st.characters(max_codepoint=0x7f), max_size=80))
def test_ascii_words_as_the_expression(t: str) -> None:
    assert f2._words(t) == f2._WORD_RE.findall(t)


@given(st.text(max_size=40))
def test_words_as_the_expression(t: str) -> None:
    assert f2._words(t) == f2._WORD_RE.findall(t)


@given(st.lists(st.text(max_size=12), max_size=20))
def test_meta_columns_as_with_numpy(tokens: list[str]) -> None:
    import numpy as np

    for tok in tokens:
        h = np.array([f2._token_hash(tok)], dtype=np.uint64)
        want = int((f2._mix(h ^ f2._SEEDS["m"]) & f2._MASK)[0])
        f2._META_COLS.pop(tok, None)
        assert f2._meta_col(tok) == want


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_mix_one_as_the_vector_mix(h: int) -> None:
    import numpy as np

    assert f2._mix_one(h) == int(f2._mix(np.array([h], dtype=np.uint64))[0])


def _host_by_urlsplit(url: str) -> str:
    return f2._host_urlsplit(url if f2._SCHEME_RE.match(url) else "http://" + url)


@given(st.lists(st.sampled_from(["http://", "HTTPS://", "ftp:", "//", "a", "B", "0", ".", ":", "@",
                                 "/", "?", "#", "%", "[", "]", "\t", "\n", " ", "\u00e9", "\u3002",
                                 "example.com", "user:pw@", ":8080", "xn--", "~", "\\", "\x01"]),
                max_size=25))
def test_host_as_by_urlsplit(pieces: list[str]) -> None:
    url = "".join(pieces)
    assert f2._host(url) == _host_by_urlsplit(url)


@given(st.text(max_size=60))
def test_host_of_any_text_as_by_urlsplit(url: str) -> None:
    assert f2._host(url) == _host_by_urlsplit(url)


@given(st.lists(st.sampled_from(["the", "a", "0", "_", "\u00e9t\u00e9", "\u65e5\u672c", "x" * 20]),
                max_size=60),
       st.text(st.sampled_from("ab0 .\u00e9\u65e5\U0001f600"), max_size=300),
       st.sampled_from([(1.0, 1.0), (0.6, 0.3)]))
def test_text_blocks_as_the_two_blocks(words: list[str], ctext: str,
                                       weights: tuple[float, float]) -> None:
    """One hash mix and one sort for words and characters give the two blocks, bit for bit."""
    import numpy as np

    wi, wv = f2._block(f2._word_ids(words), weights[0])
    ci, cv = f2._block(f2._char_ids(ctext), weights[1])
    ti, tv = f2._text_blocks(words, ctext, *weights)
    assert ti.dtype == np.int64 and tv.dtype == np.float64
    assert ti.tobytes() == np.concatenate((wi, ci)).tobytes()
    assert tv.tobytes() == np.concatenate((wv, cv)).tobytes()


@given(st.integers(0, 5000), st.integers(1, 2**20), st.integers(0, 2**32 - 1))
def test_sort_runs_as_the_sort(n: int, high: int, seed: int) -> None:
    """Runs sorted alone and merged give the sorted array (lengths around the run length,
    many or few distinct values)."""
    import numpy as np

    a = np.random.default_rng(seed).integers(0, high, n).astype(np.uint32)
    b = a.copy()
    f2._sort_runs(b)
    assert b.tobytes() == np.sort(a).tobytes()


def test_text_blocks_of_long_text_as_the_two_blocks() -> None:
    """`_text_blocks` with the character block longer than the sorted runs (3,000 characters:
    ~9,000 n-grams), bit for bit the two blocks."""
    import random

    import numpy as np

    rnd = random.Random(5)
    for k in range(20):
        alphabet = "abcdefghij ." if k % 2 else "ab0 .\u00e9\u65e5xyzXYZ"
        ctext = "".join(rnd.choice(alphabet) for _ in range(rnd.choice([700, 1100, 3000])))
        words = ctext.split()[:2000]
        wi, wv = f2._block(f2._word_ids(words), 0.6)
        ci, cv = f2._block(f2._char_ids(ctext), 0.3)
        ti, tv = f2._text_blocks(words, ctext, 0.6, 0.3)
        assert ti.tobytes() == np.concatenate((wi, ci)).tobytes()
        assert tv.tobytes() == np.concatenate((wv, cv)).tobytes()


def test_term_frequency_table_as_the_log_of_each_array() -> None:
    """`_TF[c]` is what `1.0 + np.log` gives for c in arrays of any length and position."""
    import numpy as np

    rng = np.random.default_rng(7)
    for offset in range(9):
        for size in (1, 2, 3, 7, 8, 9, 16, 17, 100, 1000):
            counts = rng.integers(2, f2._TF_SIZE, size)
            v = np.concatenate((np.full(offset, 5.0), counts.astype(np.float64)))
            got = (1.0 + np.log(v))[offset:]
            assert got.tobytes() == f2._TF.take(counts).tobytes()
    assert f2._TF[1] == 1.0 and f2._TF[0] == 0.0


def test_letter_flags_of_every_bmp_character() -> None:
    """Long non-ASCII text counts its letters from a table: every BMP character's entry is what
    str.isalpha / str.isupper say, and texts of every length count as the str methods do."""
    import random

    flags = f2._bmp_flags()
    for cp in range(0x10000):
        ch = chr(cp)
        assert flags[cp] & (f2._ALPHA | f2._UPPER) == ch.isalpha() * f2._ALPHA + ch.isupper() * f2._UPPER, hex(cp)
    rnd = random.Random(3)
    pool = "aZ 1.éÉßΣσ東ǅǈ\u00a0\udce9\u2160\u24b6"
    for size in (255, 256, 257, 1000, 5000):
        for extra in ("", "\U0001d400", "\U0001f600"):
            s = "".join(rnd.choice(pool) for _ in range(size)) + extra
            assert f2._letters(s) == (sum(map(str.isalpha, s)), sum(map(str.isupper, s)))


def test_money_words_found_ignoring_case_as_folded() -> None:
    """A character matches a letter of _MONEY_RE's words (or one of its signs) ignoring case
    exactly when `_folded_lower` makes it that letter: the words' prefilter misses no match."""
    every = "".join(map(chr, range(0x110000)))
    for t in set("poundsdlar") | set("円£€¥￥$"):
        for m in re.finditer("(?i)" + re.escape(t), every):
            assert f2._folded_lower(m.group()) == t, (hex(ord(m.group())), t)


@given(st.lists(st.sampled_from(["1", "0", " ", "円", "万円", "Pounds", "USD", "u\u017fd", "DOLLAR",
                                 "\u00a3", "\u20ac", "\u00a5", "\uffe5", "a", "\u6771", "\u0130",
                                 "$", "_"]), max_size=12))
def test_money_token_as_the_expression(pieces: list[str]) -> None:
    from collections import Counter

    t = "".join(pieces)
    out: Counter[str] = Counter()
    f2._text_meta(t, out)
    assert ("m:money" in out) == (f2._MONEY_RE.search(t) is not None)


@given(st.one_of(st.text(st.characters(max_codepoint=0x7f), max_size=80), st.text(max_size=40)))
def test_text0_and_words_as_the_three_steps(t: str) -> None:
    text0 = f2._zero_digits(f2.normalise(t))
    assert f2._text0_words(t) == (text0, f2._words(text0))


@given(st.dictionaries(st.sampled_from(["m:a", "m:b", "m:has_x", "m:no_y", "h:s:w", "h:f:v", "m:c"]),
                       st.integers(min_value=1, max_value=4), max_size=7))
def test_meta_block_values_as_computed_one_by_one(counts: dict[str, int]) -> None:
    """`_meta_block`'s shortcut for blocks of single tokens: the values the general formula
    gives (sub-linear count, L2 norm of the block, block weight), bit for bit."""
    import math
    from collections import Counter

    cols, vals = f2._meta_block(Counter(counts), f2.EMAIL_BLOCK_WEIGHTS)
    want: list[float] = []
    for key in f2._META_KEYS:
        v = [1.0 + math.log(c) if c > 1 else float(c) for k, c in counts.items()
             if f2._meta_key(k) == key]
        if v:
            scale = f2.EMAIL_BLOCK_WEIGHTS[key] / math.sqrt(sum(x * x for x in v))
            want.extend(x * scale for x in v)
    assert vals.tolist() == want
    assert len(cols) == len(want)


@given(st.text(max_size=60))
def test_unicode_text0_words_as_the_expressions(t: str) -> None:
    """`_text0_words_unicode` (numpy tables of \\w and \\d over the BMP) gives the zeroed text
    and the words the regular expressions give."""
    text0 = f2._DIGITS_RE.sub("0", t)
    assert f2._text0_words_unicode(t) == (text0, f2._WORD_RE.findall(text0))


def test_word_flags_table() -> None:
    import re

    flags = f2._bmp_flags()
    for cp in (*range(0x300), 0x660, 0x966, 0x2160, 0x3042, 0xFF10, 0xD800, 0xFFFF):
        ch = chr(cp)
        assert bool(flags[cp] & f2._WORD) == bool(re.fullmatch(r"\w", ch)), hex(cp)
        assert bool(flags[cp] & f2._DECIMAL) == bool(re.fullmatch(r"\d", ch)), hex(cp)


@given(st.lists(st.sampled_from(["+", "1", "0", "9", "-", " ", "a", "\n", "\t", "_"]), max_size=30))
def test_ascii_phone_as_the_expression(pieces: list[str]) -> None:
    t = "".join(pieces)
    assert (f2._PHONE_ASCII_RE.search(t.encode("ascii")) is None) == (f2._PHONE_RE.search(t) is None)


_NAMES = ["From", "from", "FROM", "To", "Subject", "X-Mailer", "user-agent", "Received",
          "Content-Type", "Message-ID", "Reply-To", "X-Other"]


@given(st.lists(st.tuples(st.sampled_from(_NAMES), st.text(max_size=5)), max_size=12))
def test_first_values_as_the_dictionary_of_first_values(headers: list[tuple[str, str]]) -> None:
    """`_FirstValues.get` is the first field's value, as the dictionary built from the last
    field to the first gives it (present or not, any case of the name)."""
    fields = tuple(headers)
    lowered = tuple(n.lower() for n, _v in fields)
    whole = dict(zip(reversed(lowered), [v for _n, v in reversed(fields)], strict=True))
    first = f2._FirstValues(fields, lowered, set(lowered))
    for name in {n.lower() for n in _NAMES} | {"list-id"}:
        assert first.get(name) == whole.get(name, "")
        assert first.get(name, "text/plain") == whole.get(name, "text/plain")


@given(st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(["a", "Bob <b@x.jp>", "x y"])),
                max_size=12),
       st.text(st.sampled_from("ab 0A\u00e9!"), max_size=40))
def test_email_meta_tokens_in_order_as_counted(headers: list[tuple[str, str]], subject: str) -> None:
    """The presence tokens set at once and the words counted with `get` give the tokens, the
    counts and their order of `out[token] = 1` and `out[token] += 1` one by one."""
    from collections import Counter

    from gateway.message import Channel

    f = f2.Features(Channel.EMAIL, "text", headers=tuple(headers), subject=subject)
    out: Counter[str] = Counter()
    f2._email_meta(f, out)
    lowered = tuple(n.lower() for n, _v in headers)
    names = dict(zip(reversed(lowered), [v for _n, v in reversed(headers)], strict=True))
    want: Counter[str] = Counter()
    for h, has, no in f2._NOTED_TOKENS:
        want[has if h in names else no] = 1
    if not subject:  # (set after them, by the subject's own test)
        want["m:no_subject"] = 1
    got_presence = [k for k in out if k.startswith(("m:has_", "m:no_"))]
    assert got_presence == list(want)
    frm = names.get("from", "")
    display = frm.split("<", 1)[0] if "<" in frm else ""
    words: Counter[str] = Counter()
    for tok in f2._words(f2._zero_digits(f2.normalise(subject)))[:30]:
        words["h:s:" + tok] += 1
    for tok in f2._words(f2.normalise(display))[:10]:
        words["h:f:" + tok] += 1
    assert [(k, v) for k, v in out.items() if k.startswith("h:")] == list(words.items())
