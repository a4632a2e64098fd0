"""URL index and URL check benchmark: prints figures, asserts nothing.

    .venv/bin/python perf/url_bench.py [--entries 20000000] [--messages 20000]

1. Builds an index of N entries (random 64-bit keys plus real expressions that the mix hits),
   reports build time, file size and bytes per entry, map time, the time to fault every page
   in, and the resident memory.
2. Compares with the obvious alternative, a Python set of 64-bit ints (measured at 1M entries,
   scaled), which is why the index is a sorted array.
3. Lookups per second: raw key lookups, URLs (canonicalise + expressions + lookup), and a
   realistic SMS mix through extraction + the whole URL check, and through the whole
   pipeline (every registered check).

Times are CPU time of this process (`time.process_time`), so that other work on a shared
machine does not count against the figures; "per core" is what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.urls.canon import canonicalize, expressions, list_expression
from gateway.urls.extract import extract_urls
from gateway.urls.feeds import FeedReport, load_feed
from gateway.urls.index import IndexHolder, ListBuilder, Tag, UrlIndex, key_of, write_index
from gateway.urls.lookalike import Lookalikes
from gateway.urls.scan import UrlScanner, url_data


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def listed_hosts(n: int) -> list[str]:
    rnd = random.Random(7)
    return ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(9)) + ".top"
            for _ in range(n)]


def sms_mix(n: int, listed: list[str]) -> list[str]:
    """70% no URL, 15% a clean URL, 8% a listed URL, 5% a lookalike, 2% a shortener."""
    rnd = random.Random(11)
    plain = ["Meeting moved to 3pm, see you there.", "お疲れさまです。明日の予定を確認してください。",
             "Your verification code is 482913. Do not share it.", "ok thanks! call me later",
             "荷物のお届けについて、ご不在のため持ち帰りました。再配達をご希望の場合はご連絡ください。"]
    clean = ["Your order has shipped: https://www.amazon.co.jp/gp/css/order-history?ref=x",
             "明細はこちら https://www.smbc-card.com/mem/index.jsp",
             "See https://github.com/python/cpython/issues/1 for details"]
    out = []
    for _ in range(n):
        r = rnd.random()
        if r < 0.70:
            out.append(rnd.choice(plain))
        elif r < 0.85:
            out.append(rnd.choice(clean))
        elif r < 0.93:
            out.append(f"【重要】お支払い情報の確認 https://{rnd.choice(listed)}/login?id={rnd.randint(1, 9999)}")
        elif r < 0.98:
            out.append(f"Amazonアカウント停止 https://amazon-{rnd.randint(1, 999)}-secure.xyz/verify")
        else:
            out.append(f"当選しました bit.ly/{rnd.randint(10000, 99999)}")
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s ({seconds / n * 1e6:.1f} us each)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=20_000_000)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--dir", default="")
    ap.add_argument("--feed-lines", type=int, default=200_000)
    args = ap.parse_args()
    n = args.entries
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="mamori-urlbench-"))
    path = tmp / "index.bin"
    hosts = listed_hosts(2000)

    print(f"== index: {n:,} entries")
    rss0 = rss_mb()
    t0 = time.process_time()
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    real = np.array([key_of(list_expression(h)) for h in hosts], dtype=np.uint64)
    keys[: len(real)] = real
    tags = np.zeros(n, dtype=np.uint16)
    write_index(path, keys, tags, [Tag("bench", "block", "")], {"generation": 1})
    del keys, tags
    build = time.process_time() - t0
    size = path.stat().st_size
    print(f"build (sort + write): {build:.1f}s; file {size / 1e6:,.0f} MB = {size / n:.2f} bytes/entry")
    rss1 = rss_mb()
    t0 = time.process_time()
    idx = UrlIndex.open(path)
    t_open = time.process_time() - t0
    t0 = time.process_time()
    checksum = int(np.bitwise_xor.reduce(idx.keys[:: 512]))  # touch every page of the keys
    _ = int(idx.tags[:: 2048].sum())
    t_fault = time.process_time() - t0
    print(f"load: map {t_open * 1e3:.2f} ms (what a hot reload costs the scan path); "
          f"first touch of every page {t_fault:.2f}s (file still in the page cache "
          f"after the write) [{checksum & 1}]")
    print(f"memory: RSS {rss0:.0f} MB at start, {rss1:.0f} MB after build, "
          f"{rss_mb():.0f} MB with the index mapped and touched (shared page cache, "
          f"one copy for all worker processes)")

    m = 1_000_000
    tracemalloc.start()
    s = set(np.random.default_rng(2).integers(0, 2**63, size=m, dtype=np.uint64).tolist())
    cur, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"alternative: Python set of ints {cur / m:.0f} bytes/entry -> "
          f"{cur / m * n / 1e9:.1f} GB for {n:,} (per process), vs {size / n:.0f} bytes/entry mapped")
    del s

    print("== feed ingestion")
    feed = tmp / "feed.txt"
    rnd = random.Random(5)
    with feed.open("w") as f:
        for i in range(args.feed_lines):
            host = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10))
            f.write(f"https://{host}.example.com/login/{i}?id={i}\n" if i % 2 else f"{host}.top\n")
    builder = ListBuilder("bench", "block")
    report = FeedReport(str(feed))
    t0 = time.process_time()
    load_feed(feed, "plain", builder, report)
    data = builder.build()
    dt = time.process_time() - t0
    print(f"parse + validate + canonicalise + hash: {rate(args.feed_lines, dt)} lines "
          f"({report.accepted} accepted) -> {n / (args.feed_lines / dt) / 60:.1f} min for "
          f"{n:,} lines; {len(data.keys)} keys with path markers")
    feed.unlink()

    print("== lookups")
    probe = np.random.default_rng(3).integers(0, 2**63, size=10_000, dtype=np.uint64)
    t0 = time.process_time()
    for i in range(0, len(probe), 10):
        idx.lookup_keys(probe[i:i + 10])
    dt = time.process_time() - t0
    print(f"raw key lookups, batches of 10 (one URL's expressions): {rate(len(probe), dt)} keys")
    urls = [f"https://{h}/login?id={i}" for i, h in enumerate(hosts[:1000])] + [
        f"https://clean{i}.example.com/a/b/c.html?q={i}" for i in range(1000)]
    t0 = time.process_time()
    hits = 0
    for u in urls:
        hits += bool(idx.lookup_url(canonicalize(u)))
    dt = time.process_time() - t0
    print(f"URL lookups (canonicalise + host probes + path probes where marked): "
          f"{rate(len(urls), dt)}; {hits} of {len(urls)} listed")
    t0 = time.process_time()
    for u in urls:
        idx.lookup(expressions(canonicalize(u)))
    dt = time.process_time() - t0
    print(f"  (probing every Safe Browsing expression instead: {rate(len(urls), dt)})")

    holder = IndexHolder(path)
    scanner = UrlScanner(holder, lookalikes=Lookalikes.default(risky_tlds=url_data()["risky_tlds"]),
                         shorteners=url_data()["shorteners"], risky_tlds=url_data()["risky_tlds"])
    msgs = sms_mix(args.messages, hosts)
    with_url = sum(1 for t in msgs if extract_urls(t))
    t0 = time.process_time()
    flagged = 0
    for t in msgs:
        found = extract_urls(t)
        if found:
            flagged += bool(scanner.scan(found, text=t, sms=True))
    dt = time.process_time() - t0
    print(f"SMS mix ({with_url / len(msgs):.0%} with a URL), extraction + URL check: "
          f"{rate(len(msgs), dt)}; {flagged} flagged")
    no_url = [t for t in msgs if "http" not in t and "." not in t.replace("。", "")][:5000]
    t0 = time.process_time()
    for t in no_url:
        extract_urls(t)
    dt = time.process_time() - t0
    print(f"SMS without a URL, extraction only: {rate(len(no_url), dt)}")

    os.environ["MAMORI_DATA_DIR"] = str(tmp / "data")
    os.environ["MAMORI_URLS__INDEX_FILE"] = str(path)
    from gateway.config import load_settings
    from gateway.events import NullSink
    from gateway.message import Message
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore

    async def run() -> float:
        gw = Gateway.create(load_settings(), events=NullSink(), policies=MemoryPolicyStore())
        await gw.start()
        batch = [Message.sms(t, sender="SENDER", recipient="+819012345678") for t in msgs]
        t0 = time.process_time()
        for m in batch:
            await gw.pipeline.scan(m)
        dt = time.process_time() - t0
        await gw.close()
        return dt

    for disabled in ("[]", '["urls"]'):
        os.environ["MAMORI_PIPELINE__DISABLED_CHECKS"] = disabled
        names = [c.name for c in Gateway.create(load_settings(), events=NullSink(),
                                                policies=MemoryPolicyStore()).pipeline.checks]
        dt = asyncio.run(run())
        print(f"whole pipeline ({', '.join(names)}), SMS mix: {rate(len(msgs), dt)} per core")
    if not args.dir:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
