"""Evaluation of the URL lists and the lookalike detector on real data (`mamori urls evaluate`).

1. The JPCERT/CC list is built from the monthly CSVs before `split` (default 2024-01), the way
   `mamori urls update --format jpcert` builds it, and the URLs of the months from `split` on
   are looked up: how many are caught (a) by the list alone, (b) by the list or the lookalike
   detector (URL_LOOKALIKE / URL_BRAND_ABUSE).
2. The lookalike detector runs over every URL found in the SpamAssassin ham messages
   (easy-ham-1/2, hard-ham-1 per labels.csv): its false-positive rate per distinct URL and per
   message.

The JPCERT/CC data is read from the shared folder, never bundled.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.urls.canon import UrlError, canonicalize
from gateway.urls.feeds import SCOPES, FeedReport, load_feed
from gateway.urls.index import ListBuilder, UrlIndex
from gateway.urls.lookalike import Lookalikes


def _months(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for p in sorted(folder.glob("*.csv")):
        stem = p.stem
        if len(stem) == 6 and stem.isdigit():
            out.append((f"{stem[:4]}-{stem[4:]}", p))
    return out


def jpcert_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        return [(r[1].strip(), r[2].strip() if len(r) > 2 else "")
                for r in csv.reader(f) if len(r) >= 2 and r[0] != "date" and r[1].strip()]


def ham_urls(sa_dir: Path) -> list[list[str]]:
    """Per ham message, the hosts of the URLs it contains (as the gateway extracts them)."""
    from gateway.message import Message, ScanContext
    from gateway.policy import DEFAULT_POLICY
    from gateway.urls.extract import extract_urls

    out: list[list[str]] = []
    with (sa_dir / "labels.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "ham"]
    for r in rows:
        raw = (sa_dir / r["path"]).read_bytes()
        ctx = ScanContext(Message.email(raw), DEFAULT_POLICY)
        plain, html = ctx.text_parts
        out.append([u.host for u in extract_urls(plain, html=html)])
    return out


def run_evaluation(jpcert_dir: Path, sa_dir: Path, *, split: str = "2024-01",
                   scope_default: str = "host", until: str = "9999-99",
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    if not jpcert_dir.is_dir():
        raise GatewayError(f"JPCERT/CC folder {jpcert_dir} not found")
    months = _months(jpcert_dir)
    train = [p for m, p in months if m < split]
    test = [p for m, p in months if split <= m <= until]
    if not train or not test:
        raise GatewayError(f"need months before and from {split} in {jpcert_dir}")
    t0 = time.perf_counter()
    indexes: dict[str, UrlIndex] = {}
    sizes: dict[str, int] = {}
    report = FeedReport("jpcert")
    for scope in SCOPES:
        builder = ListBuilder("jpcert", "block")
        report = FeedReport("jpcert")
        for p in train:
            load_feed(p, "jpcert", builder, report, scope=scope)
        indexes[scope] = UrlIndex.from_lists([builder.build()])
        sizes[scope] = len(builder)
    index = indexes[scope_default]
    say(f"lists: {sizes} entries from {len(train)} months "
        f"({report.rejected} lines rejected) in {time.perf_counter() - t0:.1f}s")
    from gateway.urls.scan import url_data

    look = Lookalikes.default(risky_tlds=url_data()["risky_tlds"])
    by_scope: Counter[str] = Counter()
    either_by_scope: Counter[str] = Counter()

    total = listed = either = look_only = bad = 0
    reasons: Counter[str] = Counter()
    brands_caught: Counter[str] = Counter()
    distinct: set[str] = set()
    distinct_listed: set[str] = set()
    distinct_either: set[str] = set()
    for p in test:
        for url, brand in jpcert_rows(p):
            try:
                c = canonicalize(url)
            except UrlError:
                bad += 1
                continue
            total += 1
            key = c.url
            distinct.add(key)
            hit = None if c.is_ip or look.is_official(c.host) else look.classify(c.host)
            for scope, idx in indexes.items():
                if idx.lookup_url(c):
                    by_scope[scope] += 1
                    either_by_scope[scope] += 1
                elif hit is not None:
                    either_by_scope[scope] += 1
            is_listed = bool(index.lookup_url(c))
            if is_listed:
                listed += 1
                distinct_listed.add(key)
            if is_listed or hit is not None:
                either += 1
                distinct_either.add(key)
                brands_caught[brand] += 1
            if hit is not None:
                reasons[hit.reason] += 1
                if not is_listed:
                    look_only += 1
    say(f"evaluated {total} URLs from {len(test)} months")

    t1 = time.perf_counter()
    per_msg = ham_urls(sa_dir) if (sa_dir / "labels.csv").is_file() else []
    hosts = Counter(h for hs in per_msg for h in set(hs))
    ham_hits: dict[str, str] = {}
    for h in hosts:
        r = look.classify(h)
        if r is not None:
            ham_hits[h] = f"{r.brand}/{r.reason}"
    msgs_with_urls = sum(1 for hs in per_msg if hs)
    msgs_hit = sum(1 for hs in per_msg if any(h in ham_hits for h in hs))
    list_fp_hosts = [h for h in hosts if index.lookup_url(canonicalize(h))]
    say(f"ham: {len(per_msg)} messages, {len(hosts)} distinct URL hosts in "
        f"{time.perf_counter() - t1:.1f}s")

    def pct(a: int, b: int) -> float:
        return round(100.0 * a / b, 2) if b else 0.0

    return {
        "split": split,
        "until": until if until != "9999-99" else months[-1][0],
        "list": {"months": len(train), "entries": sizes, "rejected_lines": report.rejected,
                 "scope": scope_default},
        "test": {"months": len(test), "urls": total, "unparsable": bad,
                 "distinct_urls": len(distinct)},
        "caught_by_list": {"urls": listed, "percent": pct(listed, total),
                           "distinct_percent": pct(len(distinct_listed), len(distinct)),
                           "percent_by_scope": {k: pct(v, total) for k, v in by_scope.items()}},
        "caught_with_lookalikes": {"urls": either, "percent": pct(either, total),
                                   "distinct_percent": pct(len(distinct_either), len(distinct)),
                                   "percent_by_scope": {k: pct(v, total)
                                                        for k, v in either_by_scope.items()},
                                   "added_by_lookalikes": look_only,
                                   "lookalike_reasons": dict(reasons.most_common())},
        "top_brands_caught": dict(brands_caught.most_common(10)),
        "ham": {"messages": len(per_msg), "messages_with_urls": msgs_with_urls,
                "distinct_hosts": len(hosts),
                "lookalike_fp_hosts": len(ham_hits),
                "lookalike_fp_rate_hosts_percent": pct(len(ham_hits), len(hosts)),
                "lookalike_fp_messages": msgs_hit,
                "lookalike_fp_rate_messages_percent": pct(msgs_hit, msgs_with_urls),
                "lookalike_fp_examples": dict(sorted(ham_hits.items())[:20]),
                "list_fp_hosts": len(list_fp_hosts)},
    }
