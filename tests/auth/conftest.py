"""Helpers for the auth tests: run mamori's own auth checks (the pipeline code) over a
message with DNS answered from a zonedata mapping."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.checks.auth import build_auth_checks
from gateway.config import Settings, load_settings
from gateway.dns import CachingResolver, ZoneBackend
from gateway.message import Message, ScanContext
from gateway.pipeline import Pipeline
from gateway.policy import DEFAULT_POLICY, Policy
from gateway.scoring import Scores


@dataclass
class AuthRun:
    ctx: ScanContext
    symbols: dict[str, tuple[str, ...]]

    @property
    def data(self) -> dict[str, Any]:
        return self.ctx.data

    def result(self, what: str) -> Any:
        return self.ctx.data.get(f"auth.{what}")

    @property
    def header(self) -> str | None:
        return dict(self.ctx.extra_headers).get("Authentication-Results")


def zone_resolver(zonedata: dict[str, Any]) -> CachingResolver:
    return CachingResolver(ZoneBackend(zonedata))


def auth_settings(tmp: Path | None = None, **auth: Any) -> Settings:
    kw: dict[str, Any] = {"hash_key": "test-hash-key-0123456789", "auth": {"reports": False, **auth}}
    if tmp is not None:
        kw["data_dir"] = tmp
    return load_settings(**kw)


async def run_auth(
    message: Message,
    resolver: CachingResolver,
    *,
    settings: Settings | None = None,
    policy: Policy = DEFAULT_POLICY,
    events: Any = None,
) -> AuthRun:
    settings = settings or auth_settings()
    checks = build_auth_checks(settings, resolver, events=events)
    pipeline = Pipeline(checks, Scores(weights={}, thresholds={}, strength={}))
    ctx = ScanContext(message, policy, deadline=time.monotonic() + 10.0)
    await pipeline.start()
    try:
        await pipeline.run_checks(ctx)
    finally:
        await pipeline.close()
    errors = {n: r.error for n, r in ctx.results.items() if r.error}
    assert not errors, errors
    symbols = {s.name: s.options for r in ctx.results.values() for s in r.symbols}
    return AuthRun(ctx, symbols)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built by these tests never pick up the developer's MAMORI_* variables."""
    for key in list(os.environ):
        if key.startswith("MAMORI_") and key not in ("MAMORI_SHARED_DATA", "MAMORI_REQUIRE_SHARED_DATA",
                                                     "MAMORI_REQUIRE_SERVICES"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def dkim_data(shared_data: Path) -> Path:
    return shared_data / "conformance" / "dkim"
