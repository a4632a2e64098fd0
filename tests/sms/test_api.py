"""The SMS HTTP hook and the operator's sender-ID registry endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.api.server import create_app
from gateway.config import Settings
from gateway.policy import Policy
from gateway.runtime import Gateway

KEYS = {"hook-key": ["sms:check"], "op-key": ["operator:registry"]}
HOOK = {"Authorization": "Bearer hook-key"}
OP = {"Authorization": "Bearer op-key"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    s = settings.model_copy(update={"api": settings.api.model_copy(update={"keys": KEYS})})
    gw = Gateway.create(s)
    await gw.start()
    app = create_app(gw)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        yield c, gw
    await gw.close()


async def test_auth_required_and_scoped(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    body = {"sender": "+819011112222", "recipient": "+818033334444", "text": "hi"}
    assert (await c.post("/v1/sms/check", json=body)).status_code == 401
    r = await c.post("/v1/sms/check", json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert (await c.post("/v1/sms/check", json=body, headers=OP)).status_code == 403
    assert (await c.get("/v1/operator/sender-ids", headers=HOOK)).status_code == 403


async def test_check_returns_scan_shape(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    r = await c.post("/v1/sms/check", headers=HOOK, json={
        "sender": "+819011112222", "recipient": "+818033334444", "text": "See you at 7"})
    assert r.status_code == 200
    v = r.json()
    assert {"action", "score", "symbols", "model_version", "message_id"} <= set(v)
    assert v["action"] == "accept"


async def test_payload_ucs2_and_gsm(client) -> None:  # type: ignore[no-untyped-def]
    c, gw = client
    seen = []

    async def hook(m, v, ingress):  # type: ignore[no-untyped-def]
        seen.append(m.text)

    gw.hooks.append(hook)
    jp = "お荷物のお届けにあがりましたが不在のため持ち帰りました"
    r = await c.post("/v1/sms/check", headers=HOOK, json={
        "sender": "Sagawa", "recipient": "+818033334444",
        "payload": jp.encode("utf-16-be").hex(), "data_coding": 8})
    assert r.status_code == 200
    r = await c.post("/v1/sms/check", headers=HOOK, json={
        "sender": "x", "recipient": "y", "payload": bytes([0x1B, 0x65, 0x31, 0x30]).hex()})
    assert r.status_code == 200
    assert seen == [jp, "€10"]
    r = await c.post("/v1/sms/check", headers=HOOK, json={"payload": "zz", "sender": "x"})
    assert r.status_code == 422
    r = await c.post("/v1/sms/check", headers=HOOK, json={"text": "a", "payload": "00"})
    assert r.status_code == 422


async def test_url_from_unknown_sender_with_toggle(client) -> None:  # type: ignore[no-untyped-def]
    c, gw = client
    await gw.policies.put(Policy(subscriber="+818033334444", block_url_unknown_senders=True,
                                 contacts=frozenset({"+819099998888"})))
    body = {"recipient": "+818033334444",
            "text": "Here are the photos from Saturday: https://photos.example/album/1"}
    r = await c.post("/v1/sms/check", headers=HOOK, json={**body, "sender": "+819011112222"})
    v = r.json()
    assert v["action"] in ("quarantine", "reject")  # at least quarantined (more with other hits)
    assert "SMS_URL_UNKNOWN_BLOCKED" in v["symbols"]
    r = await c.post("/v1/sms/check", headers=HOOK, json={**body, "sender": "+819099998888"})
    v = r.json()
    assert v["action"] in ("accept", "tag")  # delivered: the sender is in the address list
    assert not [s for s in v["symbols"] if s.startswith("SMS_URL_UNKNOWN")]


async def test_batch_in_order(client) -> None:  # type: ignore[no-untyped-def]
    c, _ = client
    await c.put("/v1/operator/sender-ids", headers=OP, json=[
        {"sender_id": "MyBank", "brand": "My Bank", "accounts": ["bank-route"]}])
    batch = [{"sender": "+819011112222", "recipient": "+8180", "text": "hello"},
             {"sender": "MyBank", "recipient": "+8180", "text": "verify your card",
              "sender_ton": 5},
             {"sender": "MyBank", "recipient": "+8180", "text": "Your code is 123456",
              "account": "bank-route"}]
    r = await c.post("/v1/sms/check-batch", headers=HOOK, json=batch)
    assert r.status_code == 200
    out = r.json()
    assert [v["action"] for v in out] == ["accept", "reject", "accept"]
    assert "SMS_SENDER_SPOOFED" in out[1]["symbols"]
    assert "SMS_OTP_LEGIT" in out[2]["symbols"]
    r = await c.post("/v1/sms/check-batch", headers=HOOK, json=[batch[0]] * 1001)
    assert r.status_code == 422


async def test_registry_endpoints(client) -> None:  # type: ignore[no-untyped-def]
    c, gw = client
    r = await c.put("/v1/operator/sender-ids", headers=OP, json=[
        {"sender_id": "MyBank", "brand": "My Bank", "accounts": ["a"]},
        {"sender_id": "PayCo", "brand": "PayCo", "accounts": []}])
    assert r.json() == {"count": 2}
    r = await c.put("/v1/operator/sender-ids/Sagawa", headers=OP,
                    json={"sender_id": "Sagawa", "brand": "Sagawa Express", "accounts": ["s"]})
    assert r.status_code == 200
    listed = (await c.get("/v1/operator/sender-ids", headers=OP)).json()
    assert [e["sender_id"] for e in listed] == ["MyBank", "PayCo", "Sagawa"]
    assert (await c.delete("/v1/operator/sender-ids/payco", headers=OP)).status_code == 204
    assert (await c.delete("/v1/operator/sender-ids/payco", headers=OP)).status_code == 404
    # persisted: a new registry on the same file sees it
    from gateway.sms.registry import SenderIdRegistry

    again = SenderIdRegistry(gw.settings.data_dir / "sms_registry.sqlite3")
    assert {e.sender_id for e in again.entries()} == {"MyBank", "Sagawa"}
