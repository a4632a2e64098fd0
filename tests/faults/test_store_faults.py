"""Fault: PostgreSQL down or slow (a fault proxy in front of the real server,
scripts/services/postgresql.sh, MAMORI_TEST_POSTGRES_URL). Scanning goes on: a subscriber seen
before keeps their cached policy, one never seen gets the default policy
(MAMORI_STORE__POLICY_FALLBACK=default); nothing accepted is lost; the API answers 503 while the
store is away and recovers by itself when it returns."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.api.server import create_app
from gateway.config import Settings
from gateway.errors import StoreError
from gateway.ingress import smtp as smtp_ingress
from gateway.policy import DEFAULT_POLICY, Policy
from gateway.runtime import Gateway
from gateway.store.policy import CachedPolicyStore
from tests.api.conftest import bearer, make_settings, postgres_url, token  # noqa: F401
from tests.faults.proxy import FaultProxy
from tests.faults.support import Sink, smtp_send


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def fallbacks() -> float:
    return REGISTRY.get_sample_value("mamori_policy_fallbacks_total") or 0.0


@pytest.mark.e2e
async def test_postgres_down_or_slow_scanning_goes_on_api_503(settings: Settings,
                                                              postgres_url: str) -> None:  # noqa: F811
    u = urlsplit(postgres_url)
    proxy = await FaultProxy(u.hostname or "127.0.0.1", u.port or 5432).start()
    s = make_settings(settings, via(postgres_url, proxy.port))
    with Sink() as sink:
        s = s.model_copy(update={
            "smtp": s.smtp.model_copy(update={"listen": "127.0.0.1:0",
                                              "next_hop": f"127.0.0.1:{sink.port}"}),
            "store": s.store.model_copy(update={"policy_timeout": 0.5, "policy_cache_ttl": 0.2}),
        })
        gw = Gateway.create(s)
        await gw.start()
        svc = await smtp_ingress.start(gw)
        assert svc is not None and gw.stores is not None
        app = create_app(gw)
        seen = "user@example.test"
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://t") as api:
                auth = bearer(token(seen))
                r = await api.put(f"/v1/subscribers/{seen}/policy", headers=auth,
                                  json={"strength": "low"})
                assert r.status_code == 200, r.text
                assert (await smtp_send(svc.port, 0))[0] == 250  # cached from now on
                # two subscribers with a stored policy that this replica has not cached
                for other in ("stored@example.test", "stored-slow@example.test"):
                    r = await api.put(f"/v1/subscribers/{other}/policy",
                                      headers=bearer(token(other)), json={"youth": True})
                    assert r.status_code == 200, r.text
                    gw.stores.policies.invalidate(other)

                await proxy.set("down")
                before = fallbacks()
                codes = [(await smtp_send(svc.port, i))[0] for i in range(1, 6)]
                assert codes == [250] * 5  # the seen subscriber: cached policy
                assert gw.stores.policies.cached(seen) is not None
                # a subscriber never seen (nothing stored): the default policy from memory
                p = await gw.policy_for("never-seen@example.test")
                assert p == Policy().for_subscriber("never-seen@example.test")
                assert fallbacks() == before
                # a stored but uncached one while the store is down: the default, counted
                p = await gw.policy_for("stored@example.test")
                assert p == Policy().for_subscriber("stored@example.test")
                assert fallbacks() == before + 1
                r = await api.get(f"/v1/subscribers/{seen}/policy", headers=auth)
                assert r.status_code == 503
                assert "traceback" not in r.text.lower()

                await proxy.set("slow", delay=3.0)  # slower than policy_timeout
                p = await asyncio.wait_for(gw.policy_for("stored-slow@example.test"), 10)
                assert p == Policy().for_subscriber("stored-slow@example.test")
                assert fallbacks() == before + 2
                assert (await smtp_send(svc.port, 6))[0] == 250

                await proxy.set("pass")
                for _ in range(50):  # the pool reconnects by itself
                    r = await api.get(f"/v1/subscribers/{seen}/policy", headers=auth)
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
                assert r.status_code == 200
                assert r.json()["strength"] == "low"
        finally:
            await svc.stop()
            await gw.close()
            await proxy.stop()
        assert len(sink.messages) == 7  # every 250 reached the next hop


class FlakyStore:
    """A policy store that is down (raises StoreError) or slow (sleeps) on demand."""

    def __init__(self) -> None:
        self.mode = "up"
        self.reads = 0

    async def get(self, subscriber: str | None) -> Policy:
        self.reads += 1
        if self.mode == "down":
            raise StoreError("down")
        if self.mode == "slow":
            await asyncio.sleep(5)
        return Policy(subscriber=subscriber, youth=True)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["down", "slow"])
async def test_policy_fallback_and_tempfail_without_a_database(mode: str) -> None:
    inner = FlakyStore()
    fallback = CachedPolicyStore(inner, ttl=0.0, poll_interval=0, timeout=0.2, fallback=True)
    strict = CachedPolicyStore(inner, ttl=0.0, poll_interval=0, timeout=0.2, fallback=False)
    inner.mode = mode
    try:
        before = fallbacks()
        p = await fallback.get("new-one")
        assert p == DEFAULT_POLICY.for_subscriber("new-one") and fallbacks() == before + 1
        with pytest.raises(StoreError):  # MAMORI_STORE__POLICY_FALLBACK=tempfail
            await strict.get("new-one")
        inner.mode = "up"  # the store is back: the stale default entry is refreshed
        await fallback.get("new-one")
        for _ in range(20):
            await asyncio.sleep(0.05)
            if fallback.cached("new-one") == Policy(subscriber="new-one", youth=True):
                break
        assert fallback.cached("new-one") == Policy(subscriber="new-one", youth=True)
    finally:
        await fallback.close()
        await strict.close()
