"""A real mamori HTTP server (uvicorn, the app of `mamori serve`) on a loopback port, in a
thread with its own event loop: for clients that are not asyncio (schemathesis, a browser)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from gateway.api import server
from gateway.config import Settings, load_settings
from gateway.events import MemorySink
from gateway.runtime import Gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        api = settings.api.model_dump()
        api["listen"] = f"127.0.0.1:{self.port}"
        self.settings = load_settings(**{**settings.model_dump(), "api": api})
        self.gateway: Gateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gw = Gateway.create(self.settings, events=MemorySink())
        await gw.start()
        svc = await server.start(gw)
        assert svc is not None
        self.gateway = gw
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await svc.stop()
            await gw.close()

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. to quarantine a message) and wait."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("API server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
