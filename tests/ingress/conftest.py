"""Fixtures of the ingress tests: a milter service on loopback around a test gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from milter_support import Captured, HeaderVerdictCheck, make_gateway

from gateway.config import Settings
from gateway.ingress.milter import MilterService
from gateway.runtime import Gateway


@dataclass
class MilterRig:
    service: MilterService
    gw: Gateway
    check: HeaderVerdictCheck
    captured: Captured

    @property
    def address(self) -> str:
        return self.service.address


RigFactory = Callable[..., Any]


@pytest.fixture
def milter_rig(settings: Settings) -> RigFactory:
    """`async with milter_rig(timeout=..., ...) as rig:` a started milter with those settings."""

    @asynccontextmanager
    async def factory(**milter: Any) -> AsyncIterator[MilterRig]:
        ms = settings.milter.model_copy(update={"listen": "127.0.0.1:0", **milter})
        s = settings.model_copy(update={"milter": ms})
        gw, check, captured = make_gateway(s)
        await gw.start()
        service = MilterService(gw)
        await service.start()
        try:
            yield MilterRig(service, gw, check, captured)
        finally:
            check.gate.set()
            await service.stop()
            await gw.close()

    return factory
