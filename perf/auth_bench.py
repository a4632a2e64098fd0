"""Benchmark: authenticate the SpamAssassin corpus (SPF, DKIM, ARC, DMARC, A-R header) with
a warm DNS cache, through mamori's own auth checks and pipeline. Prints messages/s.

Offline and honest about it: there is no network here and the corpus (2002-2003) predates
DKIM and DMARC, so the DNS it needs comes from a synthetic zone built from the corpus itself:
for each envelope-sender domain an SPF record authorising the client IP found in the
message's first external Received header (plus `mx`), for each From organisational domain a
DMARC record (p=none, rua), and, in the "signed" pass, a DKIM key: every message is signed
for its From domain with a local RSA key before timing (d=, s=bench; signing is not timed).
A first untimed pass fills the resolver's cache; the timed pass runs with that warm cache
(no lookup reaches even the zone). Concurrency: --concurrency messages in flight.

    python perf/auth_bench.py [--limit N] [--concurrency 16] [--key-bits 1024|2048]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.checks.auth import build_auth_checks  # noqa: E402
from gateway.checks.auth.dmarc import from_domains, organisational_domain  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.dns import CachingResolver, ZoneBackend  # noqa: E402
from gateway.message import Message, Peer, ScanContext  # noqa: E402
from gateway.pipeline import Pipeline  # noqa: E402
from gateway.policy import DEFAULT_POLICY  # noqa: E402
from gateway.scoring import Scores  # noqa: E402

RECEIVED_RE = re.compile(r"from\s+(\S+)\s+\(([^)]*?)\[(\d{1,3}(?:\.\d{1,3}){3})\]", re.I | re.S)


def shared_data() -> Path:
    return Path(os.environ.get("MAMORI_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def client_of(msg: Message) -> tuple[str, str]:
    """(ip, helo) of the first Received header naming a public IPv4 client."""
    for name, value in msg.headers:
        if name.lower() != "received":
            continue
        m = RECEIVED_RE.search(value)
        if not m:
            continue
        ip = m.group(3)
        try:
            if ipaddress.ip_address(ip).is_global:
                return ip, m.group(1).strip("[]")
        except ValueError:
            continue
    return "192.0.2.1", "unknown.invalid"


def load_corpus(limit: int) -> list[Message]:
    base = shared_data() / "email" / "spamassassin"
    if not base.is_dir():
        sys.exit(f"corpus not found at {base} (set MAMORI_SHARED_DATA)")
    paths = sorted(p for p in base.glob("*/*") if p.is_file() and p.name != "SOURCE.md")
    if limit:
        paths = paths[:limit]
    out = []
    for p in paths:
        msg = Message.email(p.read_bytes())
        ip, helo = client_of(msg)
        out.append(dataclasses.replace(msg, peer=Peer(ip=ip, helo=helo)))
    return out


def synthetic_zone(messages: list[Message], key_txt: str | None) -> dict[str, Any]:
    zone: dict[str, list[Any]] = {}
    for m in messages:
        sender = m.sender.strip("<> ")
        if "@" in sender and m.peer.ip:
            dom = sender.rsplit("@", 1)[1].lower().rstrip(".")
            entry = zone.setdefault(dom, [])
            spf = [e for e in entry if "TXT" in e]
            if not spf:
                entry.append({"TXT": f"v=spf1 ip4:{m.peer.ip} mx -all"})
                entry.append({"MX": [10, f"mx.{dom}"]})
                zone.setdefault(f"mx.{dom}", [{"A": "192.0.2.25"}])
        for d in from_domains([v for n, v in m.headers if n.lower() == "from"]):
            org = organisational_domain(d)
            zone.setdefault(f"_dmarc.{org}", [{"TXT": f"v=DMARC1; p=none; rua=mailto:dmarc@{org}"}])
            if key_txt:
                zone.setdefault(f"bench._domainkey.{d}", [{"TXT": key_txt}])
    return zone


def sign_all(messages: list[Message], key: bytes) -> list[Message]:
    import dkim

    out = []
    for m in messages:
        doms = from_domains([v for n, v in m.headers if n.lower() == "from"])
        if not doms:
            out.append(m)
            continue
        raw = m.raw()
        try:
            sig = dkim.sign(raw, b"bench", doms[0].encode(), key,
                            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        except Exception:
            out.append(m)
            continue
        signed = Message.email(sig + raw)
        out.append(dataclasses.replace(signed, sender=m.sender, peer=m.peer))
    return out


async def run_pass(pipeline: Pipeline, messages: list[Message], concurrency: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)
    tally: dict[str, int] = {}

    async def one(m: Message) -> None:
        async with sem:
            ctx = ScanContext(m, DEFAULT_POLICY, deadline=time.monotonic() + 30)
            await pipeline.run_checks(ctx)
            for key in ("spf", "dmarc", "arc"):
                r = ctx.data.get(f"auth.{key}")
                k = f"{key}={r.result if r is not None else 'missing'}"
                tally[k] = tally.get(k, 0) + 1
            dk = ctx.data.get("auth.dkim") or []
            k = "dkim=" + ("pass" if any(d.result == "pass" for d in dk) else (dk[0].result if dk else "none"))
            tally[k] = tally.get(k, 0) + 1
            for r in ctx.results.values():
                if r.error:
                    tally[f"CHECK_FAILED {r.check}: {r.error}"] = tally.get(f"CHECK_FAILED {r.check}: {r.error}", 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    return {"seconds": time.perf_counter() - t0, "tally": dict(sorted(tally.items()))}


async def bench(messages: list[Message], zone: dict[str, Any], concurrency: int, label: str) -> None:
    settings = load_settings(hash_key="bench-hash-key-0123456789", auth={"reports": False})
    backend = ZoneBackend(zone)
    resolver = CachingResolver(backend, max_entries=1_000_000)
    pipeline = Pipeline(build_auth_checks(settings, resolver), Scores(weights={}, thresholds={}, strength={}),
                        deadline=30)
    await pipeline.start()
    try:
        warm = await run_pass(pipeline, messages, concurrency)
        misses_before = resolver.stats.misses
        timed = await run_pass(pipeline, messages, concurrency)
        misses_timed = resolver.stats.misses - misses_before
    finally:
        await pipeline.close()
    n = len(messages)
    print(f"[{label}] {n} messages, zone of {len(zone)} names, cache {len(resolver)} answers")
    print(f"[{label}] warm-up (cold cache, zone-backed DNS): {n / warm['seconds']:.0f} messages/s")
    print(f"[{label}] warm cache: {n / timed['seconds']:.0f} messages/s "
          f"({timed['seconds'] * 1000 / n:.2f} ms/message, {misses_timed} cache misses)")
    print(f"[{label}] results: {timed['tally']}")
    print(f"[{label}] load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(the machine is shared: compare runs at similar load)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="messages to use (0: all)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--key-bits", type=int, choices=(1024, 2048), default=1024)
    ap.add_argument("--no-sign", action="store_true", help="skip the DKIM-signed pass")
    args = ap.parse_args()

    t = time.perf_counter()
    messages = load_corpus(args.limit)
    print(f"loaded {len(messages)} messages in {time.perf_counter() - t:.1f}s; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared); DNS: synthetic zone, no network")
    asyncio.run(bench(messages, synthetic_zone(messages, None), args.concurrency, "as-is"))
    if args.no_sign:
        return
    kdir = shared_data() / "conformance" / "dkim" / "dkimpy-data"
    if args.key_bits == 1024:
        key, pub = (kdir / "test.private").read_bytes(), (kdir / "test.txt").read_text().strip()
    else:
        key = (kdir / "2048_testkey.key").read_bytes()
        pub = "v=DKIM1; k=rsa; p=" + "".join((kdir / "2048_testkey_wo_markers.pub.txt").read_text().split())
    t = time.perf_counter()
    signed = sign_all(messages, key)
    print(f"signed {len(signed)} messages with a {args.key_bits}-bit key in {time.perf_counter() - t:.1f}s (not timed)")
    asyncio.run(bench(signed, synthetic_zone(signed, pub), args.concurrency, f"dkim-signed rsa{args.key_bits}"))


if __name__ == "__main__":
    main()
