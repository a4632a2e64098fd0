"""Email feature version ``e3``: portable header, structure and URL signals, a capped body.

Why a version of its own: the ``f2`` email features leaned on corpus-specific tokens (which
header fields are present, the mailer's first word, link domains), which separate one corpus'
ham from its spam well and, so the idea went, transfer badly to mail from another year and
place. ``e3`` keeps the body words, cuts the text it reads and describes the message by
signals meant to mean the same thing at any site. Measured (docs/models.md): better for
retraining on a site's own mail, NOT better at transfer, and NOT cheaper than ``f2``: it reads
less text but adds the header grams, the HTML-only body and richer structure tokens; the whole
in-process email scan costs ~3-5% more CPU with an e3 model than with an f2 one
(perf/RESULTS.md, "e3 feature row").

- ``w``  body word unigrams and bigrams (NFKC, lower case, digits as 0), first 5,000 chars
  (HTML-only mail: the text of its HTML, which ``ScanContext.text`` leaves out)
- ``c``  body character 3..4-grams, first 1,000 chars
- ``r``  character 4-grams of the header fields the sender's software writes (first 2,000
  chars): the TREC-style header signal without relay, list-server or mail-store fields
- ``m``  structure, one token per anomaly or shape class:
  the sender's end of the Received chain (HELO an IP or bare name, unresolved or dynamic rDNS),
  Date and Message-ID format (and whether they fit the claimed mailer family),
  From / Reply-To / Return-Path / Message-ID domain mismatches, freemail senders,
  recipients (none, undisclosed, many), MIME shape (top-level type, missing MIME-Version,
  HTML-only, charset class, encoded subject), HTML tricks (hidden text, images, forms,
  scripts, entity-encoded letters, comment-split words), URLs (count, distinct hosts, IP
  hosts, ports, shorteners, user-info, href/anchor-text mismatches, TLD class, redirect
  parameters, URL-to-text ratio) and the shape of the subject and body (capitals, symbols,
  money, exclamation marks, length)
- ``h``  words of the subject and of the From display name

No token names a host, a list, a mailer version or a header field by mere presence: those
are what a model trained at one site learns about that site, not about spam.

Never change what this module computes once a model trained with it is shipped (make a new
version instead; tests/learn/test_features_email.py pins the output).
"""

from __future__ import annotations

import math
import re
import string
from bisect import bisect_left
from collections import Counter
from dataclasses import replace

import numpy as np

from gateway.learn.features import (
    _ASCII_UPPER,
    _IP_HOST_RE,
    _MASK,
    _MASK32,
    _MONEY_RE,
    _P,
    SHORTENERS,
    Features,
    _domain_of,
    _find_urls_any,
    _folded_lower,
    _gram_premix,
    _header_words,
    _letters,
    _meta_col,
    _mix,
    _mix_inplace,
    _sort_runs,
    _sorted_tf,
    _text0_words,
    _word_premix,
)
from gateway.learn.features import _MONEY_WORDS as _MONEY_NEEDS
from gateway.message import lower_names
from gateway.mime import html_to_text

FEATURES_VERSION = "e3"
N_FEATURES = 2**19
BLOCK_WEIGHTS = {"w": 1.0, "c": 0.7, "m": 1.0, "h": 0.5, "r": 0.7}
MAX_HEADER_CHARS = 2_000
# header fields whose character 4-grams are read: those the sender's software writes, which
# travel with the message. Fields added on the way (Received, Delivered-To, list servers'
# List-*, spam filters' X-Spam-*) or by whoever stored the mail (X-Keywords, Delivery-Date,
# Status, X-UID: collection artefacts of a corpus) describe a site, not the message.
HEADER_GRAM_FIELDS = frozenset({
    "from", "to", "cc", "subject", "date", "message-id", "reply-to", "sender", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding", "x-mailer",
    "user-agent", "x-priority", "x-msmail-priority", "importance", "x-mimeole",
    "organization", "content-disposition", "disposition-notification-to", "return-receipt-to",
})
MAX_WORD_CHARS = 5_000
MAX_CHAR_CHARS = 1_000
MAX_HTML_CHARS = 20_000
MAX_URLS = 40

_C_SEED = np.uint64(0x2545F4914F6CDD1D)
_R_SEED = np.uint64(0x4CF5AD432745937F)
# `_hashed_blocks`' tags of the character and header-gram columns (above every column)
_TAG_C, _TAG_R = np.uint32(N_FEATURES), np.uint32(2 * N_FEATURES)

_FREEMAIL = frozenset(
    ["gmail.com", "yahoo.com", "hotmail.com", "aol.com", "msn.com", "outlook.com", "live.com",
     "mail.com", "yahoo.co.uk", "hotmail.co.uk", "mail.ru", "yandex.ru", "gmx.net", "gmx.de",
     "web.de", "excite.com", "lycos.com", "netscape.net", "juno.com", "earthlink.net",
     "rediffmail.com", "163.com", "126.com", "qq.com", "sina.com", "yahoo.co.jp", "icloud.com",
     "protonmail.com", "zoho.com", "compuserve.com", "btinternet.com", "comcast.net"]
)
_GENERIC_TLDS = frozenset(["com", "net", "org", "edu", "gov", "mil", "int"])
_CHEAP_TLDS = frozenset(
    ["info", "biz", "top", "xyz", "club", "online", "site", "win", "bid", "loan", "click",
     "link", "work", "date", "racing", "review", "stream", "download", "tk", "ml", "ga", "cf",
     "gq", "ws", "cc", "su", "pw", "icu", "buzz", "rest", "fit", "men", "party", "trade"]
)
_DYNAMIC_RE = re.compile(
    r"(?:\d{1,3}[-.]\d{1,3}[-.]\d{1,3}|dsl|dyn|dial|pool|ppp|cable|dhcp|adsl|client|cpe|host\d|"
    r"user\d|customer|broadband|\bip\d)", re.I)
_RCVD_FROM_RE = re.compile(r"^\s*from\s+(\S+)(?:\s+\(([^)]*)\))?", re.I)
_RCVD_IP_RE = re.compile(r"\[(\d{1,3}(?:\.\d{1,3}){3})\]")
_DATE_RFC_RE = re.compile(
    r"^\s*(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s+)?\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|"
    r"Aug|Sep|Oct|Nov|Dec)\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s+([+-]\d{4}|[A-Z]{1,5})"
    r"(?:\s+\(.*\))?\s*$", re.I)
_MID_RE = re.compile(r"^\s*<([^<>@\s]+)@([^<>@\s]+)>\s*$")
_HEXDOLLAR_RE = re.compile(r"^[0-9a-f]{12}\$[0-9a-f]{8}\$[0-9a-f]{8}$", re.I)
_HREF_RE = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>(.{0,200}?)</a", re.I | re.S)
_TAG_RE = re.compile(r"<[^>]{0,300}>")
_ENTITY_LETTER_RE = re.compile(r"&#(?:x0*(?:4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a])|0*(?:6[5-9]|[7-9]\d|1[01]\d|12[0-2]));", re.I)
_HIDDEN_RE = re.compile(
    r"(?:font[^>]{0,60}(?:size\s*=\s*[\"']?[01]\b|color\s*=\s*[\"']?#?(?:fff(?:fff)?|white)\b)"
    r"|display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:px|pt)?\b)")
# _HIDDEN_RE's alternatives one by one, each beginning with its own word: a search for one
# word skips ahead fast, one for any of three first letters tries nearly every position
_HIDDEN_FONT_RE = re.compile(
    r"font[^>]{0,60}(?:size\s*=\s*[\"']?[01]\b|color\s*=\s*[\"']?#?(?:fff(?:fff)?|white)\b)")
_HIDDEN_SIZE_RE = re.compile(r"font-size\s*:\s*[01](?:px|pt)?\b")
_HIDDEN_DISPLAY_RE = re.compile(r"display\s*:\s*none")
_HIDDEN_VISIBILITY_RE = re.compile(r"visibility\s*:\s*hidden")


def _hidden_text(low: str) -> bool:
    """Whether `_HIDDEN_RE` matches `low` (~3x faster): whether one of its alternatives does."""
    return (_HIDDEN_FONT_RE.search(low) is not None or _HIDDEN_SIZE_RE.search(low) is not None
            or ("display" in low and _HIDDEN_DISPLAY_RE.search(low) is not None)
            or ("visibility" in low and _HIDDEN_VISIBILITY_RE.search(low) is not None))


_COMMENT_SPLIT_RE = re.compile(r"\w<!--[^>]{0,40}-->\w")
# found where _COMMENT_SPLIT_RE is found (one place later), ~30x faster: the search skips to
# each "<!--" and looks back for the word character
_COMMENT_SPLIT_AT_RE = re.compile(r"<!--(?<=\w<!--)[^>]{0,40}-->\w")
_REDIRECT_RE = re.compile(r"[?&][a-z_]*(?:url|redirect|goto|target|dest|link)=(?:https?|%2f|/)", re.I)
_SUBJ_ID_RE = re.compile(r"(?:\s{3,}|[\[(#]\s*)[a-z0-9]{4,}[\])]?\s*$|\b[a-z]*\d+[a-z]+\d+[a-z0-9]*\s*$", re.I)
_SYMBOLS = "!$%*@#?+=~^|"  # (each counted in a subject)
_SYMBOL_BYTES = _SYMBOLS.encode("ascii")


# `_bucket(x, edges)` as `_rank(edges, x)`: the first edge at least x, in C (edges ascending)
_rank = bisect_left


def _mailer_family(headers: dict[str, str]) -> str:
    m = (headers.get("x-mailer") or headers.get("user-agent") or "").lower()
    if not m:
        return "none"
    if "outlook express" in m:
        return "oe"
    if "outlook" in m or "microsoft" in m or "mimeole" in m:
        return "outlook"
    if any(k in m for k in ("mozilla", "thunderbird", "netscape")):
        return "mozilla"
    if any(k in m for k in ("mutt", "pine", "alpine", "elm", "gnus", "emacs", "vm ", "kmail",
                            "evolution", "sylpheed", "balsa", "mh-e", "exmh", "nmh", "squirrel",
                            "imp", "horde", "apple mail", "mail.app", "eudora", "lotus",
                            "pegasus", "pobox", "opera", "becky")):
        return "client"
    if any(k in m for k in ("php", "perl", "python", "java", "mailer", "send", "bulk", "mass",
                            "list", "group", "express", "pro", "version")):
        return "tool"
    return "other"


def _tld_class(host: str) -> str:
    tld = host.rsplit(".", 1)[-1]
    if tld in _GENERIC_TLDS:
        return "generic"
    if tld in _CHEAP_TLDS:
        return "cheap"
    if len(tld) == 2 and tld.isalpha():
        return "cc"
    return "other"


def _charset_class(cs: str) -> str:
    cs = cs.lower().strip("\"' ")
    if cs in ("us-ascii", "ascii", "ansi_x3.4-1968"):
        return "ascii"
    if cs in ("utf-8", "utf8"):
        return "utf8"
    if cs.startswith(("iso-8859-1", "iso-8859-15", "latin")):
        return "latin1"
    if cs.startswith(("windows-", "cp")):
        return "windows"
    if cs.startswith(("gb", "big5", "hz", "euc-cn")):
        return "chinese"
    if cs.startswith(("iso-2022-jp", "shift", "euc-jp", "sjis")):
        return "japanese"
    if cs.startswith(("ks_c", "euc-kr", "iso-2022-kr")):
        return "korean"
    if cs.startswith(("koi8", "iso-8859-5")):
        return "cyrillic"
    return "other"


def _received(values: list[str], out: Counter[str]) -> None:
    """The sender's end of the Received chain only: how many hops there are and what they
    look like depends on the receiving site's own relays (and on how a corpus was collected),
    the earliest hop says how the mail entered the internet."""
    if not values:
        out["m:rcvd_none"] = 1
        return
    first = values[-1]  # the earliest hop is the last Received field
    m = _RCVD_FROM_RE.match(first)
    if not m:
        return
    helo, paren = m.group(1).lower(), (m.group(2) or "").lower()
    if _IP_HOST_RE.match(helo.strip("[]")):
        out["m:rcvd_first_helo_ip"] = 1
    elif "." not in helo:
        out["m:rcvd_first_helo_bare"] = 1
    if "unknown" in paren or "may be forged" in first.lower():
        out["m:rcvd_first_unresolved"] = 1
    rdns = _RCVD_IP_RE.sub(" ", paren)  # the resolved name, not the address itself
    if _DYNAMIC_RE.search(rdns) or _DYNAMIC_RE.search(helo):
        out["m:rcvd_first_dynamic"] = 1


def _date(value: str | None, out: Counter[str]) -> None:
    if value is None:
        out["m:date_missing"] = 1
        return
    m = _DATE_RFC_RE.match(value)
    if not m:
        out["m:date_odd_format"] = 1
        return
    tz = m.group(1)
    if tz[0] not in "+-":
        out["m:date_tz_name"] = 1
    elif int(tz[1:3]) > 14 or int(tz[3:]) not in (0, 30, 45):
        out["m:date_tz_invalid"] = 1
    if "," not in value:
        out["m:date_no_weekday"] = 1


_HEX_LOCAL_RE = re.compile(r"[0-9A-Fa-f.\-]{16,}")


def _message_id(value: str | None, family: str, from_dom: str, out: Counter[str]) -> None:
    if value is None:
        out["m:mid_missing"] = 1
        return
    m = _MID_RE.match(value)
    if not m:
        out["m:mid_malformed"] = 1
        return
    local, dom = m.group(1), m.group(2).lower().rstrip(".")
    if _HEXDOLLAR_RE.match(local):
        shape = "hexdollar"  # Outlook / Outlook Express
    elif local.isdigit():
        shape = "digits"
    elif _HEX_LOCAL_RE.fullmatch(local):
        shape = "hex"
    elif len(local) < 8:
        shape = "short"
    else:
        shape = "mixed"
    out["m:mid_shape=" + shape] = 1
    if family in ("oe", "outlook") and shape != "hexdollar" and "." in local:
        out["m:mid_unlike_outlook"] = 1
    if family == "none" and shape == "hexdollar":
        out["m:mid_outlook_no_mailer"] = 1
    if "." not in dom:
        out["m:mid_dom_bare"] = 1
    elif _IP_HOST_RE.match(dom.strip("[]")):
        out["m:mid_dom_ip"] = 1
    if from_dom and not (dom.endswith(from_dom) or from_dom.endswith(dom)):
        out["m:mid_other_domain"] = 1


def _addresses(h: dict[str, str], sender: str, out: Counter[str]) -> tuple[str, str]:
    frm = h.get("from", "")
    from_dom = _domain_of(frm)
    display = frm.split("<", 1)[0].strip().strip('"') if "<" in frm else ""
    if not frm:
        out["m:from_missing"] = 1
    elif "@" not in frm:
        out["m:from_no_address"] = 1
    if from_dom in _FREEMAIL:
        out["m:from_freemail"] = 1
    addr = frm[frm.rfind("<") + 1:].split(">", 1)[0] if "<" in frm else frm.strip()
    local = addr.partition("@")[0].lower()
    if local:
        digits = sum(map(str.isdigit, local))
        if digits >= 3 and digits / len(local) > 0.25:
            out["m:from_local_digits"] = 1
        if len(local) > 20:
            out["m:from_local_long"] = 1
    if display:
        if "@" in display:
            out["m:from_display_addr"] = 1
        letters = [ch for ch in display if ch.isalpha()]
        if len(letters) > 3 and sum(ch.isupper() for ch in letters) / len(letters) > 0.7:
            out["m:from_display_caps"] = 1
        if local and display.lower().replace(" ", "") == local:
            out["m:from_display_is_local"] = 1
    else:
        out["m:from_no_display"] = 1
    rt = h.get("reply-to")
    if rt is not None:
        rt_dom = _domain_of(rt)
        out["m:replyto_same" if rt_dom == from_dom else "m:replyto_other_domain"] = 1
        if rt_dom in _FREEMAIL and from_dom not in _FREEMAIL:
            out["m:replyto_freemail"] = 1
    rp = h.get("return-path") or sender
    if rp:
        rp_dom = _domain_of(rp)
        if not rp_dom or rp.strip("<> ") == "":
            out["m:returnpath_null"] = 1
        elif from_dom and rp_dom != from_dom and not (rp_dom.endswith("." + from_dom)
                                                        or from_dom.endswith("." + rp_dom)):
            out["m:returnpath_other_domain"] = 1
    to = h.get("to")
    if to is None:
        out["m:to_missing"] = 1
    else:
        low = to.lower()
        if "undisclosed" in low or "recipient" in low:
            out["m:to_undisclosed"] = 1
        n_to = low.count("@")
        out[f"m:to_n={_rank((0, 1, 3), n_to)}"] = 1
        if n_to == 1 and from_dom and _domain_of(to) == from_dom and _domain_of(to):
            out["m:to_same_domain"] = 1
    return from_dom, display


_CHARSET_RE = re.compile(r'charset\s*=\s*"?([\w.:-]+)', re.I)


def _mime(h: dict[str, str], f: Features, out: Counter[str]) -> None:
    ctype = h.get("content-type", "")
    top = ctype.split(";", 1)[0].strip().lower()
    kind = top if top in ("text/plain", "text/html", "multipart/alternative",
                          "multipart/mixed", "multipart/related", "multipart/report",
                          "multipart/signed") else ("none" if not top else "other")
    out["m:ctype=" + kind] = 1
    if top and "mime-version" not in h:
        out["m:mime_no_version"] = 1
    if top.startswith("multipart") and "boundary" not in ctype.lower():
        out["m:mime_no_boundary"] = 1
    m = _CHARSET_RE.search(ctype)
    if m:
        out["m:charset=" + _charset_class(m.group(1))] = 1
    cte = h.get("content-transfer-encoding", "").strip().lower()
    if cte in ("base64", "quoted-printable") and top.startswith("text/"):
        out["m:cte_text_" + ("b64" if cte == "base64" else "qp")] = 1
    if f.html:
        html_only = top == "text/html"
        out["m:html_only" if html_only else "m:html_alt"] = 1


def _html(html: str, text_len: int, out: Counter[str]) -> list[tuple[str, str]]:
    low = html[:MAX_HTML_CHARS].lower()
    n_img = low.count("<img")
    if n_img:
        out[f"m:html_img={_rank((1, 3), n_img)}"] = 1
    if "<form" in low:
        out["m:html_form"] = 1
    if "<script" in low:
        out["m:html_script"] = 1
    if "<iframe" in low or "<object" in low or "<embed" in low:
        out["m:html_embed"] = 1
    if _hidden_text(low):
        out["m:html_hidden_text"] = 1
    if _COMMENT_SPLIT_AT_RE.search(low):
        out["m:html_comment_split"] = 1
    if len(_ENTITY_LETTER_RE.findall(low[:10_000])) >= 5:
        out["m:html_entity_letters"] = 1
    n_font = low.count("<font")
    if n_font:
        out[f"m:html_font={_rank((2, 10), n_font)}"] = 1
    if "<table" in low:
        out["m:html_table"] = 1
    if _TAG_RE.search(low[:10_000]):  # (a tag in the first 10,000 characters)
        ratio = text_len / max(1, min(len(low), 10_000))
        out[f"m:html_text_ratio={_rank((0.05, 0.15, 0.4), ratio)}"] = 1
    return _anchors(low)


# _HREF_RE up to the end of its opening tag
_HREF_TAG_RE = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']?([^\"'\s>]+)[^>]*>", re.I | re.S)


def _anchors(low: str) -> list[tuple[str, str]]:
    """`_HREF_RE.findall(low)[:MAX_URLS]` of lower-case `low`, ~4x faster: each opening tag by
    `_HREF_TAG_RE`, the link text up to the next "</a" by str.find. The same matches: nothing
    in the tag can be ">", so every way of matching a tag ends at the same ">" and the lazy
    text after it is found (or not) alike; no match, and the search goes on one character on,
    as findall's does. (No character of lower-case text but "a" matches "a" ignoring case,
    which the plain "</a" then finds: test.)"""
    out: list[tuple[str, str]] = []
    pos = 0
    search, find = _HREF_TAG_RE.search, low.find
    while len(out) < MAX_URLS:
        m = search(low, pos)
        if m is None:
            break
        end = m.end()
        close = find("</a", end, end + 203)  # (the text: at most 200 characters)
        if close < 0:
            pos = m.start() + 1
        else:
            out.append((m.group(1), low[end:close]))
            pos = close + 3
    return out


_HOST_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/?#\s]*@)?([^:/?#\s]*)(?::(\d{1,5}))?", re.I)


def _host(url: str) -> tuple[str, int | None]:
    """(host, port) of a URL or bare domain, without urllib (one regex)."""
    m = _HOST_RE.match(url)
    if not m:
        return "", None
    port = m.group(2)
    return m.group(1).lower().strip("[]").rstrip("."), int(port) if port else None


_ACCOUNT_RE = re.compile(r"[?&/](?:id|uid|token|session|login|verify|account|signin)\b")
_SHOWN_RE = re.compile(r"(?:https?://|www\.)([a-z0-9.-]+)")


def _urls(urls: tuple[str, ...], anchors: list[tuple[str, str]], text_len: int,
          out: Counter[str]) -> None:
    n = len(urls)
    out[f"m:nurl={_rank((0, 1, 2, 4, 9, 20), n)}"] = 1
    hosts: set[str] = set()
    for url in urls[:MAX_URLS]:
        m = _HOST_RE.match(url)  # (`_host`, inline)
        if m is None or not (host := m.group(1).lower().strip("[]").rstrip(".")):
            out["m:url_nohost"] = 1
            continue
        low = url.lower()
        hosts.add(host)
        if _IP_HOST_RE.match(host):
            out["m:url_ip"] = 1
        else:
            out["m:url_tld=" + _tld_class(host)] = 1
        port = m.group(2)
        if port and int(port) not in (80, 443):
            out["m:url_port"] = 1
        if host in SHORTENERS:
            out["m:url_short"] = 1
        if host.count(".") > 3:
            out["m:url_deep_host"] = 1
        if "@" in url and "@" in low.split("//", 1)[-1].split("/", 1)[0]:
            out["m:url_userinfo"] = 1
        if "xn--" in host or not host.isascii():
            out["m:url_idn"] = 1
        if "%" in url and "%" in low.partition("?")[0]:
            out["m:url_escaped_path"] = 1
        if ("?" in low or "&" in low) and _REDIRECT_RE.search(low):
            out["m:url_redirect"] = 1
        if _ACCOUNT_RE.search(low):
            out["m:url_account_words"] = 1
    if hosts:
        out[f"m:url_hosts={_rank((1, 2, 4), len(hosts))}"] = 1
        ratio = n * 100 / max(text_len, 1)
        out[f"m:url_text_ratio={_rank((0.1, 0.5, 2), ratio)}"] = 1
    mism = 0
    for href, inner in anchors:
        if href.startswith(("http", "www")):
            txt = (_TAG_RE.sub("", inner) if "<" in inner else inner).strip()
            shown = _SHOWN_RE.search(txt)
        else:
            shown = None
        if shown:
            hh, _ = _host(href)
            sh = shown.group(1).rstrip(".")
            if hh and sh and not (hh.endswith(sh) or sh.endswith(hh)):
                mism += 1
        if href.startswith("mailto:"):
            out["m:mailto_link"] = 1
    if mism:
        out["m:href_text_mismatch"] = 1


_PERCENT_RE = re.compile(r"\d+\s?%")
_REPLY_RE = re.compile(r"(?i)\s*(re|fwd?|aw|sv)\s*:")
_PUNCT_RUN_RE = re.compile(r"[!?]{2,}")


def _subject(subj: str, out: Counter[str]) -> None:
    if not subj.strip():
        out["m:subj_empty"] = 1
        return
    ascii_only = subj.isascii()
    if ascii_only:  # (letters: A-Z and a-z, of them upper case A-Z only)
        n_letters, n_caps = _letters(subj)
    else:  # (not `_letters`: a character may be upper case and no letter, as U+2160)
        letters = [ch for ch in subj if ch.isalpha()]
        n_letters, n_caps = len(letters), sum(ch.isupper() for ch in letters)
    if n_letters:
        caps = n_caps / n_letters
        out[f"m:subj_caps={_rank((0.1, 0.3, 0.6), caps)}"] = 1
    if ascii_only:
        raw = subj.encode("ascii")
        sym = len(raw) - len(raw.translate(None, _SYMBOL_BYTES))
    else:
        sym = sum(map(subj.count, _SYMBOLS))
    if sym:
        out[f"m:subj_sym={_rank((1, 3), sym)}"] = 1
    # (each expression tried only when the text holds what a match needs: as f2's _text_meta
    # for _MONEY_RE, a "%" for _PERCENT_RE)
    if ("$" in subj or (any(w in _folded_lower(subj) for w in _MONEY_NEEDS)
            and _MONEY_RE.search(subj))) or ("%" in subj and _PERCENT_RE.search(subj)):
        out["m:subj_money"] = 1
    if _REPLY_RE.match(subj):
        out["m:subj_reply"] = 1
    if "=?" in subj:
        out["m:subj_encoded"] = 1
    if not ascii_only:
        out["m:subj_nonascii"] = 1
    if _SUBJ_ID_RE.search(subj):
        out["m:subj_trailing_id"] = 1
    if "!!" in subj or "??" in subj or "!?" in subj or "?!" in subj:  # (_PUNCT_RUN_RE)
        out["m:subj_punct_run"] = 1
    if subj != subj.strip():
        out["m:subj_padded"] = 1
    out[f"m:subj_len={_rank((10, 30, 60), len(subj))}"] = 1


_MONEY_WORDS = ("円", "pound", "usd", "dollar")
# the same yes/no as features._PHONE_RE (its optional leading "+" never decides a match)
_PHONE_ANY_RE = re.compile(r"\d[\d\- ]{7,}\d")
# ASCII text's bytes as classes: digits "0", "-" and " " as "-", any other "x". Found there,
# _PHONE_CLASS_RE is found where `features._PHONE_ASCII_RE` is in the text (test), ~3x faster:
# a search for one literal first byte skips ahead, one for a class tries every position
_PHONE_CLASSES = bytes(48 if 48 <= c <= 57 else 45 if c in (32, 45) else 120 for c in range(256))
_PHONE_CLASS_RE = re.compile(rb"0[0\-]{7,}0")


_ASCII_LOWER = string.ascii_lowercase.encode("ascii")


def _has_money(sample: str) -> bool:
    """A currency sign anywhere, or `_MONEY_RE` in the first 1,000 characters; the regex runs
    only when one of the words it needs is there."""
    if any(ch in sample for ch in "$£€¥"):
        return True
    head = sample[:1000]
    low = head.lower()
    if "￥" not in head and not any(w in low for w in _MONEY_WORDS):
        return False
    return _MONEY_RE.search(head) is not None


def _body(text: str, out: Counter[str]) -> None:
    n = len(text)
    out[f"m:len={_rank((100, 300, 1000, 3000, 10000), n)}"] = 1
    if not text:
        out["m:body_empty"] = 1
        return
    sample = text[:2000]
    ascii_only = sample.isascii()
    raw = sample.encode("ascii", "ignore")  # (A-Z and a-z counted: the letters left)
    upper = len(raw) - len(raw.translate(None, _ASCII_UPPER))
    lower = len(raw) - len(raw.translate(None, _ASCII_LOWER))
    if upper + lower:
        out[f"m:body_caps={_rank((0.05, 0.15, 0.3), upper / (upper + lower))}"] = 1
    if _has_money(sample):
        out["m:body_money"] = 1
    if (_PHONE_CLASS_RE.search(raw.translate(_PHONE_CLASSES)) if ascii_only
            else _PHONE_ANY_RE.search(sample)):
        out["m:body_phone"] = 1
    excl = sample.count("!")
    out[f"m:body_excl={_rank((0, 2, 6), excl)}"] = 1
    quoted = sample.count("\n>")
    if quoted:
        out[f"m:body_quoted={_rank((2, 10), quoted)}"] = 1


def meta_tokens(f: Features) -> Counter[str]:
    """Structure tokens (``m:``) and header words (``h:``) of one email."""
    text = body_text(f)
    if text is not f.text:
        f = replace(f, text=text)
    out: Counter[str] = Counter()
    # the first value of each name (but Received), and the last Received value (all that
    # `_received` reads of the list of them)
    lowered = lower_names(f.headers)
    h = dict(zip(reversed(lowered), [v for _n, v in reversed(f.headers)], strict=True))
    received: list[str] = []
    if "received" in h:
        del h["received"]
        received = [f.headers[len(lowered) - 1 - lowered[::-1].index("received")][1]]
    _received(received, out)
    family = _mailer_family(h)
    out["m:mailer=" + family] = 1
    from_dom, display = _addresses(h, f.sender, out)
    _date(h.get("date"), out)
    _message_id(h.get("message-id"), family, from_dom, out)
    _mime(h, f, out)
    text_len = len(f.text)
    anchors = _html(f.html, text_len, out) if f.html else []
    urls = f.urls if f.urls else tuple(_find_urls_any(f.text[:MAX_WORD_CHARS]))
    _urls(urls, anchors, text_len, out)
    subj = f.subject
    _subject(subj, out)
    _body(f.text, out)
    _header_words(subj, display, out)
    return out


def _char_ids(text: str, sizes: tuple[int, ...] = (3, 4, 5),
              seed: np.uint64 = _C_SEED) -> np.ndarray:
    """Character n-grams of the given sizes, hashed (rolling polynomial + splitmix64): the
    definition of the ``c`` and ``r`` blocks' columns, which `_hashed_blocks` computes in one
    pass with the words' (tests/learn/test_features_email_fast.py)."""
    if len(text) < sizes[0]:
        return np.zeros(0, dtype=np.uint64)
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32
                       ).astype(np.uint64)
    parts = []
    h = cp ^ seed
    for n in range(2, sizes[-1] + 1):
        if len(cp) < n:
            break
        h = h[: len(cp) - n + 1] * _P + cp[n - 1:]
        if n in sizes:
            parts.append(h)
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return _mix(np.concatenate(parts)) & _MASK


def _meta_block(tokens: Counter[str]) -> tuple[list[int], list[float]]:
    """Structure (``m``) and header-word (``h``) blocks, each L2-normalised and weighted."""
    cols = list(map(_meta_col, tokens))
    counts = list(tokens.values())
    keys = [k[0] for k in tokens]
    if counts and max(counts) == 1:
        # every token once (most messages): each value is its block's scale, and a block's
        # sum of squares its count (exact: a sum of 1.0s)
        n = len(keys) - keys.count("h")
        sm = BLOCK_WEIGHTS["m"] / math.sqrt(n) if n else 0.0
        sh = BLOCK_WEIGHTS["h"] / math.sqrt(len(keys) - n) if n < len(keys) else 0.0
        return cols, [sh if k == "h" else sm for k in keys]
    vals = [1.0 + math.log(c) if c > 1 else float(c) for c in counts]
    norm = {"m": 0.0, "h": 0.0}
    for v, k in zip(vals, keys, strict=True):
        norm[k] += v * v
    scale = {k: BLOCK_WEIGHTS[k] / math.sqrt(n) if n else 0.0 for k, n in norm.items()}
    return cols, [v * scale[k] for v, k in zip(vals, keys, strict=True)]


def body_text(f: Features) -> str:
    """The text the body blocks read. For HTML-only mail `ScanContext.text` holds just the
    subject (the subject counts as a plain part), so the HTML's text is added here."""
    text = f.text
    if f.html and len(text) <= len(f.subject) + 2:
        text = text + "\n" + html_to_text(f.html[:MAX_HTML_CHARS])
    return text


def _hashed_blocks(words: list[str], ctext: str, head: str
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The word (``w``), character (``c``) and header-gram (``r``) blocks end to end, as
    `_block` of `_word_ids(words)`, of `_char_ids(ctext, (3, 4))` and of
    `_char_ids(head, (4,), _R_SEED)` each, with one hash mix and one pass of counting for all
    three (as `features._text_blocks` does for f2): the pre-mix values in one array, the
    character columns tagged with bit 19 and the header columns with bit 20, each block's run
    sorted alone (the tags keep the whole in order). Returns (columns, values, start of the
    character block, start of the header block)."""
    nw = len(words)
    nword = 2 * nw - 1 if nw else 0
    nc = len(ctext)
    nchar = (nc - 2 if nc >= 3 else 0) + (nc - 3 if nc >= 4 else 0)
    nh = len(head)
    nhead = nh - 3 if nh >= 4 else 0
    total = nword + nchar + nhead
    if not total:
        return np.zeros(0, dtype=np.int64), np.zeros(0), 0, 0
    allh = np.empty(total, dtype=np.uint64)
    if nw:
        _word_premix(words, allh[:nword])
    if nchar:
        _gram_premix(_code_points(ctext), _C_SEED, allh[nword:nword + nchar], 3)
    if nhead:
        _gram_premix(_code_points(head), _R_SEED, allh[nword + nchar:], 4)
    srt = _mix_inplace(allh).astype(np.uint32)
    srt &= _MASK32
    cend = nword + nchar
    srt[nword:cend] |= _TAG_C
    srt[cend:] |= _TAG_R
    _sort_runs(srt[:nword])
    _sort_runs(srt[nword:cend])
    _sort_runs(srt[cend:])
    uniq, v = _sorted_tf(srt)
    kc = int(uniq.searchsorted(_TAG_C)) if nword else 0
    kr = int(uniq.searchsorted(_TAG_R)) if nhead else uniq.size
    # (math.sqrt and np.sqrt are both the correctly rounded square root: the same scale)
    for lo, hi, weight in ((0, kc, BLOCK_WEIGHTS["w"]), (kc, kr, BLOCK_WEIGHTS["c"]),
                           (kr, uniq.size, BLOCK_WEIGHTS["r"])):
        if lo < hi:
            vb = v[lo:hi]
            vb *= weight / math.sqrt(vb @ vb)
    uniq &= _MASK32
    return uniq.astype(np.int64), v, kc, kr


def _code_points(text: str) -> np.ndarray:
    """The code points of `text` as uint64 (lone surrogates as themselves), as `_char_ids`."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32
                         ).astype(np.uint64)


def row(f: Features) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values) of one email; indices may repeat across blocks (summed)."""
    text = body_text(f)
    if text is not f.text:
        f = replace(f, text=text)
    text0, words = _text0_words(text[:MAX_WORD_CHARS])
    if BLOCK_WEIGHTS["r"]:
        lowered = lower_names(f.headers)
        head = "\n".join([f"{n}:{v}" for (n, v), ln in zip(f.headers, lowered, strict=True)
                          if ln in HEADER_GRAM_FIELDS])[:MAX_HEADER_CHARS].lower()
    else:
        head = ""
    cols, vals, _kc, kr = _hashed_blocks(words, text0[:MAX_CHAR_CHARS], head)
    # (`meta_tokens` takes `body_text` again: of HTML-only mail whose HTML has (almost) no
    # text, it adds that text a second time, which the structure tokens have always seen)
    mc, mv = _meta_block(meta_tokens(f))
    return (np.concatenate((cols[:kr], np.array(mc, dtype=np.int64), cols[kr:])),
            np.concatenate((vals[:kr], np.array(mv, dtype=np.float64), vals[kr:])))
