"""DMARC (RFC 7489, with RFC 9091's np=): record parsing, policy discovery through the
organisational domain (Public Suffix List shipped in the `publicsuffixlist` package: no
network at run time), identifier alignment, p/sp/np and pct.

Records are parsed strictly here rather than with checkdmarc: checkdmarc's parser verifies
report destinations with blocking DNS queries of its own, which has no place on the
per-message path (it remains the right tool to audit a domain's record offline).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from email.utils import getaddresses
from functools import lru_cache
from typing import Any, cast

from gateway.caches import memo
from gateway.dns import DnsTempError, MessageDns, normalise_name

POLICIES = ("none", "quarantine", "reject")
_TAG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}


class DmarcRecordError(ValueError):
    """The DMARC record is syntactically invalid."""


@lru_cache(maxsize=1)
def _psl() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@memo
def organisational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (the domain itself if it is a suffix)."""
    domain = normalise_name(domain)
    if not domain:
        return domain
    try:
        org = _psl().privatesuffix(domain)
    except Exception:
        org = None
    return org or domain


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    p: str
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    ri: int = 86400

    def published(self, domain: str) -> dict[str, Any]:
        """The policy_published element of an aggregate report."""
        return {"domain": domain, "adkim": self.adkim, "aspf": self.aspf, "p": self.p,
                "sp": self.sp or self.p, "pct": self.pct, "np": self.np or self.sp or self.p}


def parse_record(text: str) -> DmarcRecord:
    """Parse one DMARC TXT record (RFC 7489 6.3/6.4); raises DmarcRecordError."""
    parts = [p.strip() for p in text.strip().split(";")]
    if not parts or re.sub(r"\s+", "", parts[0]) != "v=DMARC1":
        raise DmarcRecordError("the record does not start with v=DMARC1")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or not _TAG_RE.match(name):
            raise DmarcRecordError(f"malformed tag {part[:40]!r}")
        if name in tags:
            raise DmarcRecordError(f"duplicate tag {name}")
        tags[name] = value
    kw: dict[str, Any] = {}
    for key in ("p", "sp", "np"):
        if key in tags:
            v = tags[key].lower()
            if v not in POLICIES:
                raise DmarcRecordError(f"invalid {key}={tags[key][:20]!r}")
            kw[key] = v
    for key in ("adkim", "aspf"):
        if key in tags:
            v = tags[key].lower()
            if v not in ("r", "s"):
                raise DmarcRecordError(f"invalid {key}={tags[key][:20]!r}")
            kw[key] = v
    if "pct" in tags:
        if not tags["pct"].isdigit() or not 0 <= int(tags["pct"]) <= 100:
            raise DmarcRecordError(f"invalid pct={tags['pct'][:20]!r}")
        kw["pct"] = int(tags["pct"])
    if "ri" in tags:
        if not tags["ri"].isdigit():
            raise DmarcRecordError("invalid ri")
        kw["ri"] = int(tags["ri"])
    for key in ("rua", "ruf"):
        if key in tags:
            uris = tuple(u.strip() for u in tags[key].split(",") if u.strip())
            if not uris or any(":" not in u for u in uris):
                raise DmarcRecordError(f"invalid {key} URI list")
            kw[key] = uris
    if "fo" in tags:
        kw["fo"] = tags["fo"]
    if "p" not in kw:
        # RFC 7489 6.6.3 step 6: no valid p= but a valid rua: treat as p=none
        if kw.get("rua"):
            kw["p"] = "none"
        else:
            raise DmarcRecordError("missing p= tag")
    return DmarcRecord(**kw)


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str  # pass, fail, none, temperror, permerror
    domain: str = ""  # RFC5322.From domain
    policy_domain: str = ""  # where the record was found
    org_domain: str = ""
    policy: str = "none"  # the requested policy that applies (p, sp or np)
    disposition: str = "none"  # after pct sampling
    record: DmarcRecord | None = None
    dkim_aligned: bool = False
    spf_aligned: bool = False
    reason: str = ""
    overrides: tuple[str, ...] = field(default=())  # RFC 7489 PolicyOverride types applied

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result, "domain": self.domain, "policy_domain": self.policy_domain,
            "org_domain": self.org_domain, "policy": self.policy, "disposition": self.disposition,
            "dkim_aligned": self.dkim_aligned, "spf_aligned": self.spf_aligned,
            "reason": self.reason,
            "record": self.record.published(self.policy_domain) if self.record else None,
        }


_ADDR = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
# one address, bare or in angle brackets after a display name of plain words or of one quoted
# string without escapes, or bare followed by a comment of plain words (the usual From): its
# address is the one `getaddresses` finds
_SIMPLE_FROM_RE = re.compile(
    rf' *+(?:(?:[A-Za-z0-9]+(?: +[A-Za-z0-9]+)*|"[ !#-\[\]-~]*")? *<({_ADDR})>|({_ADDR})'
    r'(?: *\([A-Za-z0-9 .-]*\))?) *')


def from_addresses(from_values: list[str]) -> list[str]:
    """The addresses `email.utils.getaddresses` finds in the From values; one value of the
    usual shape without parsing it."""
    if len(from_values) == 1:
        m = _SIMPLE_FROM_RE.fullmatch(from_values[0])
        if m is not None:
            return [m.group(1) or m.group(2)]
    return [addr for _name, addr in getaddresses(from_values)]


def from_domains(from_values: list[str]) -> list[str]:
    """The distinct domains of the RFC5322.From addresses (lowercase, no trailing dot)."""
    out: list[str] = []
    for addr in from_addresses(from_values):
        if "@" not in addr:
            continue
        dom = addr.rsplit("@", 1)[1].strip().strip(">").rstrip(".").lower()
        if dom:
            if not dom.isascii():  # (the IDNA codec gives an ASCII name back, or raises)
                with contextlib.suppress(UnicodeError):
                    dom = dom.encode("idna").decode("ascii")
            if dom not in out:
                out.append(dom)
    return out


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    identifier, from_domain = normalise_name(identifier), normalise_name(from_domain)
    if not identifier or not from_domain:
        return False
    if mode == "s":
        return identifier == from_domain
    return organisational_domain(identifier) == organisational_domain(from_domain)


async def _fetch_record(mdns: MessageDns, domain: str) -> DmarcRecord | DmarcRecordError | None:
    """The DMARC record at _dmarc.domain: None when there is none (or several, RFC 7489
    6.6.3 step 5), an error value when it is malformed. DnsTempError propagates."""
    answer = await mdns.query(f"_dmarc.{domain}", "TXT")
    texts = [t.decode("utf-8", "replace") for t in answer.txt()]
    candidates = [t for t in texts if re.match(r"^\s*v\s*=\s*DMARC1\s*(;|$)", t, re.I)]
    if len(candidates) != 1:
        return None
    try:
        return parse_record(candidates[0])
    except DmarcRecordError as exc:
        return exc


async def _domain_exists(mdns: MessageDns, domain: str) -> bool:
    """RFC 9091 2.1: a domain does not exist when A, AAAA and MX all give NXDOMAIN."""
    for qtype in ("A", "AAAA", "MX"):
        try:
            if not (await mdns.query(domain, qtype)).nxdomain:
                return True
        except DnsTempError:
            return True  # unknown: do not apply np
    return False


def sampled(message_id: str, pct: int) -> bool:
    """pct sampling (RFC 7489 6.6.4), stable per message so that re-scans agree."""
    if pct >= 100:
        return True
    h = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:4], "big") % 100
    return h < pct


async def evaluate_dmarc(
    mdns: MessageDns,
    from_domain: str,
    *,
    dkim_pass_domains: list[str],
    spf_result: str,
    spf_domain: str,
    message_id: str = "",
) -> DmarcResult:
    """DMARC for one RFC5322.From domain given the DKIM and SPF results."""
    domain = normalise_name(from_domain)
    org = organisational_domain(domain)
    try:
        record = await _fetch_record(mdns, domain)
        policy_domain = domain
        if record is None and org != domain:
            record = await _fetch_record(mdns, org)
            policy_domain = org
    except DnsTempError as exc:
        return DmarcResult("temperror", domain, "", org, reason=f"DNS: {exc}")
    if record is None:
        return DmarcResult("none", domain, "", org, reason="no DMARC record")
    if isinstance(record, DmarcRecordError):
        return DmarcResult("permerror", domain, policy_domain, org, reason=f"malformed record: {record}")

    dkim_ok = any(aligned(d, domain, record.adkim) for d in dkim_pass_domains)
    spf_ok = spf_result == "pass" and aligned(spf_domain, domain, record.aspf)
    if policy_domain == domain:
        policy = record.p
    elif record.np is not None and not await _domain_exists(mdns, domain):
        policy = record.np
    else:
        policy = record.sp or record.p
    if dkim_ok or spf_ok:
        return DmarcResult("pass", domain, policy_domain, org, policy, "none", record, dkim_ok, spf_ok)
    disposition, overrides = policy, cast(tuple[str, ...], ())
    if policy != "none" and not sampled(message_id, record.pct):
        disposition, overrides = _DOWNGRADE[policy], ("sampled_out",)
    return DmarcResult("fail", domain, policy_domain, org, policy, disposition, record,
                       False, False, "no aligned DKIM or SPF pass", overrides)


def pick_worst(results: list[DmarcResult]) -> DmarcResult:
    """Several From domains: the strictest outcome stands (RFC 7489 6.6.1)."""
    if len(results) == 1:
        return results[0]
    order = {"fail": 4, "temperror": 3, "permerror": 2, "none": 1, "pass": 0}
    sev = {"reject": 2, "quarantine": 1, "none": 0}
    return max(results, key=lambda r: (order.get(r.result, 0), sev.get(r.disposition, 0)))

