"""Versioned feature extraction, shared by training and scanning.

One function turns a scan context (SMS or email) into a sparse hashed vector. Nothing here is
persisted: a model records `FEATURES_VERSION` and refuses to load against other feature code.
The persisted model is only scikit-learn built-ins that consume these vectors.

Feature families (each token is namespaced by a prefix, hashed into one space of
`N_FEATURES` columns with scikit-learn's `FeatureHasher`; every family is L2-normalised on its
own and scaled by its block weight, so long emails do not drown the structure tokens):

- ``w:``  word unigrams and bigrams of the NFKC-normalised, lower-cased text (digits as 0)
- ``c:``  character 2..4-grams (works for Japanese and English without a dictionary)
- ``m:``  structure: URL count and kind (IP host, shortener, TLD, https), phone numbers,
  money, sender type (SMS), header anomalies and mailer/MIME shape (email)
- ``h:``  email only: words of the subject and the From display name

Structure tokens saying that a header field is present or absent (``m:has_*``, ``m:no_*``)
form their own block (``n``), weighted low for email: they are the most corpus-specific signal.
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import scipy.sparse as sp

from gateway import limits
from gateway.message import Channel, lower_names

if TYPE_CHECKING:
    from gateway.message import ScanContext

FEATURES_VERSION = "f2"
N_FEATURES = 2**19
assert N_FEATURES <= 2**32  # columns are sorted as uint32 (_counts)
BLOCK_WEIGHTS = {"w": 1.0, "c": 1.0, "m": 0.8, "n": 0.3, "h": 0.6}
# email: structure counts more, the presence/absence of individual header fields less (it is
# the most corpus-specific signal: mailing-list ham has List-Id, personal ham does not)
EMAIL_BLOCK_WEIGHTS = {**BLOCK_WEIGHTS, "m": 1.0}
MAX_WORD_CHARS = 20_000  # email text beyond this is not featurised (head of the message)
MAX_CHAR_CHARS = 3_000  # character n-grams on the first 3,000 characters only

_WORD_RE = re.compile(r"\w+", re.U)
_DIGITS_RE = re.compile(r"\d")
_URL_RE = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'　）)」】]+")  # noqa: RUF001
_BARE_DOMAIN_RE = re.compile(r"(?i)\b[a-z0-9-]{2,63}\.(?:com|net|org|jp|info|top|xyz|cn|ru|co|ly|me|io|biz)\b")
_CJK_RE = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_PHONE_RE = re.compile(r"(?:\+?\d[\d\- ]{7,}\d)")
# found exactly where _PHONE_RE is found (its optional leading "+" never decides whether there
# is a match), about twice as fast: the search can skip to the digits
_PHONE_ANY_RE = re.compile(r"\d[\d\- ]{7,}\d")
# the same over ASCII text as bytes, where the digits are 0-9 either way (a bytes expression
# tests its classes faster than a str one)
_PHONE_ASCII_RE = re.compile(rb"\d[\d\- ]{7,}\d")
_MONEY_RE = re.compile(r"[£$€¥￥]|\b\d+ ?(?:円|万円|pounds?|usd|dollars?)\b", re.I)
# what a text needs for a match of _MONEY_RE (in lower case, as `_folded_lower` gives it)
_MONEY_WORDS = ("pound", "usd", "dollar", "円", "£", "€", "¥", "￥")
# what _BARE_DOMAIN_RE's endings need in lower-cased ASCII text
_DOT_TLDS = (".com", ".net", ".org", ".jp", ".info", ".top", ".xyz", ".cn", ".ru", ".co", ".ly",
             ".me", ".io", ".biz")
_SCHEME_RE = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://")
_ID_PARAM_RE = re.compile(r"[?&](?:id|uid|token|session|login|verify|account)=")
_CHARSET_RE = re.compile(r'charset="?([\w-]+)')
_HIDDEN_FONT_RE = re.compile(r"font[^>]{0,40}(?:size=[\"']?[01]\b|color=[\"']?#?fff)")
_REPLY_SUBJECT_RE = re.compile(r"(?i)\s*(re|fwd?|aw)\s*:")
_SHOUTY_RE = re.compile(r"[!$%]{2,}|\d{2,}%")
_IP_HOST_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
SHORTENERS = frozenset(
    ["bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly", "t.ly", "x.gd", "shorturl.at", "rb.gy", "tiny.cc", "bit.do", "qr.paypal.com", "lnkd.in", "s.id"]
)
# header names worth noting by presence (anomalies / mailer shape), never corpus-specific tags
_NOTED_HEADERS = (
    "date", "message-id", "from", "to", "cc", "reply-to", "subject", "mime-version",
    "list-id", "list-unsubscribe", "in-reply-to", "references", "x-mailer", "user-agent",
    "content-type", "precedence", "x-priority", "errors-to", "organization", "sender",
)


def normalise(text: str) -> str:
    """NFKC (full-width to half-width, compatibility forms), lower case, collapsed space."""
    # split/join: the runs of str.isspace characters, which are what \s matches, in C
    return " ".join(unicodedata.normalize("NFKC", text).split()).lower()


def _bucket(n: float, edges: Sequence[float]) -> int:
    for i, e in enumerate(edges):
        if n <= e:
            return i
    return len(edges)


@dataclass(slots=True)
class Features:
    """The input of featurisation, built the same way for training and scanning."""

    channel: Channel
    text: str
    sender: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    html: str = ""
    urls: tuple[str, ...] = ()
    subject: str = ""

    @classmethod
    def from_context(cls, ctx: ScanContext) -> Features:
        m = ctx.message
        if m.channel is Channel.SMS:
            text = m.text
            return cls(Channel.SMS, text, sender=m.sender, urls=tuple(_find_urls(text)))
        _plain, html = ctx.text_parts
        text = ctx.text
        try:
            subject = str(ctx.mime.get("Subject", "") or "")
        except Exception:
            subject = m.header("Subject")
        return cls(Channel.EMAIL, text, sender=m.sender, headers=m.headers, html=html,
                   urls=ctx.urls, subject=subject)


def _find_urls(text: str) -> list[str]:
    return [u.rstrip(".,;:!?") for u in _URL_RE.findall(text)]


def _find_urls_any(text: str) -> list[str]:
    """`_find_urls`, with the text scanned only when it holds "http" or "www." in some case
    (what every match begins with; no other character matches h, t, p, w or "." ignoring
    case, so the lower-cased text shows them all)."""
    low = text.lower()
    if "http" not in low and "www." not in low:
        return []
    return _find_urls(text)


def _host(url: str) -> str:
    """`urlsplit(url).hostname` in lower case ("" when none, or when urlsplit refuses it), with
    "http://" put before a URL without a scheme. ASCII without tab, CR, LF or brackets (what
    urlsplit strips, or parses as an IPv6 literal or refuses) is cut up here directly: after
    "scheme://", the network location runs to the first "/", "?" or "#"; the host is what
    follows its last "@", up to the first ":"."""
    m = _SCHEME_RE.match(url)
    if m is None:
        url = "http://" + url
        start = 7
    else:
        start = m.end()
    if url.isascii() and not _URLSPLIT_SPECIAL_RE.search(url):
        netloc = _NETLOC_RE.match(url, start).group()  # type: ignore[union-attr]
        return netloc.rpartition("@")[2].partition(":")[0].lower()
    return _host_urlsplit(url)


_URLSPLIT_SPECIAL_RE = re.compile(r"[\t\r\n\[\]]")
_NETLOC_RE = re.compile(r"[^/?#]*")


def _host_urlsplit(url: str) -> str:
    """`_host` of a URL with a scheme, by urlsplit."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _url_tokens(urls: Iterable[str], out: Counter[str]) -> None:
    n = 0
    for url in urls:
        n += 1
        if n > 50:
            break
        host = _host(url)
        low = url.lower()
        out["m:url"] += 1
        out["m:url_https" if low.startswith("https") else "m:url_nohttps"] = 1
        if not host:
            out["m:url_nohost"] = 1
            continue
        if _IP_HOST_RE.match(host):
            out["m:url_ip"] = 1
        if host in SHORTENERS:
            out["m:url_short"] = 1
        labels = host.split(".")
        out["m:tld=" + labels[-1]] = 1
        if len(labels) >= 2:
            out["m:dom=" + ".".join(labels[-2:])] = 1
        if len(labels) > 4:
            out["m:url_deep_host"] = 1
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            out["m:url_userinfo"] = 1
        if not host.isascii() or "xn--" in host:
            out["m:url_idn"] = 1
        if "~" in url or "*" in url:
            out["m:url_masked"] = 1
        if _ID_PARAM_RE.search(low):
            out["m:url_idparam"] = 1
    out[f"m:nurl={_bucket(n, (0, 1, 2, 4, 9, 20))}"] = 1


_ASCII_LETTERS = (string.ascii_letters).encode("ascii")
_ASCII_UPPER = (string.ascii_uppercase).encode("ascii")


def _letters(sample: str) -> tuple[int, int]:
    """(characters that are letters, of them upper case), as str.isalpha / str.isupper count
    them; ASCII text (where those are exactly A-Z and a-z) by deleting bytes, in C."""
    if sample.isascii():
        raw = sample.encode("ascii")
        return (len(raw) - len(raw.translate(None, _ASCII_LETTERS)),
                len(raw) - len(raw.translate(None, _ASCII_UPPER)))
    if len(sample) >= 256:
        # other text of the Basic Multilingual Plane: each code point's flags looked up in a
        # table of what the str methods say for every BMP character, in numpy
        cp = _bmp_code_points(sample)
        if cp is not None:
            flags = _bmp_flags().take(cp)
            return (int(np.count_nonzero(flags & _ALPHA)), int(np.count_nonzero(flags & _UPPER)))
    return sum(map(str.isalpha, sample)), sum(map(str.isupper, sample))


# `_bmp_flags` bits: str.isalpha, str.isupper, a word character (\w: str.isalnum or "_"), a
# decimal digit (\d: str.isdecimal)
_ALPHA, _UPPER, _WORD, _DECIMAL = 1, 2, 4, 8


@functools.cache
def _bmp_flags() -> np.ndarray:
    """For every code point of the BMP, its `_ALPHA`, `_UPPER`, `_WORD` and `_DECIMAL` bits
    (built once, on the first long non-ASCII text)."""
    def bits(ch: str) -> int:
        return (_ALPHA * ch.isalpha() | _UPPER * ch.isupper()
                | _WORD * (ch.isalnum() or ch == "_") | _DECIMAL * ch.isdecimal())

    return np.fromiter((bits(chr(i)) for i in range(0x10000)), dtype=np.uint8, count=0x10000)


def _bmp_code_points(text: str) -> np.ndarray | None:
    """The code points of a non-empty `text`, when all of them are in the BMP (else None)."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return cp if cp.size and int(cp.max()) <= 0xFFFF else None


def _folded_lower(text: str) -> str:
    """`text.lower()` with the long s as "s": the characters that match a letter of
    _MONEY_RE's words ignoring case are then exactly the letter itself (test)."""
    low = text.lower()
    return low.replace("\u017f", "s") if "\u017f" in low else low


def _text_meta(text: str, out: Counter[str]) -> None:
    n = len(text)
    out[f"m:len={_bucket(n, (20, 50, 100, 160, 320, 1000, 3000, 10000))}"] = 1
    if not text:
        out["m:empty"] = 1
        return
    sample = text[:5000]
    ascii_only = sample.isascii()
    low = sample.lower() if ascii_only else ""
    n_alpha, n_upper = _letters(sample)
    if n_alpha:
        upper = n_upper / n_alpha
        out[f"m:upper={_bucket(upper, (0.05, 0.15, 0.3, 0.6))}"] = 1
        cjk = len(_CJK_RE.findall(sample)) / n_alpha if not ascii_only else 0.0
        out[f"m:cjk={_bucket(cjk, (0.0, 0.3, 0.7))}"] = 1
    if (_PHONE_ASCII_RE.search(sample.encode("ascii")) if ascii_only
            else _PHONE_ANY_RE.search(sample)):
        out["m:phone"] = 1
    # the regexes below run only when a word they need is there (with re.I, what lower()
    # finds in ASCII text, and `_folded_lower` in any text); a "$" is a match by itself
    if "$" in sample:
        out["m:money"] = 1
    else:
        words = low if ascii_only else _folded_lower(sample)
        if any(w in words for w in _MONEY_WORDS) and _MONEY_RE.search(sample):
            out["m:money"] = 1
    excl = sample.count("!") + sample.count("！")  # noqa: RUF001
    out[f"m:excl={_bucket(excl, (0, 1, 3))}"] = 1
    if _has_bare_domain(sample, low) if ascii_only else _BARE_DOMAIN_RE.search(sample):
        out["m:bare_domain"] = 1


def _has_bare_domain(sample: str, low: str) -> bool:
    """Whether `_BARE_DOMAIN_RE` matches ASCII `sample` (`low`: its lower case): tried only
    around each ".tld" the text holds, in a window as wide as a match can be (a label of up to
    63 characters before the dot; \b after the TLD sees the next character). A match that
    reaches the window's end may owe its \b to the window: the whole text decides then."""
    n = len(sample)
    for dot in _DOT_TLD_RE.finditer(low):  # (each place once, whichever TLD it begins)
        i = dot.start()
        end = i + 7  # the longest TLD (".info") and one character after it
        m = _BARE_DOMAIN_RE.search(sample, max(0, i - 64), end)
        if m is not None:
            # (a match that does not reach the window's end is one in the whole text: then
            # the whole text's search is True too, whichever place is tried first)
            if m.end() < end or end >= n:
                return True
            return _BARE_DOMAIN_RE.search(sample) is not None
    return False


# the dots that begin one of _DOT_TLDS (one scan for all of them)
_DOT_TLD_RE = re.compile(r"\.(?=" + "|".join(re.escape(t[1:]) for t in _DOT_TLDS) + ")")


def _sender_type(sender: str) -> str:
    s = sender.strip()
    if not s:
        return "none"
    digits = s.lstrip("+")
    if digits.isdigit():
        if len(digits) <= 6:
            return "short"
        return "intl" if s.startswith("+") or len(digits) > 11 else "long"
    return "alpha"


def _domain_of(addr: str) -> str:
    if "<" in addr and ">" in addr:
        addr = addr[addr.rfind("<") + 1 : addr.rfind(">")]
    return addr.rpartition("@")[2].strip().strip(">").lower()


_NOTED_TOKENS = tuple((h, "m:has_" + h, "m:no_" + h) for h in _NOTED_HEADERS)


class _FirstValues:
    """The value of the first field of a (lower-case) name, looked up when asked: the few
    names `_email_meta` reads, without a dictionary of every field's first value."""

    __slots__ = ("headers", "lowered", "present")

    def __init__(self, headers: tuple[tuple[str, str], ...], lowered: tuple[str, ...],
                 present: set[str]) -> None:
        self.headers, self.lowered, self.present = headers, lowered, present

    def get(self, name: str, default: str = "") -> str:
        if name not in self.present:
            return default
        return self.headers[self.lowered.index(name)][1]


def _email_meta(f: Features, out: Counter[str]) -> None:
    # the header names in lower case; the first field's value of a name read when asked
    lowered = lower_names(f.headers)
    present = set(lowered)
    received = lowered.count("received")
    # (one presence token per noted name, set in this order, as `out[token] = 1` each)
    dict.update(out, dict.fromkeys([has if h in present else no for h, has, no in _NOTED_TOKENS], 1))
    names = _FirstValues(f.headers, lowered, present)
    out[f"m:recv={_bucket(received, (0, 1, 2, 4, 7))}"] = 1
    frm = names.get("from", "")
    from_dom = _domain_of(frm)
    if from_dom:
        out["m:from_tld=" + from_dom.rsplit(".", 1)[-1]] = 1
    display = frm.split("<", 1)[0] if "<" in frm else ""
    if "@" in display:
        out["m:from_display_addr"] = 1
    if not display.strip():
        out["m:from_no_display"] = 1
    rt = names.get("reply-to", "")
    if rt and _domain_of(rt) != from_dom:
        out["m:replyto_other_domain"] = 1
    mid = names.get("message-id", "")
    if mid:
        mid_dom = _domain_of(mid)
        if from_dom and mid_dom and not (mid_dom.endswith(from_dom) or from_dom.endswith(mid_dom)):
            out["m:mid_other_domain"] = 1
    if f.sender and from_dom and _domain_of(f.sender) != from_dom:
        out["m:envfrom_other_domain"] = 1
    mailer = (names.get("x-mailer") or names.get("user-agent") or "").lower()
    if mailer:
        word = _WORD_RE.findall(mailer)
        if word:
            out["m:mailer=" + word[0]] = 1
    ctype = names.get("content-type", "text/plain").lower()
    out["m:ctype=" + ctype.split(";", 1)[0].strip()[:40]] = 1
    m = _CHARSET_RE.search(ctype)
    if m:
        out["m:charset=" + m.group(1)] = 1
    if f.html and not f.text.strip():
        out["m:html_only"] = 1
    if f.html:
        out["m:html"] = 1
        low = f.html[:50_000].lower()
        if "<img" in low:
            out["m:html_img"] = 1
        if "<form" in low:
            out["m:html_form"] = 1
        if "<script" in low:
            out["m:html_script"] = 1
        if _HIDDEN_FONT_RE.search(low):
            out["m:html_hidden_text"] = 1
    subj = f.subject
    if not subj:
        out["m:no_subject"] = 1
    else:
        if subj.isascii():  # (letters and upper-case characters: A-Z, a-z and A-Z only)
            n_letters, n_caps = _letters(subj)
        else:
            letters = [ch for ch in subj if ch.isalpha()]
            n_letters, n_caps = len(letters), sum(ch.isupper() for ch in letters)
        if n_letters and n_caps / n_letters > 0.6:
            out["m:subject_caps"] = 1
        if _REPLY_SUBJECT_RE.match(subj):
            out["m:subject_reply"] = 1
        if "=?" in subj:
            out["m:subject_encoded"] = 1
        if _SHOUTY_RE.search(subj):
            out["m:subject_shouty"] = 1
    _header_words(subj, display, out)


def _header_words(subj: str, display: str, out: Counter[str]) -> None:
    """The ``h:`` tokens: the first 30 words of the subject (digits as 0) and the first 10 of
    the From display name, each counted (f2 and e3)."""
    # (digits to 0 before splitting: a digit is a word character either way, the same words)
    get = out.get  # (`out[k] += 1` without Counter.__missing__, a Python call per new key)
    for tok in _words(_zero_digits(normalise(subj)))[:30]:
        k = "h:s:" + tok
        out[k] = get(k, 0) + 1
    for tok in _words(normalise(display))[:10]:
        k = "h:f:" + tok
        out[k] = get(k, 0) + 1


def meta_tokens(f: Features) -> Counter[str]:
    """Structure tokens (``m:``) and email header words (``h:``) of one message."""
    out: Counter[str] = Counter()
    urls = f.urls if f.urls else tuple(_find_urls_any(f.text[:MAX_WORD_CHARS]))
    _url_tokens(urls, out)
    _text_meta(f.text, out)
    if f.channel is Channel.SMS:
        out["m:sender=" + _sender_type(f.sender)] = 1
    else:
        _email_meta(f, out)
    return out


# -- hashing ---------------------------------------------------------------------------------
# Deterministic hashing in numpy (no per-token Python call for character n-grams): code points
# are combined by a polynomial rolling hash and a 64-bit finaliser (splitmix64), words and
# structure tokens by CRC-32 (cached). Different seeds keep the blocks apart.

_MASK = np.uint64(N_FEATURES - 1)
_P = np.uint64(1_000_003)
_SEEDS = {"c": np.uint64(0x9E3779B97F4A7C15), "w": np.uint64(0xC2B2AE3D27D4EB4F),
          "b": np.uint64(0x165667B19E3779F9), "m": np.uint64(0x27D4EB2F165667C5)}
_CACHE_MAX = 200_000


class _TokenIds(dict[str, int]):
    """token -> CRC-32 of its UTF-8, remembered up to MAMORI_LIMITS__TOKEN_CACHE_SIZE tokens:
    a hit is a C-level dictionary lookup (`map(_TOKEN_IDS.__getitem__, words)`), only a miss
    runs Python (an email has hundreds of words)."""

    __slots__ = ()

    def __missing__(self, tok: str) -> int:
        v = zlib.crc32(tok.encode("utf-8", "surrogatepass"))
        if len(self) < limits.current().token_cache_size:  # default _CACHE_MAX
            self[tok] = v
        return v


_TOKEN_IDS = _TokenIds()
_token_hash = _TOKEN_IDS.__getitem__


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = h ^ (h >> np.uint64(31))
    return out


def _char_ids(text: str) -> np.ndarray:
    if len(text) < 2:
        return np.zeros(0, dtype=np.uint64)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    h = cp[:-1] ^ _SEEDS["c"]
    for n in (2, 3, 4):
        if len(cp) < n:
            break
        h = h[: len(cp) - n + 1] * _P + cp[n - 1 :]
        parts.append(h)
    return _mix(np.concatenate(parts)) & _MASK


def _word_ids(words: list[str]) -> np.ndarray:
    if not words:
        return np.zeros(0, dtype=np.uint64)
    h = np.fromiter(map(_token_hash, words), dtype=np.uint64, count=len(words))
    uni = _mix(h ^ _SEEDS["w"])
    if len(words) < 2:
        return uni & _MASK
    bi = _mix((h[:-1] * _P + h[1:]) ^ _SEEDS["b"])
    return np.concatenate((uni, bi)) & _MASK


def _counts(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(ids, return_counts=True) for a non-empty array of columns, as int64 columns:
    the columns (below N_FEATURES) sorted as uint32, which sorts about twice as fast."""
    srt = ids.astype(np.uint32)  # (a copy: sorted in place)
    srt.sort()
    edge = np.empty(srt.size + 1, dtype=bool)
    edge[0] = edge[-1] = True
    np.not_equal(srt[1:], srt[:-1], out=edge[1:-1])
    starts = np.flatnonzero(edge)
    return srt[starts[:-1]].astype(np.int64), starts[1:] - starts[:-1]


def _block(ids: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Unique columns and values: sub-linear term frequency, L2-normalised, scaled."""
    if ids.size == 0:
        return ids.astype(np.int64), np.zeros(0)
    cols, cnt = _counts(ids)
    v = cnt.astype(np.float64)
    big = v > 1
    if big.any():
        v[big] = 1.0 + np.log(v[big])
    v *= weight / np.sqrt(v @ v)
    return cols, v


class _MetaCols(dict[str, int]):
    """token -> the column of a structure or header-word token, remembered up to `_CACHE_MAX`
    tokens (the same tokens recur in every message): a hit is a C-level dictionary lookup,
    also for `map(_meta_col, tokens)`. f2 and e3 share it."""

    __slots__ = ()

    def __missing__(self, tok: str) -> int:
        col = _mix_one(_token_hash(tok) ^ _SEED_M) & _MASK_INT
        if len(self) < _CACHE_MAX:
            self[tok] = col
        return col


_META_COLS = _MetaCols()
_meta_col = _META_COLS.__getitem__  # the column of a structure token


_M64 = (1 << 64) - 1
_SEED_M = int(_SEEDS["m"])
_MASK_INT = N_FEATURES - 1


def _mix_one(h: int) -> int:
    """`_mix` of one 64-bit value in Python integers (uint64 arithmetic wraps: masked), without
    the numpy calls on a one-element array (~1 us instead of ~8 for a structure token or
    header word not seen before)."""
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


# structure token (m: and n:, the same few hundred in every message; not the header words of
# h:, which are content) -> (its block's number in _META_KEYS, its column)
_META_INFO: dict[str, tuple[int, int]] = {}
_META_KEYS = ("m", "n", "h")


def _meta_key(tok: str) -> str:
    if tok[0] == "h":
        return "h"
    return "n" if tok.startswith(("m:has_", "m:no_")) else "m"


def _meta_block(tokens: Counter[str], weights: dict[str, float] = BLOCK_WEIGHTS
                ) -> tuple[np.ndarray, np.ndarray]:
    """Structure tokens (``m``), header presence tokens (``n``) and header words (``h``),
    each block L2-normalised and scaled by its weight."""
    groups: tuple[tuple[list[int], list[int]], ...] = (([], []), ([], []), ([], []))
    info = _META_INFO
    for k, c in tokens.items():
        kc = info.get(k)
        if kc is None:
            key = _meta_key(k)
            kc = (_META_KEYS.index(key), _meta_col(k))
            if key != "h" and len(info) < _CACHE_MAX:
                info[k] = kc
        block = groups[kc[0]]
        block[0].append(kc[1])
        block[1].append(c)
    cols: list[int] = []
    vals: list[float] = []
    for key, (bcols, counts) in zip(_META_KEYS, groups, strict=True):
        if not bcols:
            continue
        cols.extend(bcols)
        if max(counts) == 1:
            # every token once (the presence block, often the others): each value is the
            # scale, and the sum of squares the count (exact: a sum of 1.0s)
            vals.extend([weights[key] / math.sqrt(len(counts))] * len(counts))
            continue
        v = [1.0 + math.log(c) if c > 1 else float(c) for c in counts]
        scale = weights[key] / math.sqrt(sum(x * x for x in v))
        vals.extend(x * scale for x in v)
    return np.array(cols, dtype=np.int64), np.array(vals, dtype=np.float64)


_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")


def _zero_digits(text: str) -> str:
    """Every digit as 0 (`_DIGITS_RE`); ASCII text, whose only digits are 0-9, by bytes."""
    if text.isascii():
        return text.encode("ascii").translate(_ZERO_DIGITS).decode("ascii")
    return _DIGITS_RE.sub("0", text)


# ASCII bytes with every character that is not a word character (\w: A-Z, a-z, 0-9, _ in
# ASCII) made a space
_ASCII_WORD_BYTES = bytes(c if c < 128 and (chr(c).isalnum() or c == 95) else 32 for c in range(256))


def _words(text: str) -> list[str]:
    """`_WORD_RE.findall(text)`; ASCII text by bytes.translate and split, in C (4-5x faster)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii").split()
    return _WORD_RE.findall(text)


_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_CHAR_TAG = np.uint32(N_FEATURES)  # the character block's columns, tagged to sort after the words'
_MASK32 = np.uint32(N_FEATURES - 1)
_max_of = np.maximum.reduce


def _mix_inplace(h: np.ndarray) -> np.ndarray:
    """`_mix(h)` computed in `h` itself (the same uint64 operations, fewer temporaries)."""
    t = h >> _S30
    h ^= t
    h *= _C1
    np.right_shift(h, _S27, out=t)
    h ^= t
    h *= _C2
    np.right_shift(h, _S31, out=t)
    h ^= t
    return h


# sub-linear term frequency of a count c (`_block`'s value before normalising): c for 0 and 1,
# else 1 + log(c), computed by the same vectorised np.log (it gives each element the same
# result wherever it stands in an array: test)
_TF_SIZE = 8192
_TF = np.arange(_TF_SIZE, dtype=np.float64)
_TF[2:] = 1.0 + np.log(_TF[2:])


_RUN = 512  # (the run length sorted fastest here: ~3x the whole array's speed at 9,000)


def _sort_runs(a: np.ndarray) -> None:
    """`a.sort()` of a contiguous uint32 array, in place: a long array as runs of `_RUN`
    sorted alone, then merged by the stable sort (timsort, which finds the runs). The sorted
    array is the same whichever way it is reached; numpy's quicksort of a few thousand
    elements costs several times more per element than of a few hundred (the character
    block of a message is up to ~9,000)."""
    n = a.size
    if n <= 2 * _RUN:
        a.sort()
        return
    m = n - n % _RUN
    a[:m].reshape(-1, _RUN).sort(axis=1)
    a[m:].sort()
    a.sort(kind="stable")


def _word_premix(words: list[str], out: np.ndarray) -> None:
    """The pre-mix values of `_word_ids(words)` (a non-empty list) written into `out`: the
    words, then the bigrams."""
    nw = len(words)
    h = np.fromiter(map(_token_hash, words), dtype=np.uint64, count=nw)
    np.bitwise_xor(h, _SEEDS["w"], out=out[:nw])
    if nw >= 2:
        bi = out[nw:2 * nw - 1]
        np.multiply(h[:-1], _P, out=bi)
        bi += h[1:]
        bi ^= _SEEDS["b"]


def _gram_premix(cp: np.ndarray, seed: np.uint64, out: np.ndarray, first: int) -> None:
    """The pre-mix values of the character n-grams of code points `cp` (uint64, at least 2),
    by the rolling hash seeded with `seed`, written into `out` from size `first` to 4, one
    size after the other (each size computed from the one before; sizes below `first` only
    computed)."""
    n = cp.size
    h = cp[:-1] ^ seed
    o = 0
    for k in (2, 3, 4):
        if n < k:
            break
        m = n - k + 1
        if k < first:
            h = h[:m] * _P + cp[k - 1:]
            continue
        seg = out[o:o + m]
        np.multiply(h[:m], _P, out=seg)
        seg += cp[k - 1:]
        h = seg
        o += m


def _sorted_tf(srt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values of a sorted, non-empty uint32 array, the sub-linear term frequency
    of each: `_block`'s values before normalising)."""
    edge = np.empty(srt.size + 1, dtype=bool)
    edge[0] = edge[-1] = True
    np.not_equal(srt[1:], srt[:-1], out=edge[1:-1])
    starts = edge.nonzero()[0]
    cnt = starts[1:] - starts[:-1]
    if _max_of(cnt) < _TF_SIZE:
        v = _TF.take(cnt)
    else:
        v = cnt.astype(np.float64)
        big = v > 1
        v[big] = 1.0 + np.log(v[big])
    return srt[starts[:-1]], v


def _text_blocks(words: list[str], ctext: str, ww: float, wc: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`_block(_word_ids(words), ww)` and `_block(_char_ids(ctext), wc)` end to end, with one
    hash mix and one sort for both: the words' and the characters' pre-mix values in one
    array, the characters' columns tagged with bit 19 so that they sort after the words'."""
    nw = len(words)
    nword = 2 * nw - 1 if nw else 0
    n = len(ctext) if len(ctext) >= 2 else 0
    total = nword + sum(n - k + 1 for k in (2, 3, 4) if n >= k)
    if not total:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    # the pre-mix values written straight into their places: words, bigrams, then the
    # character 2-, 3- and 4-grams (each from the one before)
    allh = np.empty(total, dtype=np.uint64)
    if nw:
        _word_premix(words, allh[:nword])
    if n:
        cp = np.frombuffer(ctext.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        _gram_premix(cp, _SEEDS["c"], allh[nword:], 2)
    srt = _mix_inplace(allh).astype(np.uint32)
    srt &= _MASK32  # (the column: the low 19 bits, as `& _MASK` before the cast)
    srt[nword:] |= _CHAR_TAG
    # (every word column is below every tagged character column: the two runs sorted apart
    # are the whole sorted, and two shorter sorts cost less than one long one)
    _sort_runs(srt[:nword])
    _sort_runs(srt[nword:])
    uniq, v = _sorted_tf(srt)
    k = int(uniq.searchsorted(_CHAR_TAG)) if nword else 0
    # (math.sqrt and np.sqrt are both the correctly rounded square root: the same scale)
    if k:
        vw = v[:k]
        vw *= ww / math.sqrt(vw @ vw)
    if k < v.size:
        vc = v[k:]
        vc *= wc / math.sqrt(vc @ vc)
        uniq[k:] ^= _CHAR_TAG
    return uniq.astype(np.int64), v


# ASCII bytes in lower case with the digits 1-9 as 0
_LOWER_ZERO = bytes.maketrans(string.ascii_uppercase.encode() + b"123456789",
                              string.ascii_lowercase.encode() + b"000000000")


def _text0_words(text: str) -> tuple[str, list[str]]:
    """(`_zero_digits(normalise(text))`, `_words` of it). ASCII text (which NFKC leaves as it
    is) in fewer passes: spaces collapsed, then lower case and zeroed digits in one
    `bytes.translate`, the words split from the same bytes."""
    if not text.isascii():
        return _text0_words_unicode(normalise(text))
    raw = " ".join(text.split()).encode("ascii").translate(_LOWER_ZERO)
    return raw.decode("ascii"), raw.translate(_ASCII_WORD_BYTES).decode("ascii").split()


def _text0_words_unicode(text: str) -> tuple[str, list[str]]:
    """(`_zero_digits(text)`, `_words` of it) of a normalised text. Text of the Basic
    Multilingual Plane by its code points in numpy (a regular expression over Unicode text
    is slow): the digits (what `_DIGITS_RE` matches) made "0", and the characters that
    `_WORD_RE` does not match made spaces before splitting."""
    cp = None if text.isascii() else _bmp_code_points(text)
    if cp is None:
        text0 = _zero_digits(text)
        return text0, _words(text0)
    flags = _bmp_flags().take(cp)
    zeroed = np.where(flags & _DECIMAL, _ZERO_CP, cp)
    words = np.where(flags & _WORD, zeroed, _SPACE_CP)
    return (zeroed.tobytes().decode("utf-32-le", "surrogatepass"),
            words.tobytes().decode("utf-32-le", "surrogatepass").split())


_ZERO_CP, _SPACE_CP = np.uint32(ord("0")), np.uint32(ord(" "))


def row(f: Features) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values) of one message; indices may repeat across blocks (summed)."""
    text0, words = _text0_words(f.text[:MAX_WORD_CHARS])
    weights = EMAIL_BLOCK_WEIGHTS if f.channel is Channel.EMAIL else BLOCK_WEIGHTS
    ti, tv = _text_blocks(words, text0[:MAX_CHAR_CHARS], weights["w"], weights["c"])
    mi, mv = _meta_block(meta_tokens(f), weights)
    return np.concatenate((ti, mi)), np.concatenate((tv, mv))


def vectorise(items: Iterable[Features]) -> sp.csr_matrix:
    """Hash a batch of messages into a CSR matrix of shape (n, N_FEATURES) with f2."""
    from gateway.learn.featuresets import SETS  # featuresets imports this module

    return SETS["f2"].vectorise(items)
