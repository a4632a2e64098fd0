"""What the URL check and `mamori urls check` share: URLs in, symbols out.

`UrlScanner.scan(found, text=..., sms=...)` looks every extracted URL up in the index
(block and allow lists), classifies its host for lookalikes, shorteners, risky TLDs, numeric
hosts, disguise and HTML href/text mismatch, and returns one `Symbol` per symbol name with
options that explain the hit: the URL's host, then `list:NAME`, `brand:NAME`,
`reason:REASON`. Never the whole URL (it may carry a subscriber's token or number).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.urls.canon import UrlError, canonicalize
from gateway.urls.domains import registered_domain
from gateway.urls.extract import FoundUrl
from gateway.urls.index import INDEX_NAME, IndexHolder, UrlIndex, urls_dir
from gateway.urls.lookalike import Lookalikes
from gateway.verdict import Symbol, SymbolSpec

GROUP = "urls"
MAX_OPTIONS = 6

SYMBOLS = (
    SymbolSpec("URL_LISTED", GROUP, "a URL is on a fraud, phishing or malware list"),
    SymbolSpec("URL_LOOKALIKE", GROUP,
               "a URL's domain imitates a brand's (edit distance, homoglyphs, another TLD)"),
    SymbolSpec("URL_BRAND_ABUSE", GROUP,
               "a URL's domain uses a brand name it does not own (in a subdomain or with other words)"),
    SymbolSpec("URL_HREF_MISMATCH", GROUP, "an HTML link shows one site but goes to another"),
    SymbolSpec("URL_BRAND_TEXT", GROUP,
               "an SMS names a brand and links to a domain the brand does not use"),
    SymbolSpec("URL_SHORTENER", GROUP, "a URL shortener hides where the link goes"),
    SymbolSpec("URL_RISKY_TLD", GROUP, "a URL is under a TLD much abused for fraud"),
    SymbolSpec("URL_OBFUSCATED", GROUP,
               "a URL is disguised (defanged, zero-width or full-width characters, split, encoded)"),
    SymbolSpec("URL_IP_HOST", GROUP, "a URL's host is a numeric IP address"),
    SymbolSpec("URL_ALLOWLISTED", GROUP, "a URL is on an allow list"),
)
SYMBOL_NAMES = frozenset(s.name for s in SYMBOLS)
_DISGUISES = frozenset({"defanged", "zero-width", "fullwidth", "split", "entity", "percent"})


@lru_cache(maxsize=1)
def url_data() -> dict[str, Any]:
    return tomllib.loads(resources.files("gateway.data").joinpath("urls.toml").read_text("utf-8"))


def default_index_path(settings: Settings) -> Path:
    if settings.urls.index_file:
        return Path(settings.urls.index_file)
    return urls_dir(settings.data_dir) / INDEX_NAME


@dataclass
class _Acc:
    factor: float = 0.0
    options: list[str] = field(default_factory=list)

    def add(self, factor: float, *opts: str) -> None:
        self.factor = max(self.factor, factor)
        for o in opts:
            if o and o not in self.options and len(self.options) < MAX_OPTIONS:
                self.options.append(o)


class UrlScanner:
    def __init__(self, holder: IndexHolder, *, lookalikes: Lookalikes | None,
                 shorteners: Iterable[str] = (), risky_tlds: Iterable[str] = ()) -> None:
        self.holder = holder
        self.lookalikes = lookalikes
        self.shorteners = frozenset(s.lower() for s in shorteners)
        self.risky_tlds = frozenset(t.lower() for t in risky_tlds)
        self._brand_re: re.Pattern[str] | None = None
        self._brand_by_name: dict[str, Any] = {}
        if lookalikes is not None:
            names = {n: b for b in lookalikes.brands for n in b.names if len(n) >= 3}
            self._brand_by_name = names
            if names:
                self._brand_re = re.compile(
                    "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlScanner:
        data = url_data()
        holder = IndexHolder(default_index_path(settings),
                             interval=settings.urls.reload_interval)
        look = (Lookalikes.default(settings.urls.brands_file or None,
                                   risky_tlds=data["risky_tlds"])
                if settings.urls.lookalike else None)
        return cls(holder, lookalikes=look,
                   shorteners=[*data["shorteners"], *settings.urls.extra_shorteners],
                   risky_tlds=data["risky_tlds"])

    @property
    def index(self) -> UrlIndex:
        return self.holder.current()

    def is_shortener(self, host: str) -> bool:
        return host in self.shorteners or (
            host.startswith("www.") and host[4:] in self.shorteners)

    def scan(self, found: Sequence[FoundUrl], *, text: str = "", sms: bool = False) -> list[Symbol]:
        if not found:
            return []
        index = self.holder.current()
        acc: dict[str, _Acc] = {}

        def hit(name: str, factor: float, *opts: str) -> None:
            acc.setdefault(name, _Acc()).add(factor, *opts)

        unofficial: list[str] = []
        for f in found:
            c = f.canonical
            if c is None:
                try:
                    c = canonicalize(f.url)
                except UrlError:
                    continue
            host = c.host
            listed = index.lookup_url(c) if len(index) else []
            if any(h.kind == "allow" for h in listed):
                hit("URL_ALLOWLISTED", 1.0, host,
                    *(f"list:{h.list}" for h in listed if h.kind == "allow"))
                continue
            for h in listed:
                hit("URL_LISTED", 1.0, host, f"list:{h.list}",
                    f"brand:{h.label}" if h.label else "")
            if f.display_host:
                hit("URL_HREF_MISMATCH", 1.0, host, f"shown:{f.display_host}")
            if c.is_ip:
                hit("URL_IP_HOST", 1.0, host)
            disguises = [e for e in f.evasions if e in _DISGUISES]
            if disguises:
                hit("URL_OBFUSCATED", 1.0, host, *(f"reason:{d}" for d in disguises))
            if self.is_shortener(host):
                hit("URL_SHORTENER", 1.0, host)
                continue
            official = False
            if self.lookalikes is not None and not c.is_ip:
                official = self.lookalikes.is_official(host) is not None
                la = None if official else self.lookalikes.classify(host)
                if la is not None:
                    name = ("URL_LOOKALIKE" if la.reason in ("homoglyph", "edit-distance",
                                                             "other-tld") else "URL_BRAND_ABUSE")
                    hit(name, la.strength, host, f"brand:{la.brand}" if la.brand else "",
                        f"reason:{la.reason}")
            tld = host.rsplit(".", 1)[-1]
            if not c.is_ip and tld in self.risky_tlds:
                hit("URL_RISKY_TLD", 1.0, host)
            if not official and not listed:
                unofficial.append(host)
        if sms and unofficial and self._brand_re is not None and text:
            m = self._brand_re.search(text)
            if m is not None:
                brand = self._brand_by_name[m.group(0)]
                host = unofficial[0]
                if registered_domain(host) not in brand.domains:
                    hit("URL_BRAND_TEXT", 1.0, host, f"brand:{brand.name}")
        return [Symbol(name, round(a.factor, 3), tuple(a.options)) for name, a in acc.items()]


def url_weights(settings: Settings) -> dict[str, float]:
    """The weights of the URL symbols, as the pipeline would configure them (shipped
    scores.toml, then MAMORI_PIPELINE__SCORES_FILE, then MAMORI_PIPELINE__WEIGHTS)."""
    docs = [tomllib.loads(resources.files("gateway.data").joinpath("scores.toml")
                          .read_text("utf-8"))]
    if settings.pipeline.scores_file:
        docs.append(tomllib.loads(Path(settings.pipeline.scores_file).read_text("utf-8")))
    weights: dict[str, float] = {s.name: float(s.weight or 0.0) for s in SYMBOLS}
    for d in docs:
        for k, v in d.get("symbols", {}).items():
            if k in weights:
                weights[k] = float(v)
    for k, v in settings.pipeline.weights.items():
        if k in weights:
            weights[k] = float(v)
    return weights
