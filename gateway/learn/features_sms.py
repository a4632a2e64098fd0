"""SMS feature set ``s3``: cheap pure-Python hashing and richer SMS structure features.

Why a new version next to ``f2`` (which stays unchanged for the email models and for SMS
models trained with it): f2 hashes in numpy, and for a 100-character SMS the fixed cost of
a dozen numpy calls on arrays of a few hundred elements dominates (about 130 us per SMS).
Here the n-grams are built by C-level string operations (``map(operator.add, ...)``),
counted by `collections.Counter` and mapped to columns through dictionaries that remember
every token's column (CRC-32 on a miss, so the mapping is deterministic and the caches only
save time). Only the final arithmetic (sub-linear term frequency, per-block L2 norm) runs in
numpy, once per message.

Blocks (each L2-normalised on its own and scaled by its weight):

- ``w``  word unigrams and bigrams of the NFKC-normalised, lower-cased text, digits as 0
- ``c``  character 2..4-grams of the same text (Japanese and English alike, no dictionary)
- ``m``  structure tokens: f2's (URLs, phone, money, capitals, script mix, length, sender
  type) and SMS ones: digit counts and the longest digit run, premium short codes
  (5-digit numbers), "txt/reply WORD to NNNNN", premium rates ("150p/min"), currency
  amounts, capitalised and all-capital word ratios, exclamation and question marks, finer
  length buckets, URL and phone presence.
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from bisect import bisect_left
from collections.abc import Sequence
from itertools import repeat
from operator import and_, itemgetter, methodcaller
from zlib import crc32

import numpy as np

from gateway.learn import features as _f2
from gateway.learn.features import Features

FEATURES_VERSION = "s3"
N_BITS = 20
N_FEATURES = 2**N_BITS
MAX_CHARS = 3_000  # an SMS longer than this (concatenated parts) is featurised on its head

_WORD_RE = re.compile(r"\w+", re.U)
_NONZERO_RE = re.compile(r"[^0]+")
_DIGIT_TABLE = {ord(d): "0" for d in "123456789"}
# the patterns below run on the normalised text with digits as 0 (lower case, NFKC)
_SHORTCODE_RE = re.compile(r"(?<![0£$])00000(?!0)")
_TXT_TO_RE = re.compile(r"\b(?:txt|text|send|reply|sms)\b\W{0,3}(?:\w+\W{1,3}){0,3}?to\W{0,3}0{4,6}\b")
_CALL_RE = re.compile(r"\b(?:call|ring|dial)\b\W{0,3}(?:\w+\W{1,3}){0,2}?\+?0[0 ]{5,}")
_RATE_RE = re.compile(r"0p\b|0p/|0 p\b|per ?min|/min\b|\bppm\b|/ ?(?:msg|txt|wk|week)\b")
_CURRENCY_RE = re.compile(r"[£$€¥￥] ?(0[0,]*)|(0[0,]*) ?(?:円|pounds?|usd|dollars?|gbp)\b")
_CURRENCY_CHAR_RE = re.compile("[£$€¥￥円]")
_TXT_WORDS = frozenset(("txt", "text", "send", "reply", "sms"))
_CALL_WORDS = frozenset(("call", "ring", "dial"))
_MONEY_WORDS = frozenset(("pound", "pounds", "usd", "dollar", "dollars", "gbp"))
_TIME_RE = re.compile(r"\b0{1,2}(?::00|\s?[ap]m\b)")
_EMAIL_ADDR_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_PHONE_RE = re.compile(r"\+?0[0\- ]{7,}0")
_TLDS = frozenset(("com", "net", "org", "jp", "info", "top", "xyz", "cn", "ru", "co", "ly", "me",
                   "io", "biz", "uk", "tv", "mobi"))
_BARE_DOMAIN_RE = re.compile(r"\b[a-z0-9-]{2,63}\.(?:" + "|".join(sorted(_TLDS)) + r")\b")
_CJK_RE = _f2._CJK_RE

# m = 1.6: chosen by 10-fold grouped CV over five fold seeds (0.5 / 0.8 / 1.2 / 1.6 / 2.2 gave
# mean spam F1 0.9648 / 0.9684 / 0.9709 / 0.9715 / 0.9707 at 0.1% ham; docs/models.md)
BLOCK_WEIGHTS = {"w": 1.0, "c": 1.0, "m": 1.6}
_BLOCK_SEED = {"w": 0x3C6EF372, "b": 0x5BE0CD19, "c": 0x1F83D9AB, "m": 0x9B05688C}
_MASK = N_FEATURES - 1
_CACHE_MAX = 400_000


class _Columns(dict[str, int]):
    """token -> column, computed on first sight (CRC-32 with the block's seed) and kept."""

    __slots__ = ("max", "seed")
    seed: int
    max: int

    def __init__(self, seed: int, max_entries: int = _CACHE_MAX) -> None:
        super().__init__()
        self.seed = seed
        self.max = max_entries

    def __missing__(self, tok: str) -> int:
        col: int = zlib.crc32(tok.encode("utf-8", "surrogatepass"), self.seed) & _MASK
        if len(self) < self.max:
            self[tok] = col
        return col


# the word block remembers at most 100,000 words (about 10 MB); the others what they meet
_COLS = {k: _Columns(v, 100_000 if k == "w" else _CACHE_MAX) for k, v in _BLOCK_SEED.items()}
_ENCODE = methodcaller("encode", "utf-8", "surrogatepass")


class _BigramHeads(dict[str, int]):
    """word -> the CRC-32 (bigram seed) of "word " (UTF-8), computed on first sight and kept:
    a bigram's CRC is `crc32(second word, head of the first)`, the CRC of "first second"
    (zlib's crc32 continues from the value it is given), without building that string."""

    __slots__ = ()

    def __missing__(self, word: str) -> int:
        head = crc32(word.encode("utf-8", "surrogatepass") + b" ", _BLOCK_SEED["b"])
        if len(self) < 100_000:  # as the word block's columns
            self[word] = head
        return head


_BIGRAM_HEAD = _BigramHeads().__getitem__
_META_COL = _COLS["m"].__getitem__
_ASCII_DIGITS0 = bytes.maketrans(b"123456789", b"000000000")
_FIRST = itemgetter(0)
_SENDER_TOKENS: dict[str, str] = {}


def _tokens(name: str, edges: tuple[float, ...], extra: int = 0) -> tuple[str, ...]:
    """The tokens name=0 .. name=len(edges)+extra of a bucketed quantity."""
    return tuple(f"{name}={i}" for i in range(len(edges) + 1 + extra))


# bucket edges of the structure tokens: a value v becomes name=bisect_left(edges, v), the
# index of the first edge >= v
_LEN_EDGES = (10, 20, 35, 50, 75, 100, 130, 150, 160, 200, 320, 1000)
_NURL_EDGES = (0, 1, 2, 4)
_NWORDS_EDGES = (1, 3, 6, 10, 15, 22, 30)
_UPPER_EDGES = (0.0, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 0.9)
_CJK_EDGES = (0.0, 0.3, 0.7)
_CAPSW_EDGES = (0, 1, 2, 4, 8)
_TITLEW_EDGES = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75)
_DIGITS_EDGES = (1, 2, 4, 6, 10, 15, 25)  # digits=0: none, digits=1..: bucket + 1
_DIGRUN_EDGES = (1, 2, 3, 4, 5, 6, 8, 10, 11)
_MONEY_EDGES = (1, 2, 3, 4)
_EXCL_EDGES = (0, 1, 2, 4)
_QUEST_EDGES = (0, 1, 2)
_LEN = _tokens("len", _LEN_EDGES)
_NURL = _tokens("nurl", _NURL_EDGES)
_NWORDS = _tokens("nwords", _NWORDS_EDGES)
_UPPER_T = _tokens("upper", _UPPER_EDGES)
_CJK_T = _tokens("cjk", _CJK_EDGES)
_CAPSW = _tokens("capsw", _CAPSW_EDGES)
_TITLEW = _tokens("titlew", _TITLEW_EDGES)
_DIGITS = _tokens("digits", _DIGITS_EDGES, extra=1)
_DIGRUN = _tokens("digrun", _DIGRUN_EDGES)
_MONEY = _tokens("money", _MONEY_EDGES)
_EXCL = _tokens("excl", _EXCL_EDGES)
_QUEST = _tokens("quest", _QUEST_EDGES)


def _digits0(t: str) -> str:
    if t.isascii():
        return t.translate(_DIGIT_TABLE)
    return _f2._DIGITS_RE.sub("0", t)


_PLAIN_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(?=[/?#]|\Z)")


def _url_host(url: str) -> str:
    """`_f2._host(url)` (urlsplit's hostname, lower case) without urlsplit when the URL is
    http(s):// or schemeless followed by a host of ASCII letters, digits, dots and hyphens
    ending the URL or followed by /, ? or #: urlsplit's netloc is then exactly that host (no
    user, port, brackets or characters it strips), and its hostname the host in lower case."""
    head = url[:8].lower()
    if head.startswith("http://"):
        start = 7
    elif head.startswith("https://"):
        start = 8
    elif "://" in url:
        return _f2._host(url)
    else:  # `_host` reads it as http://url: no scheme matches without "://"
        start = 0
    m = _PLAIN_HOST_RE.match(url, start)
    if m is None:
        return _f2._host(url)
    return m.group().lower()


def meta_tokens(f: Features, text: str, t0: str, words: list[str]) -> list[str]:
    """Structure tokens of one SMS: ``text`` the original, ``t0`` normalised with digits as
    0, ``words`` the words of t0. Cheap tests guard every regular expression."""
    out: list[str] = []
    n = len(text)
    out.append(_LEN[bisect_left(_LEN_EDGES, n)])
    if not text:
        out.append("empty")
        return out
    urls = f.urls  # Features.from_context finds them (the same code as f2)
    out.append(_NURL[bisect_left(_NURL_EDGES, len(urls))])
    for url in urls[:10]:
        out.append("url")
        host = _url_host(url)
        if not host:
            out.append("url_nohost")
            continue
        if _f2._IP_HOST_RE.match(host):
            out.append("url_ip")
        if host in _f2.SHORTENERS:
            out.append("url_short")
        labels = host.split(".")
        out.append("tld=" + labels[-1])
        if len(labels) >= 2:
            out.append("dom=" + ".".join(labels[-2:]))
        if url[:5].lower() == "https":
            out.append("url_https")
    wset = set(words)
    if "www" in wset:
        out.append("www")
    if not _TLDS.isdisjoint(wset) and _BARE_DOMAIN_RE.search(t0):
        out.append("bare_domain")
    if "@" in text and _EMAIL_ADDR_RE.search(t0):
        out.append("email_addr")
    # letters and capitals
    split = text.split()
    n_words = len(split)
    out.append(_NWORDS[bisect_left(_NWORDS_EDGES, n_words)])
    n_alpha, n_upper = _f2._letters(text)
    cjk = 0.0 if not n_alpha or text.isascii() else len(_CJK_RE.findall(text)) / n_alpha
    if n_alpha:
        out.append(_UPPER_T[bisect_left(_UPPER_EDGES, n_upper / n_alpha)])
        out.append(_CJK_T[bisect_left(_CJK_EDGES, cjk)])
    else:
        out.append("noalpha")
    if n_words:
        caps = sum(map(str.isupper, split))  # words whose letters are all capitals
        title = sum(map(str.isupper, map(_FIRST, split)))
        out.append(_CAPSW[bisect_left(_CAPSW_EDGES, caps)])
        out.append(_TITLEW[bisect_left(_TITLEW_EDGES, title / n_words)])
        if text[:1].islower():
            out.append("starts_lower")
    # digits, numbers, short codes, phone numbers, money
    n_digits = t0.count("0")
    if n_digits:
        longest = max(map(len, _NONZERO_RE.split(t0)))
        out.append(_DIGITS[1 + bisect_left(_DIGITS_EDGES, n_digits)])
        out.append(_DIGRUN[bisect_left(_DIGRUN_EDGES, longest)])
        # each regular expression runs only when a substring it needs is there
        if longest >= 5 and _SHORTCODE_RE.search(t0):
            out.append("shortcode")
        if (longest >= 4 and "to" in t0 and not _TXT_WORDS.isdisjoint(wset)
                and _TXT_TO_RE.search(t0)):
            out.append("txt_to_code")
        if longest >= 6 and not _CALL_WORDS.isdisjoint(wset) and _CALL_RE.search(t0):
            out.append("call_number")
        if n_digits >= 8 and _PHONE_RE.search(t0):
            out.append("phone")
        if ("0p" in t0 or "0 p" in t0 or "/" in t0 or "min" in t0 or "ppm" in t0) \
                and _RATE_RE.search(t0):
            out.append("rate")
        if (":00" in t0 or "0am" in t0 or "0pm" in t0 or "0 am" in t0 or "0 pm" in t0) \
                and _TIME_RE.search(t0):
            out.append("clock_time")
    else:
        out.append("digits=0")
    if _CURRENCY_CHAR_RE.search(t0) or not _MONEY_WORDS.isdisjoint(wset):
        m = _CURRENCY_RE.search(t0)
        if m:
            amount = (m.group(1) or m.group(2) or "").replace(",", "")
            out.append(_MONEY[bisect_left(_MONEY_EDGES, len(amount))])
        else:
            out.append("currency_sign")
    excl = text.count("!") + text.count("！")  # noqa: RUF001
    out.append(_EXCL[bisect_left(_EXCL_EDGES, excl)])
    q = text.count("?") + text.count("？")  # noqa: RUF001
    out.append(_QUEST[bisect_left(_QUEST_EDGES, q)])
    if "..." in text or "…" in text:
        out.append("ellipsis")
    tok = _SENDER_TOKENS.get(f.sender)
    if tok is None:
        tok = "sender=" + _f2._sender_type(f.sender)
        if len(_SENDER_TOKENS) < 10_000:
            _SENDER_TOKENS[f.sender] = tok
    out.append(tok)
    return out


_P = np.uint64(1_000_003)
_KNUTH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits
_SHIFT = np.uint64(64 - N_BITS)
_CHAR_SEED = np.uint64(0x2545F4914F6CDD1D)


def _normalised_text(raw: str) -> str:
    """The text the word and character features read: NFKC, lower case, single spaces,
    every digit as 0."""
    if raw.isascii():
        return " ".join(raw.lower().split()).encode("ascii").translate(_ASCII_DIGITS0).decode("ascii")
    return _digits0(" ".join(unicodedata.normalize("NFKC", raw).lower().split()))


# ASCII: every byte that is not a word character ([A-Za-z0-9_], what \w matches of ASCII)
# becomes a space, so the words are what str.split() leaves (no word character is a space)
_ASCII_WORDS = bytes(c if chr(c).isalnum() or c == 95 else 32 for c in range(128)) + bytes(
    range(128, 256))


def _words(t0: str) -> list[str]:
    """`_WORD_RE.findall(t0)`: ASCII text by one bytes.translate and split (~6x faster)."""
    if t0.isascii():
        return t0.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    return _WORD_RE.findall(t0)


_WORD_COL = _COLS["w"].__getitem__  # a word's column, remembered


def row(f: Features) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values) of one message; indices repeat (they are summed).

    Each block's value per occurrence is weight / sqrt(occurrences in the block): the L2 norm
    of the block when no token repeats (almost always in an SMS), with no counting at all.

    The columns are laid out in one array as `rows_concat` lays out one message (word and
    structure columns, then the character 2-, 3- and 4-grams hashed in place): a dozen numpy
    calls per message, whose fixed cost dominates one SMS."""
    raw = f.text[:MAX_CHARS]
    t0 = _normalised_text(raw)
    words = _words(t0)
    # word columns remembered (_COLS["w"]); bigrams by CRC-32 in C-level maps, masked as
    # _Columns would give "a b": the CRC of "a " remembered, continued over "b"
    cols = list(map(_WORD_COL, words))
    if len(words) > 1:
        cols += map(and_, map(crc32, map(_ENCODE, words[1:]), map(_BIGRAM_HEAD, words)),
                    repeat(_MASK))
    n_w = len(cols)
    cols += map(_META_COL, meta_tokens(f, raw, t0, words))
    n_py = len(cols)
    n = len(t0)  # code points
    n_c = (3 * n - 6 if n >= 4 else 2 * n - 3) if n >= 2 else 0
    out = np.empty(n_py + n_c, dtype=np.uint64)
    out[:n_py] = cols
    if n >= 2:
        # the code points as uint64 (the sums below are taken in uint64 either way; ufuncs of
        # one dtype skip the casting loops of uint32 + uint64)
        cp = np.frombuffer(t0.encode("utf-32-le", "surrogatepass"), dtype=np.uint32
                           ).astype(np.uint64)
        h2 = out[n_py : n_py + n - 1]
        np.add(cp[:-1], _CHAR_SEED, out=h2)
        h2 *= _P
        h2 += cp[1:]
        if n >= 3:
            h3 = out[n_py + n - 1 : n_py + 2 * n - 3]
            np.multiply(h2[:-1], _P, out=h3)
            h3 += cp[2:]
            if n >= 4:
                h4 = out[n_py + 2 * n - 3 :]
                np.multiply(h3[:-1], _P, out=h4)
                h4 += cp[3:]
        c = out[n_py:]
        c *= _KNUTH
        c >>= _SHIFT
    n_m = n_py - n_w
    val = np.array((BLOCK_WEIGHTS["w"] / math.sqrt(n_w or 1),
                    BLOCK_WEIGHTS["m"] / math.sqrt(n_m or 1),
                    BLOCK_WEIGHTS["c"] / math.sqrt(n_c or 1))).repeat((n_w, n_m, n_c))
    return out.view(np.int64), val




def rows_concat(fs: Sequence[Features]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The rows of many messages laid end to end: (indices, values, size of each row).

    The same numbers, in the same order, as `np.concatenate` of `row(f) for f in fs` (tested
    on the corpus), with the numpy work done once for the batch instead of once per message:
    the character n-grams are hashed over the batch's code points in one pass (the n-grams
    that would span two messages are never gathered), and the blocks are put in place by one
    gather. What stays per message is the Python part: words, bigrams and structure tokens."""
    if not fs:
        return np.zeros(0, dtype=np.int64), np.zeros(0), []
    wts = BLOCK_WEIGHTS["w"], BLOCK_WEIGHTS["m"], BLOCK_WEIGHTS["c"]
    py_cols: list[int] = []
    cps: list[bytes] = []
    sizes: list[int] = []
    vals: list[float] = []
    vlens: list[int] = []
    # gather segments: (source start, length) in a source laid out as
    # [python columns of all messages | h2 of the batch | h3 | h4]
    seg_src: list[int] = []
    seg_len: list[int] = []
    cp_len: list[int] = []
    for f in fs:
        raw = f.text[:MAX_CHARS]
        t0 = _normalised_text(raw)
        words = _words(t0)
        start = len(py_cols)
        py_cols += map(_WORD_COL, words)
        if len(words) > 1:  # as in `row`
            py_cols += map(and_, map(crc32, map(_ENCODE, words[1:]), map(_BIGRAM_HEAD, words)),
                           repeat(_MASK))
        n_w = len(py_cols) - start
        py_cols += map(_META_COL, meta_tokens(f, raw, t0, words))
        n_m = len(py_cols) - start - n_w
        n = len(t0)  # code points: what the UTF-32 below holds
        n_c = (3 * n - 6 if n >= 4 else 2 * n - 3) if n >= 2 else 0
        cps.append(t0.encode("utf-32-le", "surrogatepass"))
        cp_len.append(n)
        seg_src.append(start)
        seg_len.append(n_w + n_m)
        sizes.append(n_w + n_m + n_c)
        vals += (wts[0] / math.sqrt(n_w or 1), wts[1] / math.sqrt(n_m or 1),
                 wts[2] / math.sqrt(n_c or 1))
        vlens += (n_w, n_m, n_c)
    total_cp = sum(cp_len)
    n_py = len(py_cols)
    # character n-grams over the whole batch, as `row` hashes them for one message
    cp_all = np.frombuffer(b"".join(cps), dtype=np.uint32).astype(np.uint64)  # as in `row`
    n_char = max(total_cp - 1, 0) + max(total_cp - 2, 0) + max(total_cp - 3, 0)
    src = np.empty(n_py + n_char, dtype=np.uint64)
    src[:n_py] = py_cols
    o2 = n_py
    o3 = o2 + max(total_cp - 1, 0)
    o4 = o3 + max(total_cp - 2, 0)
    if total_cp >= 2:
        h2 = src[o2:o3]
        np.add(cp_all[:-1], _CHAR_SEED, out=h2)
        h2 *= _P
        h2 += cp_all[1:]
        if total_cp >= 3:
            h3 = src[o3:o4]
            np.multiply(h2[:-1], _P, out=h3)
            h3 += cp_all[2:]
            if total_cp >= 4:
                h4 = src[o4:]
                np.multiply(h3[:-1], _P, out=h4)
                h4 += cp_all[3:]
        c = src[n_py:]
        c *= _KNUTH
        c >>= _SHIFT
    # the segments in row order: python columns, then h2, h3, h4 of each message; each is
    # gathered from src by its shift (source start - output start), one per element
    shifts: list[int] = []
    lens: list[int] = []
    pos = 0
    out = 0
    for k, n in enumerate(cp_len):
        seg = seg_len[k]
        shifts.append(seg_src[k] - out)
        lens.append(seg)
        out += seg
        if n >= 2:
            m2, m3, m4 = n - 1, n - 2 if n >= 3 else 0, n - 3 if n >= 4 else 0
            shifts += (o2 + pos - out, o3 + pos - out - m2, o4 + pos - out - m2 - m3)
            lens += (m2, m3, m4)
            out += m2 + m3 + m4
        pos += n
    gather = np.arange(out, dtype=np.int64)
    gather += np.array(shifts, dtype=np.int64).repeat(lens)  # the method: np.repeat wraps
    idx = src.view(np.int64)[gather]  # columns < 2**N_BITS: the same numbers as int64
    val = np.array(vals).repeat(vlens)
    return idx, val, sizes
