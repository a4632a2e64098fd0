"""Opt-in shortener expansion (`MAMORI_URLS__EXPAND_SHORTENERS=true`): follows the redirects
of a shortener link with `HEAD` requests to find where it really goes.

Off by default: it puts the network on the scan path and tells the shortener that someone
looked at the link. Bounded: at most `max_hops` redirects, one overall timeout, a response
head of at most 16 KiB, results cached (LRU). Failures give None and never fail the scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

Connect = Callable[[str, int, bool], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
MAX_HEAD = 16 * 1024
USER_AGENT = "mamori-url-check/1"


async def _default_connect(host: str, port: int, tls: bool
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = ssl.create_default_context() if tls else None
    return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if tls else None)


class ShortenerExpander:
    def __init__(self, is_shortener: Callable[[str], bool], *, timeout: float = 1.5,
                 max_hops: int = 3, cache_size: int = 10_000,
                 connect: Connect | None = None) -> None:
        self.is_shortener = is_shortener
        self.timeout = timeout
        self.max_hops = max_hops
        self.cache_size = cache_size
        self.connect = connect or _default_connect
        self._cache: OrderedDict[str, str | None] = OrderedDict()

    async def expand(self, url: str) -> str | None:
        """The URL the shortener redirects to (after up to `max_hops` hops), or None."""
        if url in self._cache:
            self._cache.move_to_end(url)
            return self._cache[url]
        result: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._follow(url)
        except (TimeoutError, OSError, ValueError, ssl.SSLError):
            result = None
        self._cache[url] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    async def _follow(self, url: str) -> str | None:
        current = url
        for _ in range(self.max_hops):
            location = await self._head(current)
            if location is None:
                break
            current = urljoin(current, location)
            host = (urlsplit(current).hostname or "").lower()
            if not self.is_shortener(host):
                break
        return current if current != url else None

    async def _head(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        reader, writer = await self.connect(parts.hostname, port, tls)
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            writer.write(f"HEAD {path} HTTP/1.1\r\nHost: {parts.hostname}\r\n"
                         f"User-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n".encode("latin-1"))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return None
        except asyncio.IncompleteReadError as exc:
            head = exc.partial
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        if len(head) > MAX_HEAD:
            return None
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")
        if len(status) < 2 or not status[1].isdigit() or not 300 <= int(status[1]) < 400:
            return None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "location" and value.strip():
                return value.strip()
        return None
