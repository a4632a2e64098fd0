"""SMS checks: sender-ID spoofing against the operator's registry, international origin,
URL-bearing messages from unknown senders, floods and bursts, and protection of one-time
passwords from legitimate senders. All cheap and inline except the Redis flood counter.

Wire metadata they read from `Message.protocol` (set by the SMPP proxy and the HTTP hook):
`ton`, `npi` (of the originator), `system_id` (the ESME account) or `account` (the HTTP
caller or route), `parts` (segments of a reassembled long SMS).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.message import Channel, ScanContext
from gateway.pipeline import Check, Stage
from gateway.policy import list_matches
from gateway.sms.flood import MemoryCounter, RedisCounter, text_fingerprint
from gateway.sms.registry import SenderIdRegistry, registry_for
from gateway.sms.sender import SenderType, country_code, is_foreign, sender_type
from gateway.verdict import Symbol, SymbolSpec

if TYPE_CHECKING:
    from gateway.plugins import PluginEnv

SMS_ONLY = frozenset({Channel.SMS})

# one-time passwords: a 4-8 digit code near a code word (English and Japanese)
_OTP_WORDS = re.compile(
    r"(\b(otp|one[- ]time|passcode|verification|verify|security code|auth(entication)? code|"
    r"2fa|login code|code)\b|認証|確認コード|ワンタイム|パスワード|暗証|コード)", re.I)
_OTP_CODE = re.compile(r"(?<![\d/.:-])\d{4,8}(?![\d/.:-])")


def looks_like_otp(text: str) -> bool:
    return len(text) <= 400 and bool(_OTP_CODE.search(text)) and bool(_OTP_WORDS.search(text))


_SENDER_TYPE_VALUE = {t: t.value for t in SenderType}


def account_of(protocol: Any) -> str:
    """The route a message came over: the ESME system_id, or the HTTP caller's account."""
    return str(protocol.get("system_id") or protocol.get("account") or protocol.get("route") or "")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class SmsSenderCheck(Check):
    """Who sent it: sender type, registry (spoofing and look-alikes), international origin,
    and whether a one-time password comes from its legitimate sender."""

    name = "sms_sender"
    stage = Stage.PRE
    channels = SMS_ONLY
    symbols = (
        SymbolSpec("SMS_SENDER_SPOOFED", "sms_sender",
                   "a registered brand sender ID arrived over a route not registered for it", 8.0),
        SymbolSpec("SMS_SENDER_LOOKALIKE", "sms_sender",
                   "the sender ID imitates a registered brand sender ID", 7.0),
        SymbolSpec("SMS_SPOOF_BLOCKED", "sms_sender",
                   "spoofed sender and the subscriber blocks spoofed senders", 5.0),
        SymbolSpec("SMS_SENDER_REGISTERED", "sms_sender",
                   "a registered brand sender ID over one of its registered routes", -2.0),
        SymbolSpec("SMS_INTERNATIONAL", "sms_sender", "the sender is a foreign number", 0.5),
        SymbolSpec("SMS_INTERNATIONAL_BLOCKED", "sms_sender",
                   "foreign sender and the subscriber blocks international SMS", 10.0),
        SymbolSpec("SMS_OTP_LEGIT", "sms_sender",
                   "a one-time password from its registered or allowed sender", -6.0),
    )

    def __init__(self, registry: SenderIdRegistry, home_country_code: str) -> None:
        self.registry = registry
        self.home = home_country_code

    def run(self, ctx: ScanContext) -> list[Symbol]:
        m = ctx.message
        proto = m.protocol
        ton = _int(proto.get("ton"))
        stype = sender_type(m.sender, ton)
        ctx.data["sms.sender_type"] = _SENDER_TYPE_VALUE[stype]  # (`.value` is a call)
        out: list[Symbol] = []
        legit = False
        spoofed = False
        match = self.registry.lookup(m.sender)
        if match is not None:
            acct = account_of(proto)
            e = match.entry
            if not match.exact:
                spoofed = True
                out.append(Symbol("SMS_SENDER_LOOKALIKE", 1.0, (e.brand, e.sender_id)))
            elif e.accounts and acct not in e.accounts:
                spoofed = True
                out.append(Symbol("SMS_SENDER_SPOOFED", 1.0, (e.brand, e.sender_id)))
            else:
                legit = True
                out.append(Symbol("SMS_SENDER_REGISTERED", 1.0, (e.brand,)))
            if spoofed and ctx.policy.block_spoofed:
                out.append(Symbol("SMS_SPOOF_BLOCKED", 1.0, (e.brand,)))
        p = ctx.policy
        known = bool(list_matches(p.contacts, m.sender) or list_matches(p.allow, m.sender))
        ctx.data["sms.known_sender"] = known
        # (`is_international` without working the sender type out again)
        if not legit and stype is SenderType.INTERNATIONAL and is_foreign(m.sender, self.home):
            cc = "+" + country_code(m.sender)
            out.append(Symbol("SMS_INTERNATIONAL", 1.0, (cc,)))
            if p.block_international and not known:
                out.append(Symbol("SMS_INTERNATIONAL_BLOCKED", 1.0, (cc,)))
        otp_legit = (legit or known) and not spoofed and looks_like_otp(ctx.text) and not ctx.urls
        ctx.data["sms.otp_legit"] = otp_legit
        if otp_legit:
            out.append(Symbol("SMS_OTP_LEGIT", 1.0, ("registered" if legit else "contact",)))
        return out


class SmsUrlCheck(Check):
    """URL-bearing messages from senders the subscriber has not allowed."""

    name = "sms_url_sender"
    stage = Stage.NORMAL
    channels = SMS_ONLY
    depends_on = ("sms_sender",)
    symbols = (
        SymbolSpec("SMS_URL_UNKNOWN_SENDER", "sms_content",
                   "the message carries a link and the sender is not a contact", 1.5),
        SymbolSpec("SMS_URL_UNKNOWN_BLOCKED", "sms_content",
                   "link from an unknown sender and the subscriber blocks those", 9.0),
    )

    def run(self, ctx: ScanContext) -> list[Symbol]:
        urls = ctx.urls
        if not urls or ctx.data.get("sms.known_sender"):
            return []
        hosts = tuple(sorted({_host(u) for u in urls}))[:5]
        out = [Symbol("SMS_URL_UNKNOWN_SENDER", 1.0, hosts)]
        if ctx.policy.block_url_unknown_senders:
            out.append(Symbol("SMS_URL_UNKNOWN_BLOCKED", 1.0, hosts))
        return out


def _host(url: str) -> str:
    u = url.split("://", 1)[-1]
    return u.split("/", 1)[0].split("?", 1)[0].lower()


_FLOOD_SPECS = (
    SymbolSpec("SMS_FLOOD", "sms_velocity",
               "the same or a near-identical text went to many recipients within the window", 5.0),
    SymbolSpec("SMS_SENDER_BURST", "sms_velocity",
               "the sender reached many recipients within the window", 3.0),
)


class _FloodBase(Check):
    name = "sms_velocity"
    stage = Stage.NORMAL
    channels = SMS_ONLY
    depends_on = ("sms_sender",)
    symbols = _FLOOD_SPECS

    def __init__(self, flood_recipients: int, burst_recipients: int, key: bytes) -> None:
        self.flood_n = max(flood_recipients, 2)
        self.burst_n = max(burst_recipients, 2)
        self.key = hashlib.blake2b(key or os.urandom(32), digest_size=32).digest()
        # the keyed hash with the key block already absorbed: a copy per message
        self._member_hash = hashlib.blake2b(key=self.key, digest_size=12)

    def _keys(self, ctx: ScanContext) -> tuple[str, str, str] | None:
        m = ctx.message
        if ctx.data.get("sms.otp_legit") or not m.recipients:
            return None  # OTP traffic is a legitimate "flood" of near-identical texts
        text = ctx.text
        if not text.strip():
            return None
        # keyed hash of the recipient: counters (and Redis) never hold numbers
        h = self._member_hash.copy()
        h.update(m.recipients[0].encode("utf-8", "replace"))
        member = h.hexdigest()
        return "t:" + text_fingerprint(text), "s:" + m.sender.casefold(), member

    def _symbols(self, n_text: int, n_sender: int) -> list[Symbol]:
        out: list[Symbol] = []
        if n_text >= self.flood_n:
            out.append(Symbol("SMS_FLOOD", min(1.0, 0.5 + 0.5 * n_text / (2 * self.flood_n)),
                              (f"{n_text} recipients",)))
        if n_sender >= self.burst_n:
            out.append(Symbol("SMS_SENDER_BURST", 1.0, (f"{n_sender} recipients",)))
        return out


class SmsFloodCheck(_FloodBase):
    """Floods and bursts counted in this process."""

    def __init__(self, window: float, flood_recipients: int, burst_recipients: int,
                 max_keys: int, key: bytes) -> None:
        super().__init__(flood_recipients, burst_recipients, key)
        cap = max(self.flood_n, self.burst_n) * 2
        self.counter = MemoryCounter(window, max_keys=max_keys, cap=cap)

    def run(self, ctx: ScanContext) -> list[Symbol]:
        keys = self._keys(ctx)
        if keys is None:
            return []
        tkey, skey, member = keys
        return self._symbols(self.counter.add(tkey, member), self.counter.add(skey, member))


class SmsRedisFloodCheck(_FloodBase):
    """Floods and bursts counted across replicas in Redis."""

    timeout = 0.5

    def __init__(self, url: str, window: float, flood_recipients: int, burst_recipients: int,
                 key: bytes) -> None:
        super().__init__(flood_recipients, burst_recipients, key)
        self.counter = RedisCounter(url, window)

    async def run(self, ctx: ScanContext) -> Sequence[Symbol]:
        keys = self._keys(ctx)
        if keys is None:
            return []
        tkey, skey, member = keys
        n_text = await self.counter.add(tkey, member)
        n_sender = await self.counter.add(skey, member)
        return self._symbols(n_text, n_sender)

    async def close(self) -> None:
        await self.counter.close()


def checks(env: PluginEnv) -> list[Check]:
    s = env.settings
    registry = registry_for(env.resources, s.data_dir)
    # replicas sharing Redis must hash recipients alike: the configured hash key; without
    # one, a per-process key (in-memory counters never leave the process)
    key = s.hash_key.encode()
    flood: Check
    if s.redis.url:
        flood = SmsRedisFloodCheck(s.redis.url, s.sms.flood_window, s.sms.flood_recipients,
                                   s.sms.burst_recipients, key)
    else:
        flood = SmsFloodCheck(s.sms.flood_window, s.sms.flood_recipients, s.sms.burst_recipients,
                              s.sms.flood_max_keys, key)
    return [SmsSenderCheck(registry, s.sms.home_country_code), SmsUrlCheck(), flood]
