"""DKIM (RFC 6376, RSA and Ed25519 per RFC 8463) and ARC (RFC 8617) on dkimpy.

The keys a message needs are known from its headers (`s=` and `d=` of each DKIM-Signature,
ARC-Seal and ARC-Message-Signature), so they are fetched first, concurrently, through the
message's resolver view; the cryptography then runs in a worker thread with a DNS function
that only reads those answers (anything else it asks for is fetched and the verification
repeated, see `run_with_dns`). The event loop never waits on RSA.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from gateway.dns import DnsTempError, MessageDns, SyncView, run_with_dns
from gateway.message import lower_names

_quiet = logging.getLogger("mamori.auth.dkimpy")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False

MIN_KEY_BITS = 1024
# signatures verified per message (each hashes the body again): more are ignored, so a
# message cannot buy unbounded CPU with a pile of signatures
MAX_SIGNATURES = 8
_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str  # pass, fail, neutral, temperror, permerror
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    identity: str = ""
    b: str = ""  # the first 8 characters of the signature (RFC 6008 header.b)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "domain": self.domain, "selector": self.selector,
                "algorithm": self.algorithm, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str  # pass, fail, none
    instances: int = 0
    sealers: tuple[str, ...] = ()  # d= of each ARC-Seal, from i=1 upwards
    reason: str = ""
    aar: dict[int, str] = field(default_factory=dict)  # i -> ARC-Authentication-Results text

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "instances": self.instances,
                "sealers": list(self.sealers), "reason": self.reason}


def _tags(value: str) -> dict[str, str]:
    try:
        raw = parse_tag_value(value.encode("utf-8", "surrogateescape"))
    except (InvalidTagValueList, ValueError):
        return {}
    return {k.decode("ascii", "replace").lower(): v.decode("utf-8", "replace") for k, v in raw.items()}


def key_names(headers: tuple[tuple[str, str], ...], names: tuple[str, ...]) -> list[str]:
    """The `selector._domainkey.domain` names the given signature headers point to."""
    out: list[str] = []
    for name, value in headers:
        if name.lower() in names:
            t = _tags(value)
            s, d = t.get("s", "").strip(), t.get("d", "").strip()
            if s and d:
                key = f"{_WS.sub('', s)}._domainkey.{_WS.sub('', d)}".lower()
                if key not in out:
                    out.append(key)
    return out


async def prefetch_keys(mdns: MessageDns, names: list[str]) -> None:
    await asyncio.gather(*(mdns.fetch(n.rstrip(".").lower(), "TXT") for n in names if len(n) < 254))


def _dnsfunc(view: SyncView) -> Any:
    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = view.lookup(name.decode("utf-8", "replace"), "TXT")
        except DnsTempError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        txts = answer.txt()
        return txts[0] if txts else None

    return get_txt


def _key_state(mdns: MessageDns, name: str) -> tuple[str, str] | None:
    """(result, reason) when the key cannot be used, else None."""
    got = mdns.known.get((name.rstrip(".").lower(), "TXT"))
    if isinstance(got, DnsTempError):
        return "temperror", f"key lookup: {got}"
    if got is None:
        return None
    txts = got.txt()
    if not txts:
        return "permerror", "no key"
    try:
        dkim.evaluate_pk(name.encode(), txts[0])
    except dkim.DKIMException as exc:
        return "permerror", f"bad key: {exc}"
    except Exception:
        return "permerror", "bad key"
    return None


def _verify_all(raw: bytes, mdns: MessageDns, view: SyncView) -> list[DkimResult]:
    d = dkim.DKIM(raw, logger=_quiet, minkey=MIN_KEY_BITS)
    sigs = [v for n, v in d.headers if n.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    out: list[DkimResult] = []
    for idx, sigval in enumerate(sigs):
        t = _tags(sigval.decode("utf-8", "surrogateescape"))
        dom, sel = _WS.sub("", t.get("d", "")).lower(), _WS.sub("", t.get("s", ""))
        algo, ident = _WS.sub("", t.get("a", "")).lower(), _WS.sub("", t.get("i", ""))
        bval = _WS.sub("", t.get("b", ""))[:8]

        def res(result: str, reason: str = "", *, dom: str = dom, sel: str = sel,
                algo: str = algo, ident: str = ident, bval: str = bval) -> DkimResult:
            return DkimResult(result, dom, sel, algo, ident, bval, reason)

        try:
            prep = d.verify_headerprep(idx)
        except dkim.DKIMException as exc:
            out.append(res("permerror", f"bad signature: {exc}"))
            continue
        if not prep:
            out.append(res("permerror", "bad signature"))
            continue
        sig, include_headers, sigheaders = prep
        if algo == "rsa-sha1":
            out.append(res("permerror", "rsa-sha1 is not acceptable (RFC 8301)"))
            continue
        key = f"{sel}._domainkey.{dom}"
        if (key.lower(), "TXT") not in mdns.known:
            view.lookup(key, "TXT")  # not prefetched (odd header): fetch and run again
        state = _key_state(mdns, key)
        if state is not None:
            out.append(res(*state))
            continue
        try:
            ok = d.verify_sig(sig, include_headers, sigheaders[idx], _dnsfunc(view))
        except dkim.ValidationError as exc:
            out.append(res("fail", str(exc)[:120]))
            continue
        except dkim.DKIMException as exc:
            out.append(res("permerror", str(exc)[:120]))
            continue
        out.append(res("pass") if ok else res("fail", "signature did not verify"))
    return out


async def verify_dkim(mdns: MessageDns, headers: tuple[tuple[str, str], ...],
                      raw_message: Callable[[], bytes]) -> list[DkimResult]:
    """Every DKIM-Signature of the message, in order; an empty list when there is none.
    `raw_message` gives the message bytes (only asked for when there is a signature)."""
    if "dkim-signature" not in lower_names(headers):
        return []
    await prefetch_keys(mdns, key_names(headers, ("dkim-signature",))[:MAX_SIGNATURES])
    raw = raw_message()

    def compute(view: SyncView) -> list[DkimResult]:
        return _verify_all(raw, mdns, view)

    try:
        result: list[DkimResult] | None = await run_with_dns(mdns, compute, in_thread=True)
    except DnsTempError as exc:
        return [DkimResult("temperror", reason=str(exc))]
    except Exception as exc:  # hostile input tripping the library: never sink the message
        return [DkimResult("permerror", reason=f"verifier error: {type(exc).__name__}")]
    return result or []


ARC_HEADERS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
_ARC_NAMES = frozenset(ARC_HEADERS)
ARC_MAX_INSTANCES = 50  # RFC 8617 4.2.1


def _arc_instances(headers: tuple[tuple[str, str], ...]) -> tuple[dict[int, str], dict[int, str]]:
    sealers: dict[int, str] = {}
    aar: dict[int, str] = {}
    for name, value in headers:
        lname = name.lower()
        if lname == "arc-seal":
            t = _tags(value)
            try:
                i = int(t.get("i", "").strip())
            except ValueError:
                continue
            sealers.setdefault(i, _WS.sub("", t.get("d", "")).lower())
        elif lname == "arc-authentication-results":
            m = re.match(r"\s*i\s*=\s*(\d+)\s*;(.*)", value, re.S)
            if m:
                aar.setdefault(int(m.group(1)), _WS.sub(" ", m.group(2)).strip())
    return sealers, aar


async def verify_arc(mdns: MessageDns, headers: tuple[tuple[str, str], ...],
                     raw_message: Callable[[], bytes]) -> ArcResult:
    """The ARC chain validation status (cv) of the message."""
    if _ARC_NAMES.isdisjoint(lower_names(headers)):
        return ArcResult("none", reason="no ARC headers")
    sealers, aar = _arc_instances(headers)
    n = max(sealers) if sealers else 0
    chain = tuple(sealers.get(i, "") for i in range(1, min(n, ARC_MAX_INSTANCES) + 1))
    if n > ARC_MAX_INSTANCES:
        return ArcResult("fail", n, chain, f"more than {ARC_MAX_INSTANCES} ARC sets", aar)
    await prefetch_keys(mdns, key_names(headers, ("arc-seal", "arc-message-signature")))
    raw = raw_message()

    def compute(view: SyncView) -> tuple[Any, str]:
        cv, _results, reason = dkim.arc_verify(raw, logger=_quiet, dnsfunc=_dnsfunc(view),
                                               minkey=MIN_KEY_BITS)
        return cv, str(reason)

    try:
        got = await run_with_dns(mdns, compute, in_thread=True)
    except DnsTempError as exc:
        return ArcResult("fail", n, chain, f"DNS: {exc}", aar)
    except Exception as exc:
        return ArcResult("fail", n, chain, f"verifier error: {type(exc).__name__}", aar)
    if got is None:
        return ArcResult("fail", n, chain, "DNS", aar)
    cv, reason = got
    # dkimpy answers None when an earlier hop already sealed cv=fail (the chain is
    # terminated): RFC 8617 5.2 makes that a failed chain.
    text = cv.decode("ascii", "replace") if isinstance(cv, bytes) else ""
    result = {"pass": "pass", "none": "none"}.get(text.lower(), "fail")
    return ArcResult(result, n, chain, reason if result != "pass" else "", aar)
