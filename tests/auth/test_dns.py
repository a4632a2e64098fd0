"""The DNS layer: TTL cache, negative caching, coalescing, timeouts, per-message budget,
zone files (YAML/JSON, TIMEOUT) and the replay driver for synchronous libraries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.dns import (
    Answer,
    CachingResolver,
    DnsTempError,
    MessageDns,
    SyncView,
    ZoneBackend,
    run_with_dns,
)
from gateway.errors import ConfigError


class CountingBackend:
    def __init__(self, answers: dict[tuple[str, str], Answer], *, delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.calls: list[tuple[str, str]] = []

    async def query(self, name: str, qtype: str) -> Answer:
        self.calls.append((name, qtype))
        if self.delay:
            await asyncio.sleep(self.delay)
        got = self.answers.get((name, qtype))
        if got is None:
            return Answer(name, qtype, (), nxdomain=True, ttl=60)
        return got


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def txt(name: str, value: str, ttl: float = 300) -> Answer:
    return Answer(name, "TXT", ((name, "TXT", (value.encode(),)),), ttl=ttl)


async def test_cache_honours_ttl() -> None:
    clock = Clock()
    be = CountingBackend({("a.example", "TXT"): txt("a.example", "hello", ttl=30)})
    r = CachingResolver(be, clock=clock, min_ttl=1)
    assert (await r.query("A.Example.", "TXT")).txt() == [b"hello"]
    await r.query("a.example", "TXT")
    assert len(be.calls) == 1 and r.stats.hits == 1
    clock.now += 31
    await r.query("a.example", "TXT")
    assert len(be.calls) == 2


async def test_negative_answers_are_cached_with_the_negative_ttl() -> None:
    clock = Clock()
    be = CountingBackend({})
    r = CachingResolver(be, clock=clock, min_ttl=1, negative_ttl=10)
    assert (await r.query("nx.example", "A")).nxdomain
    await r.query("nx.example", "A")
    assert len(be.calls) == 1
    clock.now += 11  # answer TTL 60, capped by negative_ttl 10
    await r.query("nx.example", "A")
    assert len(be.calls) == 2


async def test_concurrent_identical_queries_are_coalesced() -> None:
    be = CountingBackend({("a.example", "TXT"): txt("a.example", "x")}, delay=0.05)
    r = CachingResolver(be)
    got = await asyncio.gather(*(r.query("a.example", "TXT") for _ in range(20)))
    assert len(be.calls) == 1 and all(g.txt() == [b"x"] for g in got)


async def test_cache_is_bounded() -> None:
    be = CountingBackend({})
    r = CachingResolver(be, max_entries=10)
    for i in range(50):
        await r.query(f"n{i}.example", "A")
    assert len(r) == 10


async def test_timeout_is_a_temp_error_not_a_hang() -> None:
    be = CountingBackend({}, delay=5.0)
    mdns = MessageDns(CachingResolver(be), query_timeout=0.05)
    with pytest.raises(DnsTempError):
        await asyncio.wait_for(mdns.query("slow.example", "TXT"), 2.0)


async def test_backend_bug_becomes_temp_error() -> None:
    class Broken:
        async def query(self, name: str, qtype: str) -> Answer:
            raise RuntimeError("boom")

    with pytest.raises(DnsTempError):
        await CachingResolver(Broken()).query("x.example", "A")


async def test_per_message_budget() -> None:
    be = CountingBackend({})
    r = CachingResolver(be)
    mdns = MessageDns(r, max_queries=3)
    for i in range(3):
        await mdns.query(f"n{i}.example", "A")
    with pytest.raises(DnsTempError, match="budget"):
        await mdns.query("n3.example", "A")
    await mdns.query("n0.example", "A")  # already known: free
    # another message with the shared cache: cached answers do not spend its budget
    other = MessageDns(r, max_queries=1)
    for i in range(3):
        await other.query(f"n{i}.example", "A")
    assert other.queries == 0


def test_zone_semantics() -> None:
    z = ZoneBackend({
        "both.example": [{"SPF": "v=spf1 -all"}, {"A": "192.0.2.1"}],
        "txt.example": [{"SPF": "v=spf1 +all"}, {"TXT": "v=spf1 -all"}],
        "none.example": [{"SPF": "v=spf1 +all"}, {"TXT": "NONE"}],
        "partial.example": [{"A": "192.0.2.1"}, "TIMEOUT"],
        "alias.example": [{"CNAME": "both.example"}],
        "loop1.example": [{"CNAME": "loop2.example"}],
        "loop2.example": [{"CNAME": "loop1.example"}],
        "mx.example": [{"MX": [10, "Mail.Example."]}, {"AAAA": "2001:DB8::1"}],
    })

    def q(name: str, qtype: str) -> Answer:
        return asyncio.run(z.query(name, qtype))

    assert q("both.example", "TXT").txt() == [b"v=spf1 -all"]  # SPF served as TXT
    assert q("txt.example", "TXT").txt() == [b"v=spf1 -all"]  # not when TXT exists
    assert q("none.example", "TXT").txt() == []
    assert q("partial.example", "A").values() == ["192.0.2.1"]
    with pytest.raises(DnsTempError):
        q("partial.example", "MX")
    assert q("missing.example", "A").nxdomain
    with pytest.raises(DnsTempError):
        q("error.example", "A")
    ans = q("alias.example", "A")
    assert ans.values() == ["192.0.2.1"] and ans.values("CNAME") == ["both.example"]
    assert q("loop1.example", "A").values() == []
    assert q("mx.example", "MX").values() == [(10, "mail.example")]
    assert q("mx.example", "AAAA").values() == ["2001:db8::1"]


def test_zone_files(tmp_path: Path) -> None:
    y = tmp_path / "z.yml"
    y.write_text("zonedata:\n  a.example:\n    - TXT: hello\n  b.example:\n    - TIMEOUT\n")
    j = tmp_path / "z.json"
    j.write_text(json.dumps({"a.example": [{"TXT": ["hel", "lo"]}]}))
    for path in (y, j):
        z = ZoneBackend.from_file(path)
        assert asyncio.run(z.query("a.example", "TXT")).txt() == [b"hello"]
    bad = tmp_path / "bad.yml"
    for text in ("[1, 2", "- just a list\n", "a.example:\n  - BOGUS: x\n", "a.example:\n  - 42\n"):
        bad.write_text(text)
        with pytest.raises(ConfigError):
            ZoneBackend.from_file(bad)
    with pytest.raises(ConfigError):
        ZoneBackend.from_file(tmp_path / "absent.yml")


async def test_run_with_dns_replays_until_answered() -> None:
    be = CountingBackend({("a.example", "TXT"): txt("a.example", "b.example"),
                          ("b.example", "TXT"): txt("b.example", "done")})
    mdns = MessageDns(CachingResolver(be))
    runs = 0

    def compute(view: SyncView) -> bytes:
        nonlocal runs
        runs += 1
        first = view.lookup("a.example", "TXT").txt()[0].decode()
        try:
            return view.lookup(first, "TXT").txt()[0]
        except Exception:  # libraries swallow errors: the driver must still see the miss
            return b"swallowed"

    assert await run_with_dns(mdns, compute) == b"done"
    assert runs == 3
    mdns2 = MessageDns(mdns.resolver)  # warm cache, inline: one run, no queries
    runs = 0
    assert await run_with_dns(mdns2, compute) == b"done"
    assert runs == 1 and mdns2.queries == 0
    # in a worker thread the view does not touch the loop's cache: the misses are answered
    # from the cache by the driver, on the loop, still without a network query
    mdns3 = MessageDns(mdns.resolver)
    assert await run_with_dns(mdns3, compute, in_thread=True) == b"done"
    assert mdns3.queries == 0
    await mdns3.query("a.example", "TXT")
    await mdns3.query("b.example", "TXT")
    runs = 0
    assert await run_with_dns(mdns3, compute, in_thread=True) == b"done"  # prefetched: one run
    assert runs == 1


async def test_circuit_breaker_fails_fast_while_dns_is_down() -> None:
    class Down:
        calls = 0

        async def query(self, name: str, qtype: str) -> Answer:
            Down.calls += 1
            raise DnsTempError("timeout")

    clock = Clock()
    r = CachingResolver(Down(), trip_after=3, cooldown=10, clock=clock)
    for i in range(5):
        with pytest.raises(DnsTempError):
            await r.query(f"n{i}.example", "A")
    assert Down.calls == 3  # the last two never reached the backend
    clock.now += 11
    with pytest.raises(DnsTempError):
        await r.query("again.example", "A")
    assert Down.calls == 4


async def test_a_waiter_is_not_cancelled_by_the_first_askers_timeout() -> None:
    be = CountingBackend({}, delay=0.3)
    r = CachingResolver(be)
    first = MessageDns(r, query_timeout=0.05)
    second = MessageDns(r, query_timeout=2.0)
    got = await asyncio.gather(first.query("slow.example", "A"), second.query("slow.example", "A"),
                               return_exceptions=True)
    assert all(isinstance(g, DnsTempError) for g in got), got


async def test_zone_timeouts_do_not_trip_the_breaker() -> None:
    r = CachingResolver(ZoneBackend({f"t{i}.example": ["TIMEOUT"] for i in range(30)}
                                    | {"ok.example": [{"A": "192.0.2.1"}]}), trip_after=3)
    for i in range(30):
        with pytest.raises(DnsTempError):
            await r.query(f"t{i}.example", "A")
    assert (await r.query("ok.example", "A")).values() == ["192.0.2.1"]
