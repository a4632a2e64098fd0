"""SPF without running pyspf when the cached DNS already shows no record: the same result
(and the same lookups remembered by the message) as pyspf gives, for senders, HELO names and
client addresses of every kind, after the first message warmed the cache."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.checks.auth import spf
from gateway.dns import MessageDns
from tests.auth.conftest import zone_resolver

ZONE = {
    "spf.example": [{"TXT": "v=spf1 -all"}],
    "other-txt.example": [{"TXT": "hello world"}],
    "two.example": [{"TXT": "v=spf1 -all"}, {"TXT": "v=spf1 +all"}],
    "alias.example": [{"CNAME": "nothing.example"}],
    "to-spf.example": [{"CNAME": "spf.example"}],
    "slow.example": ["TIMEOUT"],
    "a-only.example": [{"A": "192.0.2.1"}],
    "mx.sender.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "Mixed.Example": [{"TXT": "v=spf1 ?all"}],
    "old-spf.example": [{"SPF": "v=spf1 -all"}],
}
SENDERS = ["", "a@nothing.example", "<a@nothing.example>", "a@NOTHING.example.", "a@spf.example",
           "a@other-txt.example", "a@two.example", "a@alias.example", "a@to-spf.example",
           "a@slow.example", "nothing.example", "a@b@nothing.example", "@nothing.example",
           "a@", "a@x..example", "a@" + "l" * 64 + ".example", "a@\u00e9t\u00e9.example",
           "a@mixed.example", " a@nothing.example ", "a@a-only.example",
           "a@old-spf.example"]
HELOS = ["", "mx.sender.test", "nothing.example", "helo.invalid."]
IPS = ["192.0.2.10", "2001:db8::1", "::ffff:192.0.2.10", " 192.0.2.10", "not-an-ip", None]


async def _both(mail_from: str, helo: str, ip: str | None) -> None:
    resolver = zone_resolver(ZONE)
    # warm the shared cache (with a valid address: pyspf refuses others before any lookup)
    await spf.evaluate_spf(MessageDns(resolver), "192.0.2.10", mail_from, helo)
    fast_dns, slow_dns = MessageDns(resolver), MessageDns(resolver)
    fast = await spf.evaluate_spf(fast_dns, ip, mail_from, helo)
    original = spf._no_record_cached
    spf._no_record_cached = lambda *a: False  # type: ignore[assignment]
    try:
        slow = await spf.evaluate_spf(slow_dns, ip, mail_from, helo)
    finally:
        spf._no_record_cached = original  # type: ignore[assignment]
    assert fast == slow, (mail_from, helo, ip)
    assert sorted(fast_dns.known) == sorted(slow_dns.known), (mail_from, helo, ip)


@pytest.mark.parametrize("ip", IPS)
def test_same_result_as_pyspf(ip: str | None) -> None:
    async def all_cases() -> None:
        for mail_from, helo in itertools.product(SENDERS, HELOS):
            await _both(mail_from, helo, ip)

    asyncio.run(all_cases())


def test_the_shortcut_is_taken_for_a_domain_without_records() -> None:
    resolver = zone_resolver(ZONE)

    async def run() -> tuple[bool, bool]:
        cold = spf._no_record_cached(MessageDns(resolver), "192.0.2.10", "a@nothing.example", "")
        await spf.evaluate_spf(MessageDns(resolver), "192.0.2.10", "a@nothing.example", "")
        warm = spf._no_record_cached(MessageDns(resolver), "192.0.2.10", "a@nothing.example", "")
        return cold, warm

    assert asyncio.run(run()) == (False, True)


@pytest.mark.parametrize("ip", [None, "", " ", "\t", " \n"])
def test_no_address_as_ip_address_refuses_it(ip: str | None) -> None:
    """No client address (empty after strip): "none" at once, as `ipaddress.ip_address`'s
    refusal gave it."""
    import ipaddress

    with pytest.raises(ValueError):
        ipaddress.ip_address((ip or "").strip())
    res = asyncio.run(spf.evaluate_spf(MessageDns(zone_resolver(ZONE)), ip, "a@spf.example", ""))
    assert res == spf.SpfResult("none", "mailfrom", "spf.example", "no valid client IP")
