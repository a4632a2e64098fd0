"""The pipeline checks: spf, dkim, arc, dmarc (after the three), and auth_results, which
writes the one Authentication-Results header (RFC 8601) for the ingress to add.

They share one resolver (the TTL cache) and, per message, one `MessageDns` (the DNS budget)
kept in `ctx.data["auth.dns"]`. Results are published for dependents and the CLI in
`ctx.data["auth.spf" | "auth.dkim" | "auth.arc" | "auth.dmarc"]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from gateway.checks.auth.dkim import ArcResult, DkimResult, verify_arc, verify_dkim
from gateway.checks.auth.dmarc import DmarcResult, evaluate_dmarc, from_domains, pick_worst
from gateway.checks.auth.reports import ReportLog
from gateway.checks.auth.spf import SpfResult, evaluate_spf
from gateway.config import Settings
from gateway.dns import CachingResolver, MessageDns
from gateway.message import Channel, ScanContext, lower_names
from gateway.pipeline import Check, Stage
from gateway.verdict import Symbol, SymbolSpec

log = logging.getLogger("mamori.auth")

DNS_KEY, RAW_KEY, SPF_KEY, DKIM_KEY, ARC_KEY, DMARC_KEY = (
    "auth.dns", "auth.raw", "auth.spf", "auth.dkim", "auth.arc", "auth.dmarc")
CHECK_TIMEOUT = 4.5  # seconds; the DNS budget ends earlier, so DNS trouble is temperror
DNS_TIME_BUDGET = 4.0


@dataclass
class AuthShared:
    """What the auth checks share: configuration, the resolver, the report sinks."""

    resolver: CachingResolver
    authserv_id: str = "mamori.localhost"
    trusted_sealers: frozenset[str] = frozenset()
    dns_budget: int = 30
    dns_timeout: float = 2.0
    events: Any = None  # an EventSink
    report_log: ReportLog | None = None
    flush_tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def from_settings(cls, settings: Settings, resolver: CachingResolver, *, events: Any = None) -> AuthShared:
        a = settings.auth
        report_log = None
        if a.reports:
            report_log = ReportLog(Path(a.report_dir) if a.report_dir else settings.data_dir / "dmarc-reports")
        return cls(
            resolver=resolver,
            authserv_id=a.authserv_id or settings.smtp.hostname,
            trusted_sealers=frozenset(d.strip().rstrip(".").lower() for d in a.trusted_arc_sealers if d.strip()),
            dns_budget=a.dns_budget,
            dns_timeout=a.dns_timeout,
            events=events,
            report_log=report_log,
        )

    def message_dns(self, ctx: ScanContext) -> MessageDns:
        mdns = ctx.data.get(DNS_KEY)
        if mdns is None:
            deadline = time.monotonic() + DNS_TIME_BUDGET
            if ctx.deadline is not None:
                deadline = min(deadline, ctx.deadline - 0.2)
            mdns = MessageDns(self.resolver, max_queries=self.dns_budget, deadline=deadline,
                              query_timeout=self.dns_timeout)
            ctx.data[DNS_KEY] = mdns
        assert isinstance(mdns, MessageDns)
        return mdns


def raw_message(ctx: ScanContext) -> bytes:
    """The message as bytes, built once per scan for the DKIM and ARC verifiers."""
    raw = ctx.data.get(RAW_KEY)
    if raw is None:
        raw = ctx.data[RAW_KEY] = ctx.message.raw()
    assert isinstance(raw, bytes)
    return raw


def _sym(prefix: str, result: str, *options: str) -> Symbol:
    return Symbol(f"{prefix}_{result.upper()}", 1.0, tuple([o for o in options if o]))


def _specs(prefix: str, group: str, results: dict[str, str]) -> tuple[SymbolSpec, ...]:
    return tuple(SymbolSpec(f"{prefix}_{r.upper()}", group, d) for r, d in results.items())


class _AuthCheck(Check):
    stage = Stage.NORMAL
    channels = frozenset({Channel.EMAIL})
    timeout = CHECK_TIMEOUT

    def __init__(self, shared: AuthShared) -> None:
        self.shared = shared


class SpfCheck(_AuthCheck):
    name = "spf"
    symbols = _specs("SPF", "auth", {
        "pass": "SPF: the client is authorised to send for the sender domain",
        "fail": "SPF: the sender domain says the client is not authorised (-all)",
        "softfail": "SPF: the sender domain says the client is probably not authorised (~all)",
        "neutral": "SPF: the sender domain makes no assertion about the client (?all)",
        "none": "SPF: the sender domain publishes no SPF record",
        "temperror": "SPF: a temporary DNS error prevented the check",
        "permerror": "SPF: the sender domain's SPF record is broken",
    })

    async def run(self, ctx: ScanContext) -> list[Symbol]:
        m = ctx.message
        res = await evaluate_spf(self.shared.message_dns(ctx), m.peer.ip, m.sender, m.peer.helo or "",
                                 receiver=self.shared.authserv_id)
        ctx.data[SPF_KEY] = res
        return [_sym("SPF", res.result, res.domain, res.identity)]


class DkimCheck(_AuthCheck):
    name = "dkim"
    symbols = _specs("DKIM", "auth", {
        "pass": "DKIM: a valid signature",
        "fail": "DKIM: a signature does not verify (the message was altered or forged)",
        "none": "DKIM: the message is not signed",
        "temperror": "DKIM: a temporary DNS error prevented verifying a signature",
        "permerror": "DKIM: a signature or its key is malformed or missing",
    })

    async def run(self, ctx: ScanContext) -> list[Symbol]:
        m = ctx.message
        results = await verify_dkim(self.shared.message_dns(ctx), m.headers, lambda: raw_message(ctx))
        ctx.data[DKIM_KEY] = results
        if not results:
            return [Symbol("DKIM_NONE")]
        by: dict[str, list[str]] = {}
        for r in results:
            by.setdefault(r.result, []).append(r.domain)
        return [_sym("DKIM", res, *doms) for res, doms in by.items()]


class ArcCheck(_AuthCheck):
    name = "arc"
    symbols = _specs("ARC", "auth", {
        "pass": "ARC: the chain of custody of forwarders verifies",
        "fail": "ARC: the ARC chain is broken or forged",
        "none": "ARC: no ARC chain",
    })

    async def run(self, ctx: ScanContext) -> list[Symbol]:
        m = ctx.message
        res = await verify_arc(self.shared.message_dns(ctx), m.headers, lambda: raw_message(ctx))
        ctx.data[ARC_KEY] = res
        return [_sym("ARC", res.result, *res.sealers[-1:])]


_AAR_PASS = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*pass\b", re.I)


def trusted_override(arc: ArcResult | None, trusted: frozenset[str]) -> str | None:
    """The trusted sealer whose valid ARC set vouches for the message, or None.

    The chain must validate (cv=pass) and the trusted sealer's own ARC-Authentication-Results
    must record an authentication pass (it saw the original mail authenticate)."""
    if arc is None or arc.result != "pass" or not trusted:
        return None
    for i, sealer in enumerate(arc.sealers, start=1):
        if not sealer:
            continue
        if any(sealer == t or sealer.endswith("." + t) for t in trusted) and _AAR_PASS.search(
                arc.aar.get(i, "")):
            return sealer
    return None


class DmarcCheck(_AuthCheck):
    name = "dmarc"
    depends_on: ClassVar[tuple[str, ...]] = ("spf", "dkim", "arc")
    symbols = (
        SymbolSpec("DMARC_PASS", "auth", "DMARC: the From domain is authenticated (aligned DKIM or SPF)"),
        SymbolSpec("DMARC_NONE", "auth", "DMARC: the From domain publishes no DMARC policy"),
        SymbolSpec("DMARC_TEMPERROR", "auth", "DMARC: a temporary DNS error prevented the check"),
        SymbolSpec("DMARC_PERMERROR", "auth", "DMARC: the From domain's DMARC record is malformed"),
        SymbolSpec("DMARC_POLICY_NONE", "auth",
                   "DMARC: not authenticated for the From domain, which asks only for monitoring"),
        SymbolSpec("DMARC_POLICY_QUARANTINE", "auth",
                   "DMARC: not authenticated for the From domain, which asks to quarantine such mail"),
        SymbolSpec("DMARC_POLICY_REJECT", "auth",
                   "DMARC: not authenticated for the From domain, which asks to reject such mail"),
        SymbolSpec("DMARC_POLICY_SOFTENED", "auth",
                   "DMARC: the From domain asks to block this mail; the subscriber's policy scores it instead"),
        SymbolSpec("DMARC_ARC_OVERRIDE", "auth",
                   "DMARC failed, but a trusted forwarder's valid ARC chain vouches for the message"),
    )

    async def run(self, ctx: ScanContext) -> list[Symbol]:
        m = ctx.message
        mdns = self.shared.message_dns(ctx)
        domains = from_domains([v for n, (_, v) in zip(lower_names(m.headers), m.headers,
                                                        strict=True) if n == "from"])
        if not domains:
            res = DmarcResult("none", reason="no RFC5322.From domain")
            ctx.data[DMARC_KEY] = res
            return [Symbol("DMARC_NONE", 1.0, ("no From domain",))]
        spf: SpfResult | None = ctx.data.get(SPF_KEY)
        dkim_results: list[DkimResult] = ctx.data.get(DKIM_KEY) or []
        spf_result = spf.result if spf is not None else "temperror"
        spf_domain = spf.domain if spf is not None else ""
        passing = [d.domain for d in dkim_results if d.result == "pass"]
        evaluations = [evaluate_dmarc(mdns, d, dkim_pass_domains=passing, spf_result=spf_result,
                                      spf_domain=spf_domain, message_id=m.id) for d in domains]
        # one From domain (the usual case): awaited directly, with no task (it then often
        # finishes without suspending: the DNS answers are cached)
        results = ([await evaluations[0]] if len(evaluations) == 1
                   else await asyncio.gather(*evaluations))
        res = pick_worst(list(results))
        out: list[Symbol]
        if res.result != "fail":
            out = [_sym("DMARC", res.result, res.domain)]
        else:
            opts = (res.domain, f"p={res.policy}", *res.overrides)
            sealer = trusted_override(ctx.data.get(ARC_KEY), self.shared.trusted_sealers)
            if sealer and res.disposition != "none":
                res = replace(res, disposition="none", overrides=(*res.overrides, "trusted_forwarder"),
                            reason=f"trusted ARC sealer {sealer}")
                out = [Symbol("DMARC_ARC_OVERRIDE", 1.0, (*opts, sealer))]
            elif res.disposition != "none" and not ctx.policy.honour_dmarc:
                res = replace(res, disposition="none", overrides=(*res.overrides, "local_policy"))
                out = [Symbol("DMARC_POLICY_SOFTENED", 1.0, opts)]
            else:
                out = [Symbol(f"DMARC_POLICY_{res.disposition.upper()}", 1.0, opts)]
        ctx.data[DMARC_KEY] = res
        self._report(ctx, res)
        return out

    def _report(self, ctx: ScanContext, res: DmarcResult) -> None:
        # a report row describes a delivery attempt: without a connecting client (a file
        # scanned with `mamori scan`) there is nothing to report
        if res.record is None or res.result not in ("pass", "fail") or not ctx.message.peer.ip:
            return
        row = report_row(ctx, res)
        if self.shared.events is not None:
            try:
                self.shared.events.emit("dmarc", res.policy_domain, row)
            except Exception:
                log.exception("cannot emit DMARC event")
        rl = self.shared.report_log
        if rl is not None and rl.add(row):
            task = asyncio.ensure_future(asyncio.to_thread(rl.flush))
            self.shared.flush_tasks.add(task)
            task.add_done_callback(self.shared.flush_tasks.discard)

    async def close(self) -> None:
        if self.shared.flush_tasks:
            await asyncio.gather(*self.shared.flush_tasks, return_exceptions=True)
        if self.shared.report_log is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.shared.report_log.flush)


def report_row(ctx: ScanContext, res: DmarcResult) -> dict[str, Any]:
    """One aggregate-report row: metadata only (server IP, domains, results)."""
    spf: SpfResult | None = ctx.data.get(SPF_KEY)
    dkim_results: list[DkimResult] = ctx.data.get(DKIM_KEY) or []
    assert res.record is not None
    return {
        "ts": round(ctx.message.received_at, 3),
        "header_from": res.domain,
        "policy_domain": res.policy_domain,
        "policy_published": res.record.published(res.policy_domain),
        "rua": list(res.record.rua),
        "source_ip": ctx.message.peer.ip or "",
        "disposition": res.disposition,
        "dkim": "pass" if res.dkim_aligned else "fail",
        "spf": "pass" if res.spf_aligned else "fail",
        "reasons": [{"type": t} for t in res.overrides],
        "auth_dkim": [{"domain": d.domain, "selector": d.selector, "result": d.result}
                      for d in dkim_results if d.domain][:10],
        "auth_spf": ({"domain": spf.domain, "scope": "mfrom" if spf.identity == "mailfrom" else "helo",
                      "result": spf.result} if spf is not None else None),
    }


_TOKEN = re.compile(r"^[A-Za-z0-9._@+-]*$")


def _pv(value: str) -> str:
    """A property value: a token, or a quoted string (RFC 8601 2.2)."""
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authentication_results(authserv_id: str, data: dict[str, Any]) -> str | None:
    """The Authentication-Results value (RFC 8601) for what ran, or None if nothing did."""
    parts: list[str] = []
    spf: SpfResult | None = data.get(SPF_KEY)
    if spf is not None:
        ptype = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"
        parts.append(f"spf={spf.result} {ptype}={_pv(spf.domain)}" if spf.domain else f"spf={spf.result}")
    dkim_results: list[DkimResult] | None = data.get(DKIM_KEY)
    if dkim_results is not None:
        if not dkim_results:
            parts.append("dkim=none")
        for d in dkim_results[:8]:
            p = f"dkim={d.result}"
            if d.domain:
                p += f" header.d={_pv(d.domain)}"
            if d.selector:
                p += f" header.s={_pv(d.selector)}"
            if d.algorithm:
                p += f" header.a={_pv(d.algorithm)}"
            if d.b:
                p += f" header.b={_pv(d.b)}"
            parts.append(p)
    arc: ArcResult | None = data.get(ARC_KEY)
    if arc is not None:
        parts.append(f"arc={arc.result}")
    dm: DmarcResult | None = data.get(DMARC_KEY)
    if dm is not None:
        p = f"dmarc={dm.result}"
        if dm.record is not None:
            p += f" (p={dm.policy} dis={dm.disposition})"
        if dm.domain:
            p += f" header.from={_pv(dm.domain)}"
        parts.append(p)
    if not parts:
        return None
    return f"{authserv_id}; " + "; ".join(parts)


class AuthResultsCheck(Check):
    """Writes the Authentication-Results header from whatever auth checks ran."""

    name = "auth_results"
    stage = Stage.POST
    channels = frozenset({Channel.EMAIL})

    def __init__(self, shared: AuthShared) -> None:
        self.shared = shared

    def run(self, ctx: ScanContext) -> list[Symbol]:
        value = authentication_results(self.shared.authserv_id, ctx.data)
        if value is not None:
            ctx.extra_headers.append(("Authentication-Results", value))
        return []
