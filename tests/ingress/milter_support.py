"""Helpers shared by the milter unit, adversarial and end-to-end tests: a gateway with the real
pipeline plus a test-only check whose verdict a header chooses, a capturing verdict hook, and
the `milter_rig` fixture (test modules import it: `from .milter_support import milter_rig as
milter_rig`, which keeps tests/ingress free of a conftest.py other ingresses would share)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.checks.structure import EmailStructureCheck
from gateway.config import Settings
from gateway.events import MemorySink
from gateway.ingress.milter import MilterService
from gateway.message import Channel, Message, ScanContext
from gateway.pipeline import Check, Pipeline, PolicyListsCheck, Stage
from gateway.plugins import PluginEnv
from gateway.policy import Policy
from gateway.privacy import PartyHasher
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore
from gateway.verdict import Symbol, SymbolSpec, Verdict
from tests.conftest import MemoryQuarantine as SharedMemoryQuarantine

# X-Test-Verdict: tag | quarantine | reject | slow | gate | authres
TEST_HEADER = "X-Test-Verdict"


class HeaderVerdictCheck(Check):
    """Test-only: scores the message by its X-Test-Verdict header (weights vs. the shipped
    thresholds: tag 5, quarantine 9, reject 12)."""

    name = "test_header_verdict"
    stage = Stage.NORMAL
    channels = frozenset({Channel.EMAIL})
    symbols = (
        SymbolSpec("TEST_TAG", "test", "test: tag me", 6.0),
        SymbolSpec("TEST_QUARANTINE", "test", "test: quarantine me", 10.0),
        SymbolSpec("TEST_REJECT", "test", "test: reject me", 20.0),
    )
    timeout = 30.0

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = 0
        self.runs = 0

    async def run(self, ctx: ScanContext) -> list[Symbol]:
        self.runs += 1
        value = ctx.message.header(TEST_HEADER).strip().lower()
        if value == "slow":
            await asyncio.sleep(5)
        if value == "gate":
            self.entered += 1
            await self.gate.wait()
        if value == "authres":  # what the auth checks do: a header for the ingress to add
            ctx.extra_headers.append(("Authentication-Results", "mx.example.test; spf=pass"))
        sym = {"tag": "TEST_TAG", "quarantine": "TEST_QUARANTINE", "reject": "TEST_REJECT"}.get(value)
        return [Symbol(sym)] if sym else []


class FailingPolicyStore(MemoryPolicyStore):
    """Raises for one subscriber: mamori itself failing (default_action applies)."""

    BROKEN = "broken@example.test"

    async def get(self, subscriber: str | None) -> Policy:
        if subscriber == self.BROKEN:
            raise RuntimeError("store down")
        return await super().get(subscriber)


class MemoryQuarantine(SharedMemoryQuarantine):
    """The shared test quarantine store (gw.quarantine), which can be made to fail."""

    broken = False

    async def add(self, message: object, verdict: object, ingress: str) -> None:
        if self.broken:
            raise OSError("quarantine disk full")
        await super().add(message, verdict, ingress)


@dataclass
class Captured:
    verdicts: list[tuple[Message, Verdict, str]] = field(default_factory=list)

    async def __call__(self, message: Message, verdict: Verdict, ingress: str) -> None:
        self.verdicts.append((message, verdict, ingress))


def make_gateway(settings: Settings) -> tuple[Gateway, HeaderVerdictCheck, Captured]:
    check = HeaderVerdictCheck()
    pipeline = Pipeline([PolicyListsCheck(), EmailStructureCheck(), check], deadline=10.0,
                        check_timeout=10.0)
    gw = Gateway(settings, pipeline, FailingPolicyStore(), MemorySink(),
                 PartyHasher(b"test-hash-key-0123456789"), PluginEnv(settings))
    gw.quarantine = MemoryQuarantine()
    captured = Captured()
    gw.hooks.append(captured)
    return gw, check, captured


HAM_HEADERS = [
    ("From", "Alice <alice@sender.test>"),
    ("To", "bob@example.test"),
    ("Subject", "lunch on friday"),
    ("Date", "Thu, 26 Nov 2026 05:00:00 +0000"),
    ("Message-ID", "<ham-1@sender.test>"),
]
HAM_BODY = b"Hi Bob,\r\n\r\nlunch on Friday at noon?\r\n\r\nAlice\r\n"


def with_verdict(value: str) -> list[tuple[str, str]]:
    return [*HAM_HEADERS, (TEST_HEADER, value)]


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
