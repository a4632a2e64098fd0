"""Regression tests for crashes found by fuzzing and the security tests (each one was a bug)."""

from __future__ import annotations

import httpx

from gateway.api.server import create_app
from gateway.config import Settings
from gateway.runtime import Gateway


async def test_lone_surrogate_in_json_body_is_422_not_500(settings: Settings) -> None:
    """The 422 body echoes the input; a lone surrogate ("\\ud800") in a JSON string could not be
    encoded as UTF-8 and the error handler itself raised (HTTP 500)."""
    s = settings.model_copy(update={"api": settings.api.model_copy(
        update={"keys": {"k": ["sms:check"]}, "listen": ""})})
    gw = Gateway.create(s)
    await gw.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw)),
                                     base_url="http://t") as c:
            r = await c.post("/v1/sms/check", headers={"Authorization": "Bearer k",
                                                       "Content-Type": "application/json"},
                             content=b'{"sender": "\\ud800", "recipient": "x", "text": "\\udfff"}')
    finally:
        await gw.close()
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "sender"]
