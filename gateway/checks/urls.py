"""The URL check: fraud lists, lookalike domains, shorteners and disguised links.

Cheap and inline (`def run`): extraction is a few string scans when a message has no URL,
and a list lookup is one `numpy.searchsorted` over a memory-mapped index. The index is
swapped in without a restart when `mamori urls update` writes a new one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.message import Channel, ScanContext
from gateway.pipeline import Check, Stage
from gateway.urls.extract import FoundUrl, extract_urls
from gateway.urls.scan import SYMBOLS, UrlScanner
from gateway.verdict import Symbol

if TYPE_CHECKING:
    from gateway.plugins import PluginEnv

CTX_KEY = "urls.found"


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

    def run(self, ctx: ScanContext) -> list[Symbol]:
        found = found_urls(ctx)
        if not found:
            return []
        sms = ctx.channel is Channel.SMS
        return self.scanner.scan(found, text=ctx.message.text if sms else "", sms=sms)


def checks(env: PluginEnv) -> list[Check]:
    scanner = env.resources.get("urls.scanner")
    if scanner is None:
        scanner = env.resources["urls.scanner"] = UrlScanner.from_settings(env.settings)
    return [UrlCheck(scanner)]
