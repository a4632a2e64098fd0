"""Fixtures of the API tests: a gateway on SQLite or on the real PostgreSQL
(scripts/services/postgresql.sh, MAMORI_TEST_POSTGRES_URL), an ASGI client, tokens."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text

from gateway.api.server import create_app
from gateway.config import Settings, load_settings
from gateway.events import MemorySink
from gateway.runtime import Gateway
from tests.conftest import service_env

JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789"
SMS_KEY = "sms-key-0123456789"
AUDIENCE = "mamori-test"
# read at import: the `settings` fixture clears MAMORI_* variables from the environment
PG_URL_AT_IMPORT = os.environ.get("MAMORI_TEST_POSTGRES_URL", "")
TABLES = ("subscriber_policy", "policy_changes", "quarantine", "feedback", "audit")


def token(sub: str, *, secret: str = JWT_SECRET, aud: str = AUDIENCE, exp: float | None = None,
          alg: str = "HS256", **claims: Any) -> str:
    payload = {"sub": sub, "aud": aud, "exp": int(exp if exp is not None else time.time() + 600),
               **claims}
    return jwt.encode(payload, secret, algorithm=alg)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the test cluster for this session, dropped afterwards."""
    base = PG_URL_AT_IMPORT or service_env("MAMORI_TEST_POSTGRES_URL")
    import asyncpg

    name = f"mamori_test_{uuid.uuid4().hex[:10]}"
    admin = base.rsplit("/", 1)[0] + "/postgres"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + "/" + name
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return ""


def make_settings(settings: Settings, store_url: str, **api: Any) -> Settings:
    api_conf = {"keys": {ADMIN_KEY: ["subscribers:admin"], SMS_KEY: ["sms:check"]},
                "jwt_secret": JWT_SECRET, "jwt_audience": AUDIENCE, "listen": "",
                **api}
    return load_settings(data_dir=settings.data_dir, hash_key="test-hash-key-0123456789",
                         api=api_conf, store={"url": store_url})


async def open_gateway(s: Settings) -> tuple[Gateway, MemorySink]:
    sink = MemorySink()
    gw = Gateway.create(s, events=sink)
    assert gw.stores is not None
    engine = await gw.stores.db.ready()
    if gw.stores.db.dialect == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    return gw, sink


@pytest.fixture
async def gateway(settings: Settings, backend: str) -> AsyncIterator[tuple[Gateway, MemorySink]]:
    gw, sink = await open_gateway(make_settings(settings, backend))
    yield gw, sink
    await gw.close()


@pytest.fixture
async def client(gateway: tuple[Gateway, MemorySink]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as c:
        yield c


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    return settings.data_dir
