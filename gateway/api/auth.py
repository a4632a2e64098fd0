"""Caller authentication and authorisation for the HTTP API.

- Operators and SMSCs: API keys with scopes (`MAMORI_API__KEYS`, JSON: key -> scopes), sent as
  `Authorization: Bearer KEY`. The scope `subscribers:admin` reaches every subscriber.
- Subscribers: JWTs from the carrier's identity provider, `Authorization: Bearer JWT`, verified
  with `MAMORI_API__JWT_SECRET` (HS256) or `MAMORI_API__JWT_PUBLIC_KEY_FILE` (RS256/ES256), with
  the audience `MAMORI_API__JWT_AUDIENCE` (and the issuer `MAMORI_API__JWT_ISSUER` when set),
  `exp` required; the subscriber id is the `sub` claim. A subscriber token only ever reaches
  its own subscriber id: no claim in it can widen that.

Keys are compared in constant time; error bodies never say which part was wrong. Every
authenticated caller is rate limited (token bucket per caller); failed attempts are rate
limited per client address.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from fastapi import HTTPException, Request, status
from fastapi import Path as PathParam

from gateway import limits
from gateway.api.ratelimit import RateLimiter
from gateway.config import ApiSettings
from gateway.errors import ConfigError

ADMIN_SCOPE = "subscribers:admin"

# The error answers every authenticated endpoint may give, for the OpenAPI schema.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed request body"},
    401: {"description": "no or invalid credentials"},
    403: {"description": "the caller may not reach this resource"},
    413: {"description": "request body too large"},
    422: {"description": "invalid settings or parameters"},
    429: {"description": "rate limit exceeded"},
    503: {"description": "store unavailable, retry later"},
}
# subscriber ids: ASCII only (no look-alikes, no case folding, no normalisation): the id in a
# path is compared byte for byte with the token's `sub`
SUBSCRIBER_ID_RE = re.compile(r"^[A-Za-z0-9+@._:-]{1,128}$")
SUBSCRIBER_ID_PATTERN = SUBSCRIBER_ID_RE.pattern
JWT_LEEWAY = 30.0
MIN_HS256_SECRET = 32


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # "key" or "subscriber"
    id: str  # a key's label (never the key) or the subscriber id
    scopes: frozenset[str]

    @property
    def label(self) -> str:
        """Who, for the audit record."""
        return f"subscriber:{self.id}" if self.kind == "subscriber" else self.id

    @property
    def is_admin(self) -> bool:
        return self.kind == "key" and ADMIN_SCOPE in self.scopes


def bearer_token(request: Request) -> str | None:
    return bearer_of(request.headers.get("authorization", ""))


def bearer_of(header: str) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header value."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_label(key: str) -> str:
    return f"key:{hmac.new(b'mamori', key.encode(), 'sha256').hexdigest()[:8]}"


class Authenticator:
    """Built once per app from the API settings."""

    def __init__(self, api: ApiSettings) -> None:
        self.keys = api.keys
        self.audience = api.jwt_audience
        self.issuer = api.jwt_issuer or None
        self.secret = api.jwt_secret or None
        if self.secret is not None and len(self.secret.encode()) < MIN_HS256_SECRET:
            raise ConfigError(f"MAMORI_API__JWT_SECRET must be at least {MIN_HS256_SECRET} bytes "
                              "(RFC 7518 3.2)")
        self.public_key: str | None = None
        if api.jwt_public_key_file:
            try:
                self.public_key = Path(api.jwt_public_key_file).read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read MAMORI_API__JWT_PUBLIC_KEY_FILE: {exc}") from exc
        # the callers of the API keys, by a keyed digest of the key: a token is looked up with
        # one HMAC (no loop over the keys, no label computed per request); the time a look-up
        # takes says nothing about the keys, whose digests an attacker cannot know
        self._digest_key = os.urandom(32)
        self._key_callers = {self._digest(key): Caller("key", key_label(key), frozenset(scopes))
                             for key, scopes in self.keys.items()}
        keys = limits.current().client_state_max  # callers tracked (LRU): MAMORI_LIMITS__CLIENT_STATE_MAX
        self.limiter = RateLimiter(api.rate_limit, api.rate_burst, maxkeys=keys)
        self.fail_limiter = RateLimiter(max(api.rate_limit / 4, 1.0), max(api.rate_burst // 2, 5),
                                        maxkeys=keys)

    def _digest(self, token: str) -> bytes:
        return hmac.digest(self._digest_key, token.encode(), "sha256")

    def key_caller(self, token: str) -> Caller | None:
        """The caller of the API key equal to `token`, or None."""
        return self._key_callers.get(self._digest(token))

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.secret or self.public_key)

    def jwt_caller(self, token: str) -> Caller | None:
        if not self.jwt_enabled or token.count(".") != 2:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.secret:
            key = self.secret
        elif alg in ("RS256", "ES256") and self.public_key:
            key = self.public_key
        else:  # "none", HS256 without a secret, an algorithm we do not accept: refused
            return None
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=JWT_LEEWAY, options={"require": ["exp", "sub", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not SUBSCRIBER_ID_RE.match(sub):
            return None
        return Caller("subscriber", sub, frozenset())

    def authenticate(self, request: Request) -> Caller:
        client = request.client.host if request.client else "-"
        token = bearer_token(request)
        caller = None
        if token is not None and len(token) <= 8192:
            caller = self.jwt_caller(token) or self.key_caller(token)
        if caller is None:
            wait = self.fail_limiter.take(f"fail:{client}")
            if wait:
                raise too_many(wait)
            raise unauthorized()
        wait = self.limiter.take(f"{caller.kind}:{caller.id}")
        if wait:
            raise too_many(wait)
        return caller


def authenticator(request: Request) -> Authenticator:
    return authenticator_of(request.app.state)


def authenticator_of(state: Any) -> Authenticator:
    """The app's Authenticator (`app.state`), built on first use."""
    auth: Authenticator | None = getattr(state, "authenticator", None)
    if auth is None:
        auth = Authenticator(state.gateway.settings.api)
        state.authenticator = auth
    return auth


def unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required",
                         headers={"WWW-Authenticate": "Bearer"})


def forbidden() -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, "not allowed for this subscriber")


def too_many(wait: float) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                         headers={"Retry-After": str(max(1, int(wait + 0.999)))})


def require_scope(scope: str) -> Callable[[Request], Coroutine[Any, Any, Caller]]:
    """A FastAPI dependency: the caller must present an API key holding `scope`."""

    async def dep(request: Request) -> Caller:
        caller = authenticator(request).authenticate(request)
        if caller.kind != "key":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "insufficient scope")
        if scope not in caller.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "insufficient scope")
        return caller

    return dep


async def subscriber_access(
    request: Request,
    subscriber_id: str = PathParam(..., min_length=1, max_length=128,
                                   pattern=SUBSCRIBER_ID_PATTERN),
) -> Caller:
    """A FastAPI dependency for /v1/subscribers/{subscriber_id}/...: the subscriber's own
    token, or an API key with `subscribers:admin`. Anything else: 403, whoever the id names."""
    caller = authenticator(request).authenticate(request)
    if caller.kind == "subscriber":
        if not hmac.compare_digest(caller.id.encode(), subscriber_id.encode()):
            raise forbidden()
        return caller
    if caller.is_admin:
        return caller
    raise forbidden()
