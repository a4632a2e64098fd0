"""Shared fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    return Path(os.environ.get("MAMORI_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def require_env(flag: str) -> bool:
    return os.environ.get(flag, "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; skipped when absent, a failure when MAMORI_REQUIRE_SHARED_DATA=1."""
    path = shared_data_dir()
    if not path.is_dir():
        if require_env("MAMORI_REQUIRE_SHARED_DATA"):
            pytest.fail(f"shared data folder {path} is missing (MAMORI_REQUIRE_SHARED_DATA=1)")
        pytest.skip(f"shared data folder {path} is absent")
    return path


def service_env(name: str) -> str:
    """The address of a real peer started by scripts/services (e.g. MAMORI_TEST_KAFKA).
    Skipped when unset; a failure when MAMORI_REQUIRE_SERVICES=1 (as in `make test`)."""
    value = os.environ.get(name, "")
    if not value:
        if require_env("MAMORI_REQUIRE_SERVICES"):
            pytest.fail(f"{name} is not set but MAMORI_REQUIRE_SERVICES=1: the service did not start")
        pytest.skip(f"{name} not set: real peer not running (make test starts it)")
    return value


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings isolated from the environment, with a temporary data dir."""
    for key in list(os.environ):
        if key.startswith("MAMORI_") and key not in ("MAMORI_SHARED_DATA",):
            monkeypatch.delenv(key, raising=False)
    yield load_settings(data_dir=tmp_path / "data", hash_key="test-hash-key-0123456789")


class MemoryQuarantine:
    """A quarantine store for tests: keeps (message, verdict) pairs."""

    def __init__(self) -> None:
        self.items: list[tuple[object, object]] = []

    async def add(self, message: object, verdict: object, ingress: str) -> None:
        self.items.append((message, verdict))
