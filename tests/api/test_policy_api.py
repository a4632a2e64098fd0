"""Every endpoint against SQLite and against the real PostgreSQL (param `backend`)."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from gateway.events import MemorySink
from gateway.message import Message
from gateway.retention import Holds
from gateway.runtime import Gateway
from gateway.verdict import Action

from .conftest import ADMIN_KEY, SMS_KEY, bearer, token

A = "+819012345678"
B = "+819087654321"


def settings_events(sink: MemorySink) -> list[dict[str, object]]:
    return [e for s, _, e in sink.events if s == "settings"]


async def test_default_policy_for_unknown_subscriber(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subscriber"] == A
    assert body["is_default"] is True and body["version"] == "default"
    assert body["protection"] is True and body["on_block"] == "quarantine"
    assert body["strength"] == "standard" and body["allow"] == []


async def test_put_replaces_and_is_audited(client: httpx.AsyncClient,
                                           gateway: tuple[Gateway, MemorySink]) -> None:
    gw, sink = gateway
    r = await client.put(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)), json={
        "strength": "high", "youth": True, "block": ["+81 90-1111-2222", "Spam.Example"],
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strength"] == "high" and body["youth"] is True
    assert body["block"] == ["+819011112222", "spam.example"]
    assert body["is_default"] is False and body["version"] != "default"
    # absent fields took the defaults
    r = await client.put(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)),
                         json={"youth": True})
    assert r.json()["strength"] == "standard" and r.json()["block"] == []
    got = (await client.get(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)))).json()
    assert got["youth"] is True and got["strength"] == "standard"

    events = settings_events(sink)
    assert len(events) == 2
    first = events[0]
    assert first["action"] == "policy.put"
    assert first["subscriber"] == gw.hasher(A) and A not in orjson.dumps(first).decode()
    changes = first["changes"]
    assert isinstance(changes, dict)
    assert changes["strength"] == {"old": "standard", "new": "high"}
    assert sorted(changes["block"]["added"]) == sorted([gw.hasher("+819011112222"),
                                                        gw.hasher("spam.example")])
    assert "+819011112222" not in orjson.dumps(events).decode()
    assert gw.stores is not None
    audit = await gw.stores.audit.list(A)
    assert [a["action"] for a in audit] == ["policy.put", "policy.put"]
    assert audit[-1]["actor"] == f"subscriber:{A}" and audit[-1]["at"] <= time.time()


async def test_patch_changes_only_given_fields(client: httpx.AsyncClient,
                                               gateway: tuple[Gateway, MemorySink]) -> None:
    url = f"/v1/subscribers/{A}/policy"
    await client.put(url, headers=bearer(token(A)), json={"youth": True, "allow": ["bank.example"]})
    r = await client.patch(url, headers=bearer(token(A)), json={"block_international": True})
    assert r.status_code == 200, r.text
    assert r.json()["youth"] is True and r.json()["block_international"] is True
    assert r.json()["allow"] == ["bank.example"]
    # a no-op patch is not audited again
    n = len(settings_events(gateway[1]))
    r = await client.patch(url, headers=bearer(token(A)), json={"block_international": True})
    assert r.status_code == 200 and len(settings_events(gateway[1])) == n


@pytest.mark.parametrize("body", [
    {"protection": None},
    {"strength": "extreme"},
    {"unknown_field": True},
    {"weights": {"NO_SUCH_SYMBOL": 1.0}},
    {"weights": {"lower": 1.0}},
    {"allow": ["ok", ""]},
    {"allow": ["bad\x00entry"]},
    {"allow": ["x" * 300]},
    {"block": ["+"]},
    {"allow": [f"+8190{i:08d}" for i in range(1001)]},
])
async def test_invalid_settings_are_refused(client: httpx.AsyncClient, body: dict[str, object]
                                            ) -> None:
    url = f"/v1/subscribers/{A}/policy"
    r = await client.patch(url, headers=bearer(token(A)), json=body)
    assert r.status_code == 422, r.text
    assert "Traceback" not in r.text
    got = (await client.get(url, headers=bearer(token(A)))).json()
    assert got["is_default"] is True


async def test_known_weight_override(client: httpx.AsyncClient) -> None:
    r = await client.patch(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)),
                           json={"weights": {"POLICY_BLOCKLIST": 5.0}})
    assert r.status_code == 200 and r.json()["weights"] == {"POLICY_BLOCKLIST": 5.0}


async def test_api_change_takes_effect_on_the_scan_path(
        client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]) -> None:
    gw, _ = gateway
    msg = Message.sms("win a prize", sender="+15550001111", subscriber=A)
    assert (await gw.process(msg, ingress="test")).action is Action.ACCEPT  # now cached
    r = await client.patch(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)),
                           json={"block": ["+15550001111"]})
    assert r.status_code == 200
    v = await gw.process(Message.sms("win a prize", sender="+15550001111", subscriber=A),
                         ingress="test")
    assert v.action is Action.REJECT and "POLICY_BLOCKLIST" in v.symbols


async def block_one(client: httpx.AsyncClient, gw: Gateway, sub: str, sender: str,
                    text: str = "URGENT: your parcel is held, pay at http://bad.example") -> str:
    r = await client.patch(f"/v1/subscribers/{sub}/policy", headers=bearer(ADMIN_KEY),
                           json={"block": [sender]})
    assert r.status_code == 200, r.text
    msg = Message.sms(text, sender=sender, subscriber=sub)
    v = await gw.process(msg, ingress="test")
    assert v.action.blocks
    return msg.id


async def test_quarantine_list_get_release(client: httpx.AsyncClient,
                                           gateway: tuple[Gateway, MemorySink]) -> None:
    gw, sink = gateway
    mid = await block_one(client, gw, A, "+15550002222")
    r = await client.get(f"/v1/subscribers/{A}/quarantine", headers=bearer(token(A)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["retention_days"] == 7.0
    [item] = body["items"]
    assert item["message_id"] == mid and item["status"] == "held"
    assert item["sender"] == "+15550002222" and item["preview"].startswith("URGENT")
    assert item["reasons"][0]["symbol"] == "POLICY_BLOCKLIST"
    assert item["reasons"][0]["description"]
    assert item["expires_at"] == pytest.approx(item["stored_at"] + 7 * 86400)

    r = await client.get(f"/v1/subscribers/{A}/quarantine/{mid}", headers=bearer(token(A)))
    assert r.status_code == 200 and r.json()["message_id"] == mid
    r = await client.post(f"/v1/subscribers/{A}/quarantine/{mid}/release",
                          headers=bearer(token(A)))
    assert r.status_code == 200, r.text
    assert r.json() == {"message_id": mid, "status": "released", "redelivered": False}
    again = await client.post(f"/v1/subscribers/{A}/quarantine/{mid}/release",
                              headers=bearer(token(A)))
    assert again.status_code == 200
    released = [e for e in settings_events(sink) if e["action"] == "quarantine.release"]
    assert len(released) == 1
    r = await client.get(f"/v1/subscribers/{A}/quarantine?status=released",
                         headers=bearer(token(A)))
    assert [i["status"] for i in r.json()["items"]] == ["released"]
    r = await client.post(f"/v1/subscribers/{A}/quarantine/nope/release",
                          headers=bearer(token(A)))
    assert r.status_code == 404


async def test_release_redelivers_through_registered_channel(
        client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]) -> None:
    gw, _ = gateway
    assert gw.stores is not None
    delivered: list[Message] = []

    async def redeliver(m: Message) -> bool:
        delivered.append(m)
        return True

    gw.stores.quarantine.redeliverers["sms"] = redeliver
    mid = await block_one(client, gw, A, "+15550003333", text="hello there")
    r = await client.post(f"/v1/subscribers/{A}/quarantine/{mid}/release",
                          headers=bearer(token(A)))
    assert r.json()["redelivered"] is True
    assert [(m.id, m.body, m.subscriber) for m in delivered] == [(mid, b"hello there", A)]


async def test_drop_policy_keeps_no_copy_of_rejected(
        client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]) -> None:
    gw, _ = gateway
    await client.patch(f"/v1/subscribers/{A}/policy", headers=bearer(token(A)),
                       json={"on_block": "drop", "block": ["+15550004444"]})
    v = await gw.process(Message.sms("x", sender="+15550004444", subscriber=A), ingress="test")
    assert v.action is Action.REJECT
    r = await client.get(f"/v1/subscribers/{A}/quarantine", headers=bearer(token(A)))
    assert r.json()["items"] == []


async def test_quarantine_pagination(client: httpx.AsyncClient,
                                     gateway: tuple[Gateway, MemorySink]) -> None:
    gw, _ = gateway
    ids = [await block_one(client, gw, A, "+15550005555", text=f"m{i}") for i in range(3)]
    url = f"/v1/subscribers/{A}/quarantine"
    page1 = (await client.get(url, params={"limit": 2}, headers=bearer(token(A)))).json()
    assert len(page1["items"]) == 2 and page1["next_before"] is not None
    page2 = (await client.get(url, params={"limit": 2, "before": page1["next_before"]},
                              headers=bearer(token(A)))).json()
    seen = [i["message_id"] for i in page1["items"] + page2["items"]]
    assert sorted(seen) == sorted(ids)


async def test_feedback_with_and_without_consent(
        client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]) -> None:
    gw, sink = gateway
    mid = await block_one(client, gw, A, "+15550006666", text="your account is locked")
    url = f"/v1/subscribers/{A}/feedback"
    r = await client.post(url, headers=bearer(token(A)),
                          json={"label": "not_fraud", "message_id": mid, "consent": True})
    assert r.status_code == 201, r.text
    assert r.json()["content_kept"] is True and r.json()["consent"] is True
    r = await client.post(url, headers=bearer(token(A)),
                          json={"label": "fraud", "content": "secret text", "consent": False})
    assert r.status_code == 201 and r.json()["content_kept"] is False
    r = await client.post(url, headers=bearer(token(A)), json={"label": "maybe"})
    assert r.status_code == 422
    assert gw.stores is not None
    rows = await gw.stores.feedback.list(A)
    assert [(x["label"], x["consent"], x["has_content"]) for x in rows] == [
        ("fraud", False, False), ("not_fraud", True, True)]
    fb = [e for s, _, e in sink.events if s == "feedback"]
    assert len(fb) == 2 and all(e["subscriber"] == gw.hasher(A) for e in fb)
    assert "secret text" not in orjson.dumps(fb).decode()


async def test_operator_export_import(client: httpx.AsyncClient,
                                      gateway: tuple[Gateway, MemorySink]) -> None:
    _, sink = gateway
    lines = b"\n".join(orjson.dumps(r) for r in [
        {"subscriber": "sub-1", "youth": True},
        {"subscriber": "sub-2", "strength": "high", "block": ["+1 555 000 7777"]},
        {"subscriber": "sub-3"},
    ])
    url = "/v1/operator/policies/import"
    r = await client.post(url, content=lines, headers={**bearer(ADMIN_KEY),
                                                       "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 3, "changed": 2, "unchanged": 1, "errors": [],
                        "dry_run": False}
    r = await client.post(url, content=lines, headers=bearer(ADMIN_KEY))
    assert r.json()["changed"] == 0
    r = await client.get("/v1/operator/policies/export", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    exported = [orjson.loads(x) for x in r.content.splitlines()]
    assert [e["subscriber"] for e in exported] == ["sub-1", "sub-2"]
    assert exported[1]["block"] == ["+15550007777"]
    # the export imports back unchanged
    r = await client.post(url, content=r.content, headers=bearer(ADMIN_KEY))
    assert r.json()["changed"] == 0 and r.json()["received"] == 2
    # all or nothing
    bad = b'[{"subscriber": "sub-4", "youth": true}, {"subscriber": "bad id", "youth": true}]'
    r = await client.post(url, content=bad, headers=bearer(ADMIN_KEY))
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 2
    r = await client.get("/v1/subscribers/sub-4/policy", headers=bearer(ADMIN_KEY))
    assert r.json()["is_default"] is True
    r = await client.post(url, content=b"{not json", headers=bearer(ADMIN_KEY))
    assert r.status_code == 400
    r = await client.post(url + "?dry_run=true", content=b'{"subscriber": "sub-5", "youth": true}',
                          headers=bearer(ADMIN_KEY))
    assert r.json()["changed"] == 1 and r.json()["dry_run"] is True
    r = await client.get("/v1/subscribers/sub-5/policy", headers=bearer(ADMIN_KEY))
    assert r.json()["is_default"] is True
    imported = [e for e in settings_events(sink) if e["action"] == "policy.import"]
    assert len(imported) == 2
    r = await client.get("/v1/operator/audit", params={"subscriber": "sub-2"},
                         headers=bearer(ADMIN_KEY))
    assert r.status_code == 200
    [rec] = r.json()
    assert rec["action"] == "policy.import" and rec["actor"].startswith("key:")
    assert rec["changes"]["strength"] == {"old": "standard", "new": "high"}
    assert (await client.get("/v1/operator/audit", headers=bearer(token("sub-2")))).status_code == 403
    for who in (bearer(SMS_KEY), bearer(token("sub-1")), {}):
        assert (await client.get("/v1/operator/policies/export", headers=who)).status_code in (
            401, 403)
        assert (await client.post(url, content=lines, headers=who)).status_code in (401, 403)


async def test_retention_purges_and_respects_holds(
        client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]) -> None:
    gw, _ = gateway
    assert gw.stores is not None
    mid_a = await block_one(client, gw, A, "+15550008888")
    mid_b = await block_one(client, gw, B, "+15550008888")
    await client.post(f"/v1/subscribers/{A}/feedback", headers=bearer(token(A)),
                      json={"label": "fraud", "message_id": mid_a})
    kinds = {s.kind: s for s in gw.stores.retainables()}
    assert kinds["quarantine"] is gw.stores.quarantine
    assert {"quarantine", "feedback", "audit"} <= set(kinds)
    future = time.time() + 1
    holds = Holds(subscribers=frozenset({B}))
    assert await gw.stores.quarantine.purge(future, holds) == 1
    assert await gw.stores.feedback.purge(future, Holds(message_ids=frozenset({mid_a}))) == 0
    assert await gw.stores.feedback.purge(future, Holds()) == 1
    assert await gw.stores.audit.purge(future, holds) >= 1
    assert await gw.stores.quarantine.get(A, mid_a) is None
    assert await gw.stores.quarantine.get(B, mid_b) is not None
    assert [a["subscriber"] for a in await gw.stores.audit.list()] == [B]


async def test_expired_quarantine_is_not_retrievable_before_purge(
        client: httpx.AsyncClient, gateway: tuple[Gateway, MemorySink]) -> None:
    gw, _ = gateway
    assert gw.stores is not None
    mid = await block_one(client, gw, A, "+15550009999")
    gw.stores.quarantine.days = 0.0
    r = await client.get(f"/v1/subscribers/{A}/quarantine", headers=bearer(token(A)))
    assert r.json()["items"] == []
    r = await client.post(f"/v1/subscribers/{A}/quarantine/{mid}/release",
                          headers=bearer(token(A)))
    assert r.status_code == 404
    assert await gw.stores.quarantine.purge_expired() == 1


async def test_concurrent_releases_deliver_once(client: httpx.AsyncClient,
                                                gateway: tuple[Gateway, MemorySink]) -> None:
    import asyncio

    gw, _ = gateway
    assert gw.stores is not None
    delivered: list[str] = []

    async def slow(m: Message) -> bool:
        await asyncio.sleep(0.05)
        delivered.append(m.id)
        return True

    gw.stores.quarantine.redeliverers["sms"] = slow
    mid = await block_one(client, gw, A, "+15550001212")
    url = f"/v1/subscribers/{A}/quarantine/{mid}/release"
    rs = await asyncio.gather(*(client.post(url, headers=bearer(token(A))) for _ in range(5)))
    assert delivered == [mid]
    assert sorted(r.status_code for r in rs)[0] == 200
    assert {r.status_code for r in rs} <= {200, 409}
    assert sum(r.status_code == 200 and r.json()["redelivered"] for r in rs) == 1
