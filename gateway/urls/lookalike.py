"""Lookalike and impersonation detection for domains that no list has yet.

Given a host, `Lookalikes.classify(host)` answers with the strongest of:

- `official`: the host is under one of a brand's official domains (no hit);
- `homoglyph`: an IDN whose confusable skeleton (Cyrillic/Greek letters that look Latin,
  `0`->`o`, `rn`->`m`, ...) is a brand's official name (`\u0430pple.com` with a Cyrillic a, `rnercari.jp`);
- `edit-distance`: the registered name is one or two edits from a brand's official name
  (`amazom.co.jp`, `rakutenn.com`): optimal string alignment distance (a swap of two
  neighbours is one edit) to keywords of 6+ letters, one edit below 10 letters, two from 10;
- `other-tld`: the registered name is a brand's official name under a suffix the brand does
  not use (`mercari.top`);
- `brand-in-subdomain`: a brand keyword is a label of the subdomain part
  (`amazon.co.jp.evil.top`, `smbc.secure-login.com`);
- `brand-plus-word`: the registered name is a brand keyword joined with other words
  (`amazon-security-xyz.top`, `smbccard-jp.com`, `appleid-verify.net`).

Keywords of fewer than 5 letters must stand as a whole token (`jcb-card.top`, not
`ajcbx.com`); longer ones may be glued to a word from `_JOIN_WORDS` (`appleidverify`).
Brand data: `gateway/data/brands.toml`.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rapidfuzz.distance import OSA
from rapidfuzz.process import extractOne

from gateway.caches import Memo
from gateway.errors import ConfigError
from gateway.urls.domains import split_domain

# Confusables: letters of other scripts and digit/letter pairs that read as Latin letters.
_CONFUSABLE = str.maketrans({p[0]: p[1] for p in (  # (confusable, Latin letter) pairs
    "\u0430a", "\u0435e", "\u043eo", "\u0440p", "\u0441c", "\u0443y", "\u0445x", "\u0456i",
    "\u0458j", "\u0455s", "\u0501d", "\u0261g", "\u04cfl", "\u04bbh", "\u051bq", "\u051dw",
    "\u043ak", "\u043cm", "\u0442t", "\u0432b", "\u043dh", "\u043fn", "\u03bfo", "\u03b1a",
    "\u03bdv", "\u03c1p", "\u03c4t", "\u03b9i", "\u03bak", "\u03b5e", "\u03c5u", "\u03c7x",
    "\u028fy", "\u0269i", "\u0131i", "\u0142l", "\u00e1a", "\u00e0a", "\u00e2a", "\u00e4a",
    "\u00e3a", "\u00e5a", "\u00e9e", "\u00e8e", "\u00eae", "\u00ebe", "\u00edi", "\u00eci",
    "\u00eei", "\u00efi", "\u00f3o", "\u00f2o", "\u00f4o", "\u00f6o", "\u00f5o", "\u00fau",
    "\u00f9u", "\u00fbu", "\u00fcu", "\u00e7c", "\u00f1n", "\u00fdy", "0o", "1l", "3e", "5s",
    "$s", "@a",
)})
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("ii", "u"))
_TOKEN_SPLIT = re.compile(r"[-_.0-9]+")
# words that phishing domains glue to a brand name
_JOIN_WORDS = (
    "secure", "security", "login", "logon", "signin", "verify", "verification", "account",
    "accounts", "support", "update", "service", "services", "card", "cards", "jp", "japan",
    "info", "official", "member", "members", "center", "centre", "help", "pay", "payment",
    "billing", "id", "auth", "online", "web", "net", "my", "mypage", "point", "points",
    "check", "confirm", "safe", "alert", "notice", "user", "users", "co", "com", "bank",
    "apps", "app", "mail", "cs", "customer", "prime", "store", "shop", "ssl", "www", "kaiin",
    "kakunin", "riyou", "meisai", "system", "setting", "settings", "reset", "unlock",
    "recovery", "restore", "protect", "access", "portal", "home", "top", "sign", "delivery",
)
_JOIN_RE = re.compile("^(?:" + "|".join(sorted(_JOIN_WORDS, key=len, reverse=True)) + ")+$")

# a Japanese second-level suffix or .com inside the subdomain part: the host pretends to be
# another site (www.amazon.co.jp.evil.top, www.eki.co.jp-admin.evil.cn)
_FAKE_SUFFIX_RE = re.compile(r"(?:^|[.-])(?:co|ne|or|go)[.-]jp(?:$|[.-])|(?:^|[.-])com[.-](?:jp|[a-z]{3,})")
REASON_STRENGTH = {
    "homoglyph": 1.0, "edit-distance": 1.0, "other-tld": 1.0,
    "brand-in-subdomain": 0.9, "brand-plus-word": 0.85, "domain-in-subdomain": 0.8,
}


@dataclass(frozen=True, slots=True)
class Brand:
    key: str
    name: str
    names: tuple[str, ...]
    domains: tuple[str, ...]
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LookalikeHit:
    brand: str  # display name
    reason: str  # see module doc
    detail: str = ""  # the official name or keyword it resembles

    @property
    def strength(self) -> float:
        return REASON_STRENGTH.get(self.reason, 1.0)


def load_brands(extra_file: str | Path | None = None) -> list[Brand]:
    try:
        data = tomllib.loads(resources.files("gateway.data").joinpath("brands.toml")
                             .read_text("utf-8"))
        if extra_file:
            data.update(tomllib.loads(Path(extra_file).read_text("utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read brands file: {exc}") from exc
    return [_brand(k, v) for k, v in data.items()]


def _brand(key: str, v: dict[str, Any]) -> Brand:
    if not isinstance(v, dict) or not v.get("domains"):
        raise ConfigError(f"brand {key!r} needs at least one official domain")
    kws = tuple(k.lower() for k in v.get("keywords", ()) if len(k) >= 3)
    return Brand(key, str(v.get("name", key)), tuple(v.get("names", ())),
                 tuple(d.lower() for d in v["domains"]), kws)


def skeleton(s: str) -> str:
    s = s.lower().translate(_CONFUSABLE)
    for a, b in _MULTI:
        s = s.replace(a, b)
    return s


def _unpuny(host: str) -> str:
    if "xn--" not in host:
        return host
    out = []
    for lab in host.split("."):
        if lab.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                lab = lab[4:].encode("ascii").decode("punycode")
        out.append(lab)
    return ".".join(out)


class Lookalikes:
    def __init__(self, brands: Iterable[Brand], *, risky_tlds: Iterable[str] = ()) -> None:
        self.brands = list(brands)
        self.official: dict[str, Brand] = {}
        self.keywords: dict[str, Brand] = {}
        self.risky_tlds = frozenset(risky_tlds)
        self._official_names: set[str] = set()
        for b in self.brands:
            for d in b.domains:
                self.official[d] = b
                self._official_names.add(split_domain(d)[2])
            for k in b.keywords:
                self.keywords.setdefault(k, b)
        # edit distance only against distinctive keywords: short ones collide with words
        self._typo_by_len: dict[int, list[str]] = {}
        for k in self.keywords:
            if len(k) >= 6:
                self._typo_by_len.setdefault(len(k), []).append(k)
        self._skeletons = {skeleton(k): b for k, b in self.keywords.items() if len(k) >= 4}
        long_kw = sorted((k for k in self.keywords if len(k) >= 5), key=len, reverse=True)
        self._kw_re = re.compile("|".join(map(re.escape, long_kw))) if long_kw else None
        self._cached = Memo(self._classify, "gateway.urls.lookalike.Lookalikes._classify")

    @classmethod
    def default(cls, extra_file: str | Path | None = None,
                risky_tlds: Iterable[str] = ()) -> Lookalikes:
        return cls(load_brands(extra_file), risky_tlds=risky_tlds)

    def is_official(self, host: str) -> Brand | None:
        h = host
        while True:
            b = self.official.get(h)
            if b is not None:
                return b
            if "." not in h:
                return None
            h = h.split(".", 1)[1]

    def classify(self, host: str) -> LookalikeHit | None:
        """The strongest lookalike reason for a host, or None (cached: campaigns repeat)."""
        return self._cached(host.lower().rstrip("."))

    def _classify(self, host: str) -> LookalikeHit | None:
        if not host or host[0] == "[" or host.replace(".", "").isdigit():
            return None
        if self.is_official(host):
            return None
        rd, suffix, name = split_domain(host)
        sub = host[: -len(rd) - 1] if host != rd else ""
        uname = _unpuny(name)
        # 1. homoglyph: an IDN (or digit swaps) whose skeleton is a brand keyword
        sk = skeleton(uname)
        if sk != uname or uname != name:
            b = self._skeletons.get(sk)
            if b is not None:
                return LookalikeHit(b.name, "homoglyph", sk)
        # 2. a brand keyword as the name under a suffix the brand does not use; a country's
        #    own TLD is often the brand's local site (yahoo.com.au), so only generic/risky TLDs
        b = self.keywords.get(name)
        if b is not None:
            if name not in self._official_names:  # a known variant or typo (amazom, jcb-card)
                return LookalikeHit(b.name, "edit-distance", name)
            tld = suffix.rsplit(".", 1)[-1]
            if len(tld) > 2 or tld in self.risky_tlds:
                return LookalikeHit(b.name, "other-tld", name)
        # 3. one edit (two for long names) from a distinctive brand keyword
        if len(name) >= 6:
            limit = 1 if len(name) < 10 else 2
            targets = [k for n in range(len(name) - limit, len(name) + limit + 1)
                       for k in self._typo_by_len.get(n, ())]
            m = extractOne(name, targets, scorer=OSA.distance, score_cutoff=limit)
            if m is not None and m[0] != name:
                return LookalikeHit(self.keywords[m[0]].name, "edit-distance", m[0])
        # 4. a brand keyword as a label (or a token of one) of the subdomain part, or a
        #    keyword of 6+ letters inside one (paypayycas-jp.example.com)
        if sub:
            for lab in sub.split("."):
                for tok in (lab, *_TOKEN_SPLIT.split(lab)):
                    b = self.keywords.get(tok)
                    if b is not None:
                        return LookalikeHit(b.name, "brand-in-subdomain", tok)
                if self._kw_re is not None and len(lab) >= 6:
                    for km in self._kw_re.finditer(lab):
                        kw = km.group(0)
                        if len(kw) >= 6:
                            return LookalikeHit(self.keywords[kw].name, "brand-in-subdomain", kw)
            # 4b. a registrable-looking name in the subdomain (www.eki.co.jp-admin.evil.cn)
            fake = _FAKE_SUFFIX_RE.search(sub)
            if fake is not None:
                return LookalikeHit("", "domain-in-subdomain", fake.group(0).strip(".-"))
        # 5. brand keyword plus other words in the registered name
        tokens = [t for t in _TOKEN_SPLIT.split(uname) if t]
        if len(tokens) > 1:
            for t in tokens:
                b = self.keywords.get(t)
                if b is not None:
                    return LookalikeHit(b.name, "brand-plus-word", t)
        if self._kw_re is not None and name not in self.keywords:
            for km in self._kw_re.finditer(name):
                kw = km.group(0)
                rest = (name[:km.start()] + name[km.end():]).replace("-", "")
                if not rest or _JOIN_RE.match(rest):
                    return LookalikeHit(self.keywords[kw].name, "brand-plus-word", kw)
        return None

    def brands_in_text(self, text: str) -> list[Brand]:
        """Brands a message names (by their Japanese or English names)."""
        low = text.lower()
        return [b for b in self.brands if any(n.lower() in low for n in b.names if len(n) >= 3)]
