"""`mamori serve`: start the gateway runtime and every ingress whose listen address is set."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
from typing import Protocol

from gateway.cli import module_exists
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.workers import worker_index

log = logging.getLogger("mamori.serve")


class Service(Protocol):
    name: str

    async def stop(self) -> None: ...


# Each module exposes `async def start(gw: Gateway) -> Service | None` (None: switched off).
INGRESS_MODULES = (
    "gateway.api.server",
    "gateway.ingress.smtp",
    "gateway.ingress.milter",
    "gateway.ingress.smpp",
    "gateway.retention",  # the scheduled purge
)
SINGLETON_MODULES = frozenset({"gateway.retention"})


async def run(settings: Settings, *, ready: asyncio.Event | None = None,
              stop: asyncio.Event | None = None) -> None:
    gw = Gateway.create(settings)
    await gw.start()
    services: list[Service] = []
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for modname in INGRESS_MODULES:
            if not module_exists(modname):
                continue  # this build does not have that ingress
            if modname in SINGLETON_MODULES and worker_index() != 0:
                continue  # with MAMORI_WORKERS, one process runs the scheduled jobs
            mod = importlib.import_module(modname)
            svc = await mod.start(gw)
            if svc is not None:
                services.append(svc)
        # the start-up objects (models, lists, modules) live as long as the process: out of the
        # collector's generations, a full collection walks only what serving allocates (a
        # pause of tens of ms otherwise, in the p99 of every ingress)
        gc.freeze()
        log.info("mamori serving", extra={"services": [s.name for s in services]})
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        log.info("mamori stopping")
        for svc in reversed(services):
            try:
                await svc.stop()
            except Exception:
                log.exception("service %s failed to stop", svc.name)
        await gw.close()
        gc.unfreeze()  # what this run kept is collectable again (a run inside a longer process)
