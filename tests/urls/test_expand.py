"""Opt-in shortener expansion against a local HTTP server (no outside network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.config import Settings
from gateway.events import NullSink
from gateway.message import Message
from gateway.plugins import PluginEnv
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore
from gateway.urls.expand import ShortenerExpander

REDIRECTS = {
    "/abc": "https://listed-phish.example/login",
    "/hop": "http://short.test/abc",
    "/rel": "/final-page",
}


@pytest.fixture
async def server() -> AsyncIterator[int]:
    done = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            if path == "/slow":
                await done.wait()
                return
            loc = REDIRECTS.get(path)
            if loc:
                writer.write(f"HTTP/1.1 301 Moved\r\nLocation: {loc}\r\n\r\n".encode())
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield port
    done.set()
    await asyncio.gather(*handlers, return_exceptions=True)
    srv.close()
    await srv.wait_closed()


def local(port: int):  # every host resolves to the local test server
    async def connect(host: str, _port: int, _tls: bool):
        return await asyncio.open_connection("127.0.0.1", port)
    return connect


async def test_expand_follows_hops(server: int) -> None:
    ex = ShortenerExpander(lambda h: h == "short.test", connect=local(server), timeout=2.0)
    assert await ex.expand("http://short.test/abc") == "https://listed-phish.example/login"
    assert await ex.expand("http://short.test/hop") == "https://listed-phish.example/login"
    assert await ex.expand("http://short.test/rel") == "http://short.test/final-page"
    assert await ex.expand("http://short.test/none") is None


async def test_expand_timeout_gives_none(server: int) -> None:
    ex = ShortenerExpander(lambda h: True, connect=local(server), timeout=0.2)
    assert await ex.expand("http://short.test/slow") is None


async def test_expand_unreachable_gives_none() -> None:
    async def refuse(host: str, port: int, tls: bool):
        raise ConnectionRefusedError("no")
    ex = ShortenerExpander(lambda h: True, connect=refuse)
    assert await ex.expand("http://short.test/abc") is None


async def test_gateway_with_expansion(url_settings: Settings, server: int) -> None:
    url_settings.urls.expand_shorteners = True
    url_settings.urls.extra_shorteners = ["short.test"]
    env = PluginEnv(url_settings)
    gw = Gateway.create(url_settings, env=env, events=NullSink(), policies=MemoryPolicyStore())
    env.resources["urls.expander"].connect = local(server)
    await gw.start()
    try:
        v = await gw.process(Message.sms("prize: http://short.test/abc"), ingress="test")
    finally:
        await gw.close()
    assert "URL_SHORTENER" in v.symbols
    assert "listed-phish.example" in v.symbols["URL_LISTED"].options
