"""API security cases the other API tests did not cover: injection payloads in every field
(stored literally, never executed, never a 500, nothing of another subscriber touched), token
claims beyond exp/aud (nbf, forged admin scopes), other ways of presenting credentials, and
hostile body shapes (deep nesting, oversized batches)."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import jwt
import pytest

from tests.api.conftest import AUDIENCE, JWT_SECRET, SMS_KEY, bearer, token

A = "alice-001"
B = "bob-002"

PAYLOADS = [
    "' OR '1'='1", "'; DROP TABLE subscriber_policy; --", "\") OR 1=1 --", "1; SELECT pg_sleep(5)",
    "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "{{7*7}}", "${jndi:ldap://x}",
    "../../etc/passwd", "%00", "\x00", "a\r\nX-Injected: 1", "\u202egnp.exe", "🙂" * 50,
    "A" * 5000, "$where: '1 == 1'", "\\", "%s%s%s%n",
]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_injection_in_policy_fields(client: httpx.AsyncClient, payload: str) -> None:
    ha, hb = bearer(token(A)), bearer(token(B))
    assert (await client.put(f"/v1/subscribers/{B}/policy", headers=hb,
                             json={"youth": True, "allow": ["+15551234"]})).status_code == 200
    before_b = (await client.get(f"/v1/subscribers/{B}/policy", headers=hb)).json()
    bodies = [{"allow": [payload]}, {"block": [payload]}, {"contacts": [payload]},
              {"strength": payload}, {"on_block": payload}, {payload: True}]
    for body in bodies:
        for method in ("PUT", "PATCH"):
            r = await client.request(method, f"/v1/subscribers/{A}/policy", headers=ha, json=body)
            assert r.status_code in (200, 422), (body, r.status_code, r.text[:200])
            assert "Traceback" not in r.text and "sqlalchemy" not in r.text.lower()
            if r.status_code == 200:  # stored literally, or normalised, never interpreted
                got = r.json()
                assert got["subscriber"] == A
    q = quote(payload, safe="")
    for path, params in ((f"/v1/subscribers/{q}/policy", None),
                         (f"/v1/subscribers/{A}/quarantine/{q}", None),
                         (f"/v1/subscribers/{A}/quarantine", {"status": payload, "before": payload})):
        r = await client.get(path, headers=ha, params=params)
        assert r.status_code in (401, 403, 404, 422), (path, r.status_code)
    r = await client.post(f"/v1/subscribers/{A}/feedback", headers=ha,
                          json={"label": "fraud", "message_id": payload, "consent": True,
                                "content": payload})
    assert r.status_code in (201, 404, 422), r.status_code
    # B untouched, the tables still there
    assert (await client.get(f"/v1/subscribers/{B}/policy", headers=hb)).json() == before_b


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_injection_in_sms_hook_fields(client: httpx.AsyncClient, payload: str) -> None:
    h = bearer(SMS_KEY)
    for field in ("sender", "recipient", "text", "subscriber", "account", "payload"):
        body: dict[str, object] = {"sender": "+819011112222", "recipient": "+818033334444",
                                   "text": "hi"}
        if field == "payload":
            body.pop("text")
        body[field] = payload
        r = await client.post("/v1/sms/check", headers=h, json=body)
        assert r.status_code in (200, 422), (field, r.status_code, r.text[:200])
        assert "Traceback" not in r.text
    r = await client.post("/v1/sms/check", headers=h, json={
        "sender": "+819011112222", "recipient": "+818033334444", "text": "hi",
        "metadata": {payload[:60]: payload}})
    assert r.status_code in (200, 422)


def _tok(**claims: object) -> str:
    base: dict[str, object] = {"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    base.update(claims)
    return jwt.encode(base, JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_token_claims_beyond_exp_and_aud(client: httpx.AsyncClient) -> None:
    future = int(time.time()) + 3600
    for tok in (_tok(nbf=future), _tok(aud=[]), _tok(aud="mamori"), _tok(sub=""),
                _tok(sub=None), _tok(exp="tomorrow"),
                jwt.encode({"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 600}, JWT_SECRET,
                           algorithm="HS256", headers={"kid": "../../../dev/null"}) + "tamper"):
        r = await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(tok))
        assert r.status_code == 401, (jwt.decode(tok, options={"verify_signature": False})
                                      if tok.count(".") == 2 and not tok.endswith("tamper")
                                      else tok, r.status_code)
    # claims that try to grant more than the subscriber's own data
    for claims in ({"scope": "subscribers:admin"}, {"scopes": ["subscribers:admin"]},
                   {"admin": True}, {"role": "operator"}, {"sub": B, "act": {"sub": A}}):
        tok = _tok(**claims)
        target = B if claims.get("sub") != B else A
        r = await client.get(f"/v1/subscribers/{target}/policy", headers=bearer(tok))
        assert r.status_code in (401, 403, 404), (claims, r.status_code)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_other_ways_of_presenting_credentials_are_refused(client: httpx.AsyncClient) -> None:
    tok = token(A)
    url = f"/v1/subscribers/{A}/policy"
    attempts = [
        {"params": {"access_token": tok}},
        {"params": {"token": tok}},
        {"headers": {"Cookie": f"token={tok}; access_token={tok}"}},
        {"headers": {"Authorization": f"Basic {tok}"}},
        {"headers": {"Authorization": tok}},
        {"headers": {"Authorization": f"Bearer  {tok}x"}},
        {"headers": {"X-Api-Key": tok}},
        {"headers": {"Authorization": "Bearer " + SMS_KEY}},  # a key without the scope
        {"headers": {"X-Forwarded-User": A, "X-Remote-User": A}},
    ]
    for kw in attempts:
        r = await client.get(url, **kw)  # type: ignore[arg-type]
        assert r.status_code in (401, 403), (kw, r.status_code)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_hostile_body_shapes(client: httpx.AsyncClient) -> None:
    h = bearer(token(A))
    deep = b"[" * 50_000 + b"]" * 50_000
    r = await client.put(f"/v1/subscribers/{A}/policy", headers={**h, "Content-Type":
                                                                  "application/json"}, content=deep)
    assert r.status_code in (413, 422), r.status_code
    r = await client.put(f"/v1/subscribers/{A}/policy", headers={**h, "Content-Type":
                                                                  "application/json"},
                         content=b'{"youth": true, "youth": false, "protection": "yes"}')
    assert r.status_code in (200, 422)
    r = await client.put(f"/v1/subscribers/{A}/policy", headers={**h, "Content-Type": "text/xml"},
                         content=b"<policy/>")
    assert r.status_code in (415, 422)
    hs = bearer(SMS_KEY)
    batch = [{"sender": "+819011112222", "recipient": "+818033334444", "text": "x"}] * 1001
    r = await client.post("/v1/sms/check-batch", headers=hs, json=batch)
    assert r.status_code in (413, 422), r.status_code
    r = await client.post("/v1/sms/check", headers=hs, json={
        "sender": "+819011112222", "recipient": "+818033334444", "text": "x" * 70_000})
    assert r.status_code in (413, 422), r.status_code
    r = await client.post("/v1/sms/check", headers={**hs, "Content-Type": "application/json"},
                          content=b'{"sender": "\\ud800", "recipient": "x", "text": "\\udfff"}')
    assert r.status_code in (200, 422), r.status_code
