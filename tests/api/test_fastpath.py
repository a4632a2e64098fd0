"""The SMS hook's fast path (gateway/api/fastpath.py): the ordinary requests answered without
the framework, with the bytes the routes give; everything else answered by the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.api.server import create_app
from gateway.config import Settings
from gateway.errors import StoreError
from gateway.runtime import Gateway

KEYS = {"hook-key": ["sms:check"], "op-key": ["operator:registry"]}
HOOK = {"Authorization": "Bearer hook-key"}
HAM = {"sender": "+819011112222", "recipient": "+818033334444", "text": "See you at 7"}
FRAUD = {"sender": "+819011113333", "recipient": "+818033335555",
         "text": "Your parcel is held. Pay the fee: https://sagawa-delivery.example/p?1"}
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef"


def slow_app(gw: Gateway) -> FastAPI:
    """The app as it was: the routes answer every request."""
    app = create_app(gw)
    app.fast_path = None
    return app


class Apps:
    """The app with the fast path and one without it, on one gateway; `routed` counts the
    requests the fast path handed to the app."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.fast = create_app(gw)
        self.slow = slow_app(gw)
        assert self.fast.fast_path is not None
        self.path = self.fast.fast_path
        self.routed = 0
        inner = self.path.app

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.routed += 1
            await inner(scope, receive, send)

        self.path.app = counting

    def client(self, app: FastAPI, raise_errors: bool = True) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors,
                                        client=("10.1.2.3", 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    async def both(self, method: str, url: str, **kw: Any) -> tuple[httpx.Response, httpx.Response]:
        async with self.client(self.fast) as f, self.client(self.slow) as s:
            return (await f.request(method, url, **kw), await s.request(method, url, **kw))


def _settings(settings: Settings, **api: Any) -> Settings:
    conf = {"keys": KEYS, **api}
    return settings.model_copy(update={"api": settings.api.model_copy(update=conf)})


@pytest.fixture
async def apps(settings: Settings) -> AsyncIterator[Apps]:
    gw = Gateway.create(_settings(settings, jwt_secret=JWT_SECRET, jwt_audience="mamori-test"))
    await gw.start()
    yield Apps(gw)
    await gw.close()


def same_answer(fast: httpx.Response, slow: httpx.Response) -> None:
    """The same status, headers (names, values, order) and body; a verdict's `message_id`
    is new each time."""
    assert fast.status_code == slow.status_code
    assert fast.headers.raw == slow.headers.raw
    if fast.status_code == 200:
        f, s = fast.json(), slow.json()
        for a, b in zip(f if isinstance(f, list) else [f], s if isinstance(s, list) else [s],
                        strict=True):
            assert a.pop("message_id") != b.pop("message_id")
            assert a == b
    else:
        assert fast.content == slow.content


async def test_ordinary_check_is_answered_by_the_fast_path(apps: Apps) -> None:
    for body in (HAM, FRAUD, {**HAM, "text": "お荷物のお届けにあがりました"},
                 {**HAM, "text": None, "payload": "48656c6c6f", "data_coding": 0,
                  "sender_ton": 5, "account": "route-7", "metadata": {"a": "b"}}):
        fast, slow = await apps.both("POST", "/v1/sms/check", json=body, headers=HOOK)
        assert fast.status_code == 200
        same_answer(fast, slow)
    assert apps.routed == 0
    assert fast.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


async def test_ordinary_batch_is_answered_by_the_fast_path(apps: Apps) -> None:
    fast, slow = await apps.both("POST", "/v1/sms/check-batch", json=[HAM, FRAUD, HAM],
                                 headers=HOOK)
    assert fast.status_code == 200
    assert [v["action"] for v in fast.json()] == [v["action"] for v in slow.json()]
    same_answer(fast, slow)
    assert apps.routed == 0


async def test_the_message_is_the_routes_message(apps: Apps) -> None:
    seen: list[tuple[str, Any]] = []

    async def hook(m: Any, v: Any, ingress: str) -> None:
        seen.append((ingress, (m.body, m.sender, m.recipients, m.subscriber, m.peer,
                             dict(m.protocol))))

    apps.gw.hooks.append(hook)
    body = {**HAM, "sender_ton": 5, "sender_npi": 0, "metadata": {"k" * 40: "v" * 300}}
    await apps.both("POST", "/v1/sms/check", json=body, headers=HOOK)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0][1][4].ip == "10.1.2.3"


def _sub_token() -> str:
    import jwt

    return jwt.encode({"sub": "s1", "aud": "mamori-test", "exp": 2**33}, JWT_SECRET,
                      algorithm="HS256")


JSON_HOOK = {**HOOK, "content-type": "application/json"}
CHECK, BATCH = "/v1/sms/check", "/v1/sms/check-batch"
# case -> (method, url, request arguments); the default: an ordinary check with the hook key
OTHER_REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "no auth": ("POST", CHECK, {"json": HAM}),
    "unknown key": ("POST", CHECK, {"json": HAM,
                                    "headers": {"Authorization": "Bearer hook-kez"}}),
    "other scope": ("POST", CHECK, {"json": HAM, "headers": {"Authorization": "Bearer op-key"}}),
    "subscriber jwt": ("POST", CHECK, {"json": HAM, "headers": {"Authorization": "JWT"}}),
    "basic auth": ("POST", CHECK, {"json": HAM,
                                   "headers": {"Authorization": "Basic aG9vay1rZXk6"}}),
    "bad json": ("POST", CHECK, {"content": b'{"text": "a",', "headers": JSON_HOOK}),
    "empty body": ("POST", CHECK, {"content": b"", "headers": JSON_HOOK}),
    "no body field": ("POST", CHECK, {"json": {"sender": "x"}, "headers": HOOK}),
    "both bodies": ("POST", CHECK, {"json": {"text": "a", "payload": "00"}, "headers": HOOK}),
    "text too long": ("POST", CHECK, {"json": {**HAM, "text": "x" * (64 * 1024 + 1)},
                                      "headers": HOOK}),
    "bad hex": ("POST", CHECK, {"json": {**HAM, "text": None, "payload": "zz"},
                                "headers": HOOK}),
    "wrong type": ("POST", CHECK, {"json": {**HAM, "data_coding": "eight"}, "headers": HOOK}),
    "not an object": ("POST", CHECK, {"json": [HAM], "headers": HOOK}),
    "text/plain": ("POST", CHECK, {"content": b'{"text": "a"}',
                                   "headers": {**HOOK, "content-type": "text/plain"}}),
    "no content type": ("POST", CHECK, {"content": b'{"text": "a"}', "headers": HOOK}),
    "bad metadata": ("POST", CHECK, {"json": {**HAM, "metadata": {str(i): "v" for i in range(33)}},
                                     "headers": HOOK}),
    "get": ("GET", CHECK, {"headers": HOOK}),
    "trailing slash": ("POST", CHECK + "/", {"json": HAM, "headers": HOOK}),
    "batch not a list": ("POST", BATCH, {"json": HAM, "headers": HOOK}),
    "batch too long": ("POST", BATCH, {"json": [HAM] * 1001, "headers": HOOK}),
    "batch bad item": ("POST", BATCH, {"json": [HAM, {"text": 5}], "headers": HOOK}),
}


@pytest.mark.parametrize("case", sorted(OTHER_REQUESTS))
async def test_other_requests_get_the_routes_answer(apps: Apps, case: str) -> None:
    method, url, kw = OTHER_REQUESTS[case]
    if case == "subscriber jwt":
        kw = {**kw, "headers": {"Authorization": f"Bearer {_sub_token()}"}}
    fast, slow = await apps.both(method, url, **kw)
    assert fast.status_code in (401, 403, 404, 405, 307, 422), fast.text
    same_answer(fast, slow)
    assert apps.routed == 1


async def test_oversize_body_is_the_routes_413(apps: Apps) -> None:
    big = {**HAM, "text": "x" * (apps.gw.settings.limits.sms_body_max + 10)}
    fast, slow = await apps.both("POST", "/v1/sms/check", json=big, headers=HOOK)
    assert fast.status_code == 413
    same_answer(fast, slow)
    assert apps.routed == 1


async def test_chunked_oversize_body_is_replayed_to_the_routes(apps: Apps) -> None:
    limit = apps.gw.settings.limits.sms_body_max

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    headers = {**HOOK, "content-type": "application/json"}
    async with apps.client(apps.fast) as c:
        r = await c.post("/v1/sms/check", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert r.json() == {"detail": f"request body larger than {limit} bytes"}
    assert apps.routed == 1


async def test_chunked_ordinary_body_is_read_whole(apps: Apps) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"sender": "+819011112222", '
        yield b'"text": "See you at 7"}'

    headers = {**HOOK, "content-type": "application/json"}
    async with apps.client(apps.fast) as c:
        r = await c.post("/v1/sms/check", content=chunks(), headers=headers)
    assert r.status_code == 200 and r.json()["action"] == "accept"
    assert apps.routed == 0


async def test_rate_limit_takes_one_token_per_request(settings: Settings) -> None:
    gw = Gateway.create(_settings(settings, rate_limit=0.001, rate_burst=2))
    await gw.start()
    try:
        apps = Apps(gw)
        async with apps.client(apps.fast) as c:
            codes = [(await c.post("/v1/sms/check", json=HAM, headers=HOOK)).status_code
                     for _ in range(3)]
            limited = await c.post("/v1/sms/check", json=HAM, headers=HOOK)
        assert codes == [200, 200, 429]
        assert apps.routed == 2  # the 429s are the routes' answer
        assert limited.json() == {"detail": "rate limit exceeded"}
        assert int(limited.headers["retry-after"]) >= 1
        # an invalid request is refused before the limiter: it takes no token
        gw2 = Gateway.create(_settings(settings, rate_limit=0.001, rate_burst=1))
        await gw2.start()
        try:
            apps2 = Apps(gw2)
            async with apps2.client(apps2.fast) as c:
                assert (await c.post("/v1/sms/check", json={"sender": "x"},
                                     headers=HOOK)).status_code == 422
                # the route's validation ran after its auth (which took the token)
                assert (await c.post("/v1/sms/check", json=HAM,
                                     headers=HOOK)).status_code == 429
        finally:
            await gw2.close()
    finally:
        await gw.close()


async def test_store_failure_is_a_503_with_the_security_headers(
        apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(*a: Any, **kw: Any) -> Any:
        raise StoreError("quarantine down")

    monkeypatch.setattr(apps.gw, "process", failing)
    monkeypatch.setattr(apps.gw, "process_many", failing)
    for url, body in (("/v1/sms/check", HAM), ("/v1/sms/check-batch", [HAM])):
        fast, slow = await apps.both("POST", url, json=body, headers=HOOK)
        assert fast.status_code == 503
        assert fast.headers["retry-after"] == "5"
        same_answer(fast, slow)
    assert apps.routed == 0


async def test_unexpected_failure_is_the_frameworks_500(
        apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(apps.gw, "process", broken)
    async with apps.client(apps.fast, raise_errors=False) as f, \
            apps.client(apps.slow, raise_errors=False) as s:
        fast = await f.post("/v1/sms/check", json=HAM, headers=HOOK)
        slow = await s.post("/v1/sms/check", json=HAM, headers=HOOK)
    assert fast.status_code == 500 and fast.text == "Internal Server Error"
    same_answer(fast, slow)


async def test_cors_requests_go_to_the_routes(settings: Settings) -> None:
    gw = Gateway.create(_settings(settings, cors_origins=["https://portal.example"]))
    await gw.start()
    try:
        apps = Apps(gw)
        headers = {**HOOK, "Origin": "https://portal.example"}
        fast, slow = await apps.both("POST", "/v1/sms/check", json=HAM, headers=headers)
        assert fast.headers["access-control-allow-origin"] == "https://portal.example"
        same_answer(fast, slow)
        assert apps.routed == 1
        fast, slow = await apps.both("POST", "/v1/sms/check", json=HAM, headers=HOOK)
        same_answer(fast, slow)
        assert apps.routed == 1
    finally:
        await gw.close()


async def test_routes_stay_in_the_openapi_document(apps: Apps) -> None:
    paths = apps.fast.openapi()["paths"]
    assert "post" in paths["/v1/sms/check"] and "post" in paths["/v1/sms/check-batch"]
    assert apps.fast.openapi() == apps.slow.openapi()


async def test_api_key_lookup_matches_the_keys(settings: Settings) -> None:
    from gateway.api.auth import Authenticator

    keys = {"k1": ["sms:check"], "k2": ["subscribers:admin", "sms:check"], "k1 ": ["x"]}
    auth = Authenticator(_settings(settings, keys=keys).api)
    for key, scopes in keys.items():
        caller = auth.key_caller(key)
        assert caller is not None and caller.scopes == frozenset(scopes)
        assert caller.id.startswith("key:") and key not in caller.id
    for other in ("k", "k3", "K1", "k1  ", ""):
        assert auth.key_caller(other) is None
    assert auth.key_caller("k1").id != auth.key_caller("k2").id  # type: ignore[union-attr]


# -- micro-batching of single SMS ------------------------------------------------------------


def _spy(apps: Apps, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records the gateway's calls: ("process", 1) or ("process_many", n)."""
    calls: list[tuple[str, int]] = []
    process, process_many = apps.gw.process, apps.gw.process_many

    async def one(msg: Any, ingress: str, policy: Any = None) -> Any:
        calls.append(("process", 1))
        return await process(msg, ingress, policy)

    async def many(msgs: Any, ingress: str, on_verdict: Any = None) -> Any:
        calls.append(("process_many", len(msgs)))
        return await process_many(msgs, ingress, on_verdict)

    monkeypatch.setattr(apps.gw, "process", one)
    monkeypatch.setattr(apps.gw, "process_many", many)
    return calls


async def test_concurrent_checks_are_judged_together_each_answered_its_own(
        apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    calls = _spy(apps, monkeypatch)
    sent: dict[str, str] = {}  # message id -> text of that message

    async def hook(m: Any, v: Any, ingress: str) -> None:
        sent[m.id] = m.body.decode()

    apps.gw.hooks.append(hook)
    bodies = [{**b, "text": f"{b['text']} {i}"}
              for i, b in enumerate([FRAUD, HAM, HAM] * 4)]
    async with apps.client(apps.fast) as c:
        answers = await asyncio.gather(*(c.post("/v1/sms/check", json=b, headers=HOOK)
                                         for b in bodies))
    assert calls == [("process_many", 12)]
    assert apps.routed == 0
    for body, r in zip(bodies, answers, strict=True):
        assert r.status_code == 200
        v = r.json()
        assert sent[v["message_id"]] == body["text"]  # its own verdict
        assert ("sagawa" in str(v["symbols"])) == ("sagawa" in body["text"])
    # the same verdicts as one at a time
    async with apps.client(apps.slow) as c:
        alone = [(await c.post("/v1/sms/check", json=b, headers=HOOK)).json() for b in bodies[:3]]
    assert [a["action"] for a in alone] == [r.json()["action"] for r in answers[:3]]


async def test_a_check_alone_is_judged_alone(apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(apps, monkeypatch)
    async with apps.client(apps.fast) as c:
        for _ in range(3):
            assert (await c.post("/v1/sms/check", json=HAM, headers=HOOK)).status_code == 200
    assert calls == [("process", 1)] * 3


async def test_a_failed_verdict_fails_only_its_own_request(
        apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    process = apps.gw.process

    async def many(msgs: Any, ingress: str, on_verdict: Any = None) -> Any:
        failed = False
        for i, m in enumerate(msgs):
            if b"store-me" in m.body:
                failed = True
                continue
            on_verdict(i, await process(m, ingress))
        if failed:
            raise StoreError("quarantine down")

    monkeypatch.setattr(apps.gw, "process_many", many)
    bodies = [{**HAM, "text": "store-me" if i == 2 else f"hello {i}"} for i in range(5)]
    async with apps.client(apps.fast) as c:
        answers = await asyncio.gather(*(c.post("/v1/sms/check", json=b, headers=HOOK)
                                         for b in bodies))
    assert [r.status_code for r in answers] == [200, 200, 503, 200, 200]
    assert answers[2].json() == {"detail": "store unavailable, retry later"}


class FakeGateway:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def process(self, msg: Any, ingress: str) -> str:
        self.batches.append([msg])
        return f"v-{msg}"

    async def process_many(self, msgs: list[Any], ingress: str, on_verdict: Any) -> None:
        import asyncio

        self.batches.append(list(msgs))
        for i, m in enumerate(msgs):
            await asyncio.sleep(0)
            on_verdict(i, f"v-{m}")


async def test_batcher_a_cancelled_request_does_not_cancel_its_neighbours() -> None:
    import asyncio

    from gateway.api.fastpath import MicroBatcher

    gw = FakeGateway()
    b = MicroBatcher(gw)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(b.verdict(m)) for m in ("a", "b", "c")]  # type: ignore[arg-type]
    await asyncio.sleep(0)  # all three joined the first one's batch
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == ["v-b", "v-c"]
    assert gw.batches == [["a", "b", "c"]]
    # the next turn starts a new batch
    assert await asyncio.gather(b.verdict("d"), b.verdict("e")) == ["v-d", "v-e"]  # type: ignore[arg-type]
    assert gw.batches[-1] == ["d", "e"]


# -- over real sockets (uvicorn with httptools, as `mamori serve` runs it) -------------------


def _request(body: bytes, path: bytes = b"/v1/sms/check") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer hook-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path, len(body), body))


async def _answer(reader: Any) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return int(head[9:12]), await reader.readexactly(length)


async def test_concurrent_connections_each_get_their_own_verdict(settings: Settings) -> None:
    import asyncio
    import threading

    import orjson

    from tests.api.server_thread import ServerThread

    with ServerThread(_settings(settings)) as srv:
        gw = srv.gateway
        assert gw is not None
        sent: dict[str, bytes] = {}
        sizes: list[int] = []
        many = gw.process_many

        async def hook(m: Any, v: Any, ingress: str) -> None:
            sent[m.id] = m.body

        async def spy(msgs: Any, ingress: str, on_verdict: Any = None) -> Any:
            sizes.append(len(msgs))
            return await many(msgs, ingress, on_verdict)

        gw.hooks.append(hook)
        gw.process_many = spy  # type: ignore[method-assign]
        conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(16)]
        for rnd in range(3):
            texts = [f"{'See you at 7' if i % 2 else FRAUD['text']} #{rnd}-{i}".encode()
                     for i in range(len(conns))]
            # the server's loop held while every connection sends: one poll reads them all
            held, release = threading.Event(), threading.Event()

            def hold(held: threading.Event, release: threading.Event) -> None:
                held.set()
                release.wait(10)

            assert srv.loop is not None
            srv.loop.call_soon_threadsafe(hold, held, release)
            assert held.wait(10)
            for (_, w), text in zip(conns, texts, strict=True):
                w.write(_request(orjson.dumps({**HAM, "text": text.decode()})))
                await w.drain()
            await asyncio.sleep(0.05)  # on the wire
            release.set()
            for (r, _), text in zip(conns, texts, strict=True):
                status, body = await _answer(r)
                assert status == 200
                assert sent[orjson.loads(body)["message_id"]] == text
        assert max(sizes) >= 8  # requests that arrived together were judged together
        # an error answered by the routes, then the same connection goes on
        r, w = conns[0]
        w.write(_request(b'{"text": '))
        status, body = await _answer(r)
        assert status == 422 and orjson.loads(body)["detail"][0]["type"] == "json_invalid"
        w.write(_request(orjson.dumps([HAM, FRAUD]), b"/v1/sms/check-batch"))
        status, body = await _answer(r)
        assert status == 200 and len(orjson.loads(body)) == 2
        for _, w in conns:
            w.close()
        assert len(sent) == 3 * 16 + 2


async def test_a_bad_auth_configuration_is_the_routes_error(settings: Settings) -> None:
    gw = Gateway.create(_settings(settings, jwt_secret="short"))
    await gw.start()
    try:
        apps = Apps(gw)
        async with apps.client(apps.fast, raise_errors=False) as f, \
                apps.client(apps.slow, raise_errors=False) as s:
            fast = await f.post("/v1/sms/check", json=HAM, headers=HOOK)
            slow = await s.post("/v1/sms/check", json=HAM, headers=HOOK)
        assert fast.status_code == 500
        same_answer(fast, slow)
        assert apps.routed == 1
    finally:
        await gw.close()
