"""Caller authentication for the HTTP API.

Operators and SMSCs use API keys with scopes (`MAMORI_API__KEYS`, JSON: key -> scopes), sent as
`Authorization: Bearer KEY`. The scope `subscribers:admin` reaches every subscriber.
Keys are compared in constant time; error bodies never say which part was wrong.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, status

ADMIN_SCOPE = "subscribers:admin"


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # "key" or "subscriber"
    id: str  # a key's label (never the key) or the subscriber id
    scopes: frozenset[str]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_caller(keys: dict[str, list[str]], token: str) -> Caller | None:
    found: Caller | None = None
    for key, scopes in keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            found = Caller("key", f"key:{hmac.new(b'mamori', key.encode(), 'sha256').hexdigest()[:8]}",
                           frozenset(scopes))
    return found


def unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required",
                         headers={"WWW-Authenticate": "Bearer"})


def require_scope(scope: str) -> Callable[[Request], Coroutine[Any, Any, Caller]]:
    """A FastAPI dependency: the caller must present an API key holding `scope`."""

    async def dep(request: Request) -> Caller:
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        keys: dict[str, list[str]] = request.app.state.gateway.settings.api.keys
        caller = key_caller(keys, token)
        if caller is None:
            raise unauthorized()
        if scope not in caller.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "insufficient scope")
        return caller

    return dep
