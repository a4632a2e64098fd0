"""ASGI middleware of the HTTP server: request body limits and security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
NO_CSP_PREFIXES = ("/docs", "/redoc")  # FastAPI's interactive docs load their own scripts


class BodyLimit:
    """413 for request bodies over the limit of their path (by Content-Length up front, and by
    counting for chunked bodies). `limits` maps path prefixes to bytes; longest prefix wins;
    paths under no prefix are not limited here (their routers limit themselves)."""

    def __init__(self, app: ASGIApp, limits: dict[str, int]) -> None:
        self.app = app
        self.limits = sorted(limits.items(), key=lambda kv: -len(kv[0]))

    def _limit(self, path: str) -> int | None:
        for prefix, n in self.limits:
            if path.startswith(prefix):
                return n
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        if limit is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await _reject(send, limit)
                    return
        seen = 0
        started = False
        rejected = False

        async def counting_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    rejected = True
                    if not started:
                        await _reject(send, limit)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 went out already
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


async def _reject(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": f"request body larger than {limit} bytes"})
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        await self.app(scope, receive, with_security_headers(path, send))


def with_security_headers(path: str, send: Send) -> Send:
    """`send` adding the security headers of `path` to the response."""

    async def send_with_headers(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            headers = list(msg.get("headers", ()))
            msg["headers"] = headers + security_headers(path, {k.lower() for k, _ in headers})
        await send(msg)

    return send_with_headers


def security_headers(path: str, present: set[bytes]) -> list[tuple[bytes, bytes]]:
    """The headers a response to `path` gets, after its own (`present`: their names)."""
    extra = [h for h in SECURITY_HEADERS if h[0] not in present]
    if not path.startswith(NO_CSP_PREFIXES) and b"content-security-policy" not in present:
        csp = PAGE_CSP if path.startswith("/settings") else API_CSP
        extra.append((b"content-security-policy", csp.encode()))
    if path.startswith(("/v1/subscribers", "/v1/operator", "/settings")) \
            and b"cache-control" not in present:
        extra.append((b"cache-control", b"no-store"))
    return extra
