"""Authentication (JWT HS256/RS256/ES256, API keys), authorisation (IDOR), rate limits,
body limits, security headers and CORS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.api.server import create_app
from gateway.config import Settings
from gateway.events import MemorySink
from gateway.message import Message
from gateway.runtime import Gateway

from .conftest import (
    ADMIN_KEY,
    AUDIENCE,
    JWT_SECRET,
    SMS_KEY,
    bearer,
    make_settings,
    open_gateway,
    token,
)

A = "alice-001"
B = "bob-002"


def _b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(d)).rstrip(b"=").decode()


@pytest.mark.parametrize("tok", [
    "",
    "not-a-token",
    token(A, secret="another-secret-0123456789abcdef0123456789abcdef0123456789"),
    token(A, aud="someone-else"),
    token(A, exp=time.time() - 3600),
    token(A, sub_override=True) + "x",
    # alg "none"
    _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(
        {"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 600}) + ".",
    # no exp
    jwt.encode({"sub": A, "aud": AUDIENCE}, JWT_SECRET, algorithm="HS256"),
    # a sub that is not a valid subscriber id
    jwt.encode({"sub": "a/b", "aud": AUDIENCE, "exp": int(time.time()) + 600}, JWT_SECRET,
               algorithm="HS256"),
    # HS384 is not accepted
    jwt.encode({"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 600}, JWT_SECRET,
               algorithm="HS384"),
])
async def test_bad_tokens_are_401(client: httpx.AsyncClient, tok: str) -> None:
    r = await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(tok) if tok else {})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"detail": "authentication required"}


async def test_key_without_admin_scope_is_403(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(SMS_KEY))
    assert r.status_code == 403


async def test_admin_key_reaches_everyone(client: httpx.AsyncClient) -> None:
    for sub in (A, B):
        r = await client.patch(f"/v1/subscribers/{sub}/policy", headers=bearer(ADMIN_KEY),
                               json={"youth": True})
        assert r.status_code == 200 and r.json()["subscriber"] == sub


def _write_key(tmp: Path, private: object) -> Path:
    pub = private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp / "idp.pem"
    path.write_bytes(pub)
    return path


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_public_key_tokens(settings: Settings, tmp_path: Path, alg: str,
                                 backend: str) -> None:
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    key_file = _write_key(tmp_path, private)
    s = make_settings(settings, backend, jwt_secret="", jwt_public_key_file=str(key_file))
    gw, _ = await open_gateway(s)
    try:
        app = create_app(gw)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            good = jwt.encode({"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                              private, algorithm=alg)  # type: ignore[arg-type]
            r = await c.get(f"/v1/subscribers/{A}/policy", headers=bearer(good))
            assert r.status_code == 200
            r = await c.get(f"/v1/subscribers/{B}/policy", headers=bearer(good))
            assert r.status_code == 403
            # an HS256 token cannot be verified with the public key as its secret
            signing = (_b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(
                {"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 60})).encode()
            mac = hmac.new(key_file.read_bytes(), signing, hashlib.sha256).digest()
            confused = signing.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
            r = await c.get(f"/v1/subscribers/{A}/policy", headers=bearer(confused))
            assert r.status_code == 401
            # a token from another key pair
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            forged = jwt.encode({"sub": A, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                                other, algorithm="RS256")  # type: ignore[arg-type]
            r = await c.get(f"/v1/subscribers/{A}/policy", headers=bearer(forged))
            assert r.status_code == 401
    finally:
        await gw.close()


# -- IDOR: subscriber A never reads or changes B's settings or quarantine --------------------

B_SPELLINGS = [
    B,
    "bob%2D002",  # percent-encoded hyphen: the same id, B's
    "%62ob-002",
    "BOB-002",  # another id altogether (ids are case-sensitive): still not A's
    "bob-002%20",
    "bob-002%00",
    "bob-002%2F..%2F" + A,
    A + "%2F..%2F" + B,
    "..%2F" + B,
    "%EF%BD%82ob-002",  # full-width b
    "bob-002%3B" + A,
    A + "%00",
    A + "%20",
    A + "%0A",
    "%2E%2E",
]


@pytest.fixture
async def b_state(client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]
                  ) -> tuple[dict[str, object], str]:
    gw, _ = gateway
    r = await client.put(f"/v1/subscribers/{B}/policy", headers=bearer(token(B)),
                         json={"youth": True, "allow": ["friend.example"], "block": ["+15551234"]})
    assert r.status_code == 200
    v = await gw.process(Message.sms("hello B", sender="+15551234", subscriber=B), ingress="test")
    assert v.action.blocks
    q = (await client.get(f"/v1/subscribers/{B}/quarantine", headers=bearer(token(B)))).json()
    return r.json(), q["items"][0]["message_id"]


def _a_tokens() -> list[str]:
    return [
        token(A),
        token(A, scope="subscribers:admin", scopes=["subscribers:admin"], roles=["admin"]),
        token(A, subscriber=B, subscriber_id=B, uid=B),
    ]


@pytest.mark.parametrize("spelling", B_SPELLINGS)
async def test_idor_subscriber_a_never_reaches_b(
        client: httpx.AsyncClient, b_state: tuple[dict[str, object], str], spelling: str) -> None:
    before, mid = b_state
    for tok in _a_tokens():
        h = bearer(tok)
        base = f"/v1/subscribers/{spelling}"
        calls = [
            ("GET", f"{base}/policy", None),
            ("PUT", f"{base}/policy", {"protection": False}),
            ("PATCH", f"{base}/policy", {"protection": False, "allow": ["+15551234"]}),
            ("GET", f"{base}/quarantine", None),
            ("GET", f"{base}/quarantine/{mid}", None),
            ("POST", f"{base}/quarantine/{mid}/release", None),
            ("POST", f"{base}/feedback", {"label": "fraud", "message_id": mid, "consent": True}),
            ("GET", f"/v1/subscribers/{A}/quarantine/{mid}", None),
            ("POST", f"/v1/subscribers/{A}/quarantine/{mid}/release", None),
            ("GET", f"/v1/subscribers/{A}/policy?subscriber_id={B}", None),
        ]
        for method, url, body in calls:
            r = await client.request(method, url, headers=h, json=body)
            if url.startswith(f"/v1/subscribers/{A}/") and "/quarantine/" in url:
                assert r.status_code == 404, (method, url, r.status_code)  # not A's message
                continue
            if url.startswith(f"/v1/subscribers/{A}/policy"):
                assert r.status_code == 200 and r.json()["subscriber"] == A
                continue
            assert r.status_code in (401, 403, 404, 405, 422), (method, url, r.status_code)
            # nothing of B's data (a 422 may echo the id it was given)
            for secret in ("friend.example", "+15551234", "hello B", '"youth":true'):
                assert secret not in r.text, (method, url)
    after = (await client.get(f"/v1/subscribers/{B}/policy", headers=bearer(token(B)))).json()
    assert after == before
    q = (await client.get(f"/v1/subscribers/{B}/quarantine", headers=bearer(token(B)))).json()
    assert [i["status"] for i in q["items"]] == ["held"]


async def test_idor_b_message_id_guessing(client: httpx.AsyncClient,
                                          b_state: tuple[dict[str, object], str]) -> None:
    _, mid = b_state
    h = bearer(token(A))
    for m in (mid, mid.upper(), f"{mid}%00", f"..%2F..%2F{B}%2Fquarantine%2F{mid}", "%2A", "*",
              "%25"):
        r = await client.post(f"/v1/subscribers/{A}/quarantine/{m}/release", headers=h)
        assert r.status_code in (404, 422), (m, r.status_code)
    r = await client.post(f"/v1/subscribers/{A}/feedback", headers=h,
                          json={"label": "not_fraud", "message_id": mid, "consent": True})
    assert r.status_code == 201 and r.json()["content_kept"] is False


# -- limits and headers --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_rate_limit(settings: Settings, backend: str) -> None:
    gw, _ = await open_gateway(make_settings(settings, backend, rate_limit=0.01, rate_burst=3))
    try:
        app = create_app(gw)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            codes = [(await c.get(f"/v1/subscribers/{A}/policy", headers=bearer(token(A))))
                     for _ in range(5)]
            assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
            assert int(codes[-1].headers["retry-after"]) >= 1
            # another subscriber has its own bucket
            r = await c.get(f"/v1/subscribers/{B}/policy", headers=bearer(token(B)))
            assert r.status_code == 200
            # failed authentication is limited per client address
            bad = [(await c.get(f"/v1/subscribers/{A}/policy", headers=bearer("nope"))).status_code
                   for _ in range(8)]
            assert bad[0] == 401 and bad[-1] == 429
    finally:
        await gw.close()


async def test_oversized_bodies_are_refused(client: httpx.AsyncClient) -> None:
    big = {"allow": ["a" * 200] * 400}
    r = await client.put(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)), json=big)
    assert r.status_code == 413

    async def chunks():  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b" " * 1024

    r = await client.put(f"/v1/subscribers/{A}/policy",
                         headers={**bearer(token(A)), "Content-Type": "application/json"},
                         content=chunks())
    assert r.status_code == 413
    r = await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)))
    assert r.json()["is_default"] is True


async def test_security_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/settings")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    r = await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)))
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cors(settings: Settings, backend: str) -> None:
    portal = "https://portal.carrier.example"
    gw, _ = await open_gateway(make_settings(settings, backend, cors_origins=[portal]))
    try:
        app = create_app(gw)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            pre = {"Origin": portal, "Access-Control-Request-Method": "PATCH",
                   "Access-Control-Request-Headers": "authorization, content-type"}
            r = await c.options(f"/v1/subscribers/{A}/policy", headers=pre)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == portal
            assert "PATCH" in r.headers["access-control-allow-methods"]
            r = await c.options(f"/v1/subscribers/{A}/policy",
                                headers={**pre, "Origin": "https://evil.example"})
            assert r.status_code == 400
            assert "access-control-allow-origin" not in r.headers
    finally:
        await gw.close()


async def test_settings_page_languages(client: httpx.AsyncClient) -> None:
    en = await client.get("/settings", headers={"Accept-Language": "en-GB,en;q=0.9"})
    ja = await client.get("/settings", headers={"Accept-Language": "ja-JP,ja;q=0.9"})
    assert '<html lang="en">' in en.text and "Fraud protection" in en.text
    assert '<html lang="ja">' in ja.text and "詐欺対策" in ja.text
    forced = await client.get("/settings?lang=en", headers={"Accept-Language": "ja"})
    assert '<html lang="en">' in forced.text
    js = await client.get("/settings/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text
    assert (await client.get("/settings/static/..%2Fauth.py")).status_code == 404
