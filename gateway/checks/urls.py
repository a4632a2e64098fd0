"""The URL check: fraud lists, lookalike domains, shorteners and disguised links.

Cheap and inline (`def run`): extraction is a few string scans when a message has no URL,
and a list lookup is one `numpy.searchsorted` over a memory-mapped index. The index is
swapped in without a restart when `mamori urls update` writes a new one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.message import FOUND_URLS_KEY, Channel, ScanContext
from gateway.pipeline import Check, Stage
from gateway.urls.canon import UrlError, canonicalize
from gateway.urls.expand import ShortenerExpander
from gateway.urls.extract import FoundUrl, extract_urls
from gateway.urls.scan import SYMBOLS, UrlScanner
from gateway.verdict import Symbol

if TYPE_CHECKING:
    from gateway.plugins import PluginEnv

CTX_KEY = FOUND_URLS_KEY


def found_urls(ctx: ScanContext) -> list[FoundUrl]:
    """The message's URLs with their evasions, extracted once per message."""
    found: list[FoundUrl] | None = ctx.data.get(CTX_KEY)
    if found is None:
        plain, html = ctx.text_parts
        found = extract_urls(plain, html=html)
        ctx.data[CTX_KEY] = found
    return found


class UrlCheck(Check):
    name = "urls"
    stage = Stage.NORMAL
    symbols = SYMBOLS

    def __init__(self, scanner: UrlScanner) -> None:
        self.scanner = scanner

    async def start(self) -> None:
        self.scanner.holder.current()  # map the index now, not on the first message

    def run(self, ctx: ScanContext) -> list[Symbol]:
        found = found_urls(ctx)
        if not found:
            return []
        sms = ctx.channel is Channel.SMS
        return self.scanner.scan(found, text=ctx.message.text if sms else "", sms=sms)


class ExpandingUrlCheck(UrlCheck):
    """The URL check with opt-in shortener expansion (network): an async check, so that the
    redirects are followed under the check's timeout without blocking the loop."""

    def __init__(self, scanner: UrlScanner, expander: ShortenerExpander) -> None:
        super().__init__(scanner)
        self.expander = expander
        self.timeout = expander.timeout + 0.5

    async def run(self, ctx: ScanContext) -> list[Symbol]:  # type: ignore[override]
        found = found_urls(ctx)
        if not found:
            return []
        short = [f for f in found if self.scanner.is_shortener(f.host)][:5]
        if short:
            targets = await asyncio.gather(*(self.expander.expand(f.url) for f in short))
            extra = [FoundUrl(t, "expanded") for t in targets if t]
            found = found + [e for e in (_refound(x) for x in extra) if e is not None]
        sms = ctx.channel is Channel.SMS
        return self.scanner.scan(found, text=ctx.message.text if sms else "", sms=sms)


def _refound(f: FoundUrl) -> FoundUrl | None:
    try:
        c = canonicalize(f.url)
    except UrlError:
        return None
    return FoundUrl(c.url, "expanded", c.host, (), "", c)


def checks(env: PluginEnv) -> list[Check]:
    scanner = env.resources.get("urls.scanner")
    if scanner is None:
        scanner = env.resources["urls.scanner"] = UrlScanner.from_settings(env.settings)
    s = env.settings.urls
    if s.expand_shorteners:
        expander = env.resources.get("urls.expander") or ShortenerExpander(
            scanner.is_shortener, timeout=s.expand_timeout)
        env.resources["urls.expander"] = expander
        return [ExpandingUrlCheck(scanner, expander)]
    return [UrlCheck(scanner)]
