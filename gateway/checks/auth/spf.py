"""SPF (RFC 7208) on pyspf, with every DNS lookup answered by mamori's resolver.

pyspf is synchronous and asks for DNS through its module-level `DNSLookup`. We install a
dispatcher once: inside `evaluate_spf` it answers from the message's `SyncView` (what the
message has already looked up, or the shared cache); outside it falls back to pyspf's own
lookup, so other users of pyspf in the process are unaffected. `run_with_dns` fetches what
an evaluation missed and runs it again; with a warm cache an evaluation runs once, inline.
"""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass
from typing import Any

import spf as pyspf

from gateway.dns import DnsTempError, MessageDns, NeedDns, SyncView, run_with_dns

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

_VIEW: contextvars.ContextVar[SyncView | None] = contextvars.ContextVar("mamori_spf_view", default=None)
_ORIGINAL_LOOKUP = pyspf.DNSLookup


def _dispatch_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    view = _VIEW.get()
    if view is None:
        return list(_ORIGINAL_LOOKUP(name, qtype, strict, timeout))
    try:
        answer = view.lookup(name, qtype)
    except DnsTempError as exc:
        raise pyspf.TempError(f"DNS {exc}") from None
    return [((owner, rtype), value) for owner, rtype, value in answer.records]


if getattr(pyspf.DNSLookup, "__name__", "") != "_dispatch_lookup":
    pyspf.DNSLookup = _dispatch_lookup


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str
    identity: str  # "mailfrom" or "helo"
    domain: str
    explanation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "identity": self.identity, "domain": self.domain,
                "explanation": self.explanation}


def sender_domain(mail_from: str, helo: str) -> tuple[str, str]:
    """(identity, domain) SPF checks: the MAIL FROM domain, or the HELO name for a null sender."""
    mail_from = mail_from.strip().strip("<>")
    if mail_from and "@" in mail_from:
        return "mailfrom", mail_from.rsplit("@", 1)[1].rstrip(".").lower()
    if mail_from:  # a bare domain (pyspf treats it as postmaster@domain)
        return "mailfrom", mail_from.rstrip(".").lower()
    return "helo", helo.strip().rstrip(".").lower()


def _no_record_cached(mdns: MessageDns, ip: str | None, sender: str, helo: str) -> bool:
    """Whether pyspf's check_host() would answer "none" at once, known without running it:
    the name it asks for TXT records (the sender's domain as `pyspf.split_email` takes it, or
    the HELO name) is ASCII with valid labels, and this message's DNS, or the shared cache,
    already holds an empty TXT answer for it (no record, no CNAME): pyspf then finds no SPF
    record after that one lookup and returns ("none", 250, EXPLANATIONS["none"]). Anything
    else (not cached yet, a DNS error, records to examine, an address pyspf would refuse)
    goes through pyspf."""
    if not ip or ip != ip.strip() or pyspf.DNSLookup is not _dispatch_lookup:
        return False
    name = pyspf.split_email(sender, helo)[1]
    if not name.isascii() or not all(0 < len(label) < 64 for label in name.split(".")):
        return False
    try:
        answer = SyncView(mdns).lookup(name.lower(), "TXT")  # as pyspf's lookup would read it
    except (NeedDns, DnsTempError):
        return False
    return not answer.records


async def evaluate_spf(
    mdns: MessageDns,
    ip: str | None,
    mail_from: str,
    helo: str,
    *,
    receiver: str = "mamori",
    default_explanation: str | None = None,
) -> SpfResult:
    """check_host() for the connection: never raises; DNS trouble is temperror."""
    identity, domain = sender_domain(mail_from, helo)
    address = (ip or "").strip()
    if not address:  # (what ip_address refuses at once, without its two parse attempts)
        return SpfResult("none", identity, domain, "no valid client IP")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return SpfResult("none", identity, domain, "no valid client IP")
    if not domain:
        return SpfResult("none", identity, domain, "no sender domain")
    sender = mail_from.strip().strip("<>")
    if _no_record_cached(mdns, ip, sender, helo):
        return SpfResult("none", identity, domain, str(pyspf.EXPLANATIONS["none"] or ""))

    def compute(view: SyncView) -> tuple[str, str]:
        token = _VIEW.set(view)
        try:
            q = pyspf.query(i=ip, s=sender, h=helo, receiver=receiver, strict=True, querytime=0)
            if default_explanation is not None:
                q.set_default_explanation(default_explanation)
            res, _code, exp = q.check()
            return str(res), str(exp or "")
        finally:
            _VIEW.reset(token)

    try:
        res, exp = await run_with_dns(mdns, compute)
    except DnsTempError as exc:
        return SpfResult("temperror", identity, domain, str(exc))
    except Exception as exc:  # a library bug on hostile input: never sink the message
        return SpfResult("permerror", identity, domain, f"SPF evaluation error: {type(exc).__name__}")
    if res is None:
        return SpfResult("temperror", identity, domain, "DNS")
    res = {"unknown": "permerror", "error": "temperror", "ambiguous": "permerror"}.get(res, res)
    if res not in RESULTS:
        res = "permerror"
    return SpfResult(res, identity, domain, exp)
